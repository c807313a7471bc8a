"""`taflow overdue` lists open requests past their SLA due date from the read model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from taflow.cli import app
from taflow.db.projection import write_projection
from taflow.domain.enums import Role, Stage
from taflow.domain.models import Actor, Projection, RequestDraft, RequestState


def state(rid: str, stage: Stage, due: datetime | None, escalated: bool = False) -> RequestState:
    draft = RequestDraft(
        title=f"Overdue check {rid}",
        description="A request used to check the overdue listing.",
        topics=["integrity"],
        modality="webinar",
        desired_start="2031-01-01",
        desired_end="2031-01-02",
    )
    now = datetime.now(UTC)
    return RequestState(
        request_id=rid, member_state="VN", draft=draft, beneficiaries=["VN"], stage=stage,
        submitted_by=Actor(subject="vn", organisation="VN", role=Role.requester), submitted_at=now,
        updated_at=now, sla_due_at=due, escalated=escalated, version=1,
    )  # fmt: skip


@pytest.fixture
async def rows(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    past = datetime.now(UTC) - timedelta(days=3)
    future = datetime.now(UTC) + timedelta(days=3)
    async with sessionmaker.begin() as s:
        for st in (
            state("OVD-LATE", Stage.asec_review, past, escalated=True),
            state("OVD-ONTIME", Stage.asec_review, future),
            state("OVD-CLOSED", Stage.rejected, past),
        ):
            await write_projection(s, Projection(state=st, new_events=[]), [])


@pytest.mark.usefixtures("rows")
def test_lists_only_open_overdue_requests(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAFLOW_DATABASE_URL", database_url)
    result = CliRunner().invoke(app, ["overdue"])
    assert result.exit_code == 0, result.output
    assert "OVD-LATE" in result.output and "yes" in result.output
    assert "OVD-ONTIME" not in result.output and "OVD-CLOSED" not in result.output
