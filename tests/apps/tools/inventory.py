"""A small module for the tools to work on: pytest tests it, black and mypy check it."""

import os


def stock(items: dict[str, int], name: str) -> int:
    return items.get(name, 0)


def region() -> str:
    return os.environ.get("APP_REGION", "nowhere")
