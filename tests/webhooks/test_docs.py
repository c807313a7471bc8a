"""docs/webhooks.md lists every event type TAflow sends."""

from __future__ import annotations

from pathlib import Path

from taflow.db.webhooks import EVENT_TYPES

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def test_every_event_type_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [t for t in EVENT_TYPES if f"| `{t}` |" not in text]
    assert not missing, f"add to docs/webhooks.md: {missing}"
