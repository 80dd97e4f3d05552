import inventory


def test_stock():
    assert inventory.stock({"apple": 3}, "apple") == 3
    assert inventory.stock({}, "pear") == 0


def test_region_from_dotenv():
    assert inventory.region() == "eu-test-1"
