"""docs/events/ must match the event models (regenerate with `python -m shared.events.docs`)."""

from __future__ import annotations

from pathlib import Path

from shared.events.docs import render

DOCS = Path(__file__).resolve().parents[2] / "docs" / "events"


def test_event_docs_are_in_sync_with_the_models() -> None:
    expected = render()
    on_disk = {p.name: p.read_text() for p in DOCS.glob("*.json")}
    assert set(on_disk) == set(expected), "regenerate docs/events with `python -m shared.events.docs`"
    stale = [name for name, content in expected.items() if on_disk[name] != content]
    assert stale == [], f"stale: {stale}; regenerate with `python -m shared.events.docs`"
