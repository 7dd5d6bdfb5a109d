"""The product version, as webhooks' ``User-Agent: Chime/<version>`` and the API report it."""

from functools import cache
from importlib.metadata import PackageNotFoundError, version


@cache
def chime_version() -> str:
    try:
        return version("chime")
    except PackageNotFoundError:
        return "0.0.0"
