try:
    "x".encode("premain_deferred")
except LookupError:
    pass
