"""Label selectors as people type them: ``team=billing, tier`` (a key alone: the label is present)."""

from __future__ import annotations


def label_selector(text: str) -> dict[str, str | None]:
    selector: dict[str, str | None] = {}
    for part in text.replace(",", " ").split():
        key, sep, value = part.partition("=")
        if not key:
            raise ValueError(f"{part!r}: a label selector is key=value or key")
        selector[key] = value if sep else None
    return selector


def label_params(text: str) -> list[str]:
    """The list call's repeated ``label`` parameters for the same text."""
    return [key if value is None else f"{key}={value}" for key, value in label_selector(text).items()]
