import service


def main():
    frozen = service.credentials.get_frozen_credentials()
    print(service.s3.meta.region_name, frozen.access_key[:4])


if __name__ == "__main__":
    main()
