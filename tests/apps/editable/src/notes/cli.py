import os


def main():
    print("notes for", os.environ["NOTES_OWNER"])
