"""`taflow dedup-eval` on the labelled dev set: the regression floor of duplicate detection.

It runs the production path (catalogue importer, index-backed retrieval, the engine, the projection)
on a fresh database, so a change anywhere along that path that costs accuracy fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from taflow.cli import app

DEDUP = Path(__file__).resolve().parents[3] / "shared" / "reference" / "dedup"


def f1(output: str, label: str) -> float:
    match = re.search(rf"^{label}\s+P=\S+ R=\S+ F1=(\d\.\d+)", output, re.M)
    assert match, output
    return float(match.group(1))


@pytest.mark.skipif(not DEDUP.exists(), reason="shared/reference/dedup is not beside the repository")
def test_dev_set_meets_the_floors(tmp_path: Path) -> None:
    out = tmp_path / "predictions.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "dedup-eval",
            "--requests", str(DEDUP / "requests_dev.jsonl"),
            "--catalogue", str(DEDUP / "catalogue_dev.jsonl"),
            "--out", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f1(result.output, "duplicates") >= 0.90
    assert f1(result.output, "consolidation") >= 0.85
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 161
    assert set(lines[0]) == {"id", "duplicate_of", "consolidate_with"}


async def test_first_request_of_its_kind_is_clear(sessionmaker: Any) -> None:
    """No stored document shares a term with it: the check answers `clear` (no empty tsquery)."""
    from datetime import UTC, datetime

    from taflow.activities.dedup import run_dedup_check
    from taflow.db.candidates import engine_of
    from taflow.domain.models import DedupCheckInput, RequestDraft

    draft = RequestDraft(
        title="Zyxwvut qwertyuiop asdfghjkl",
        description="Zxcvbnm poiuytrewq lkjhgfdsa mnbvcxz, nothing anyone has ever asked for.",
        topics=["transit"],
        modality="webinar",
        desired_start="2031-01-01",
        desired_end="2031-01-02",
    )
    inp = DedupCheckInput(
        request_id="FIRST-1", member_state="BN", draft=draft, submitted_at=datetime.now(UTC)
    )
    result = await run_dedup_check(engine_of(sessionmaker), inp, 183)
    assert result.verdict == "clear" and result.candidates == []
