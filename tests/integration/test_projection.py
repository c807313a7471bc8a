"""The projection writer against real PostgreSQL: a lean projection (patch "lean-projection": the state
without its audit trail, plus the new events) stores exactly the row a whole one does; rows never go
back in version; the dedup term counts follow the text once; the common case is one statement."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from taflow.activities.projection import notifications
from taflow.db.projection import project, write_projection
from taflow.domain.enums import CandidateKind, DedupVerdict, Role, Stage
from taflow.domain.models import (
    Actor,
    AuditEvent,
    DedupResult,
    DuplicateCandidate,
    MatchCandidate,
    MatchInfo,
    Projection,
    RequestDraft,
    RequestState,
)
from taflow.workflows.request import LEAN_KEPT

SM = async_sessionmaker[AsyncSession]
T0 = datetime(2030, 1, 6, 9, 0, tzinfo=UTC)
KH = Actor(subject="kh-system", organisation="KH", role=Role.requester)
ASEC = Actor(subject="asec-reviewer-1", organisation="ASEC", role=Role.asec_reviewer)
STEPS: list[tuple[str, Stage | None, Actor]] = [
    ("submitted", Stage.submitted, KH),
    ("dedup_started", Stage.dedup_check, ASEC),
    ("dedup_checked", Stage.asec_review, ASEC),
    ("changes_requested", Stage.changes_requested, ASEC),
    ("amended", Stage.dedup_check, KH),
    ("dedup_checked", Stage.asec_review, ASEC),
    ("reminder", None, ASEC),
    ("approved", Stage.rocb_matching, ASEC),
]
AMENDED_AT = 5  # seq of "amended": the title changes from then on


def draft(amended: bool) -> RequestDraft:
    title = "Risk management diagnostic for the border agency" + (" and its ports" if amended else "")
    return RequestDraft.model_validate(
        {
            "title": title,
            "description": "Assess the national risk framework and the selectivity of inspections.",
            "topics": ["risk-management"],
            "modality": "diagnostic_mission",
            "desired_start": "2030-04-01",
            "desired_end": "2030-05-30",
        }
    )


def dedup(seq: int) -> DedupResult | None:
    if seq < 3:
        return None
    candidate = DuplicateCandidate(
        kind=CandidateKind.request, id="TA-2029-000007", title="An earlier diagnostic",
        relation=DedupVerdict.consolidation_suggested, score=0.41 if seq < AMENDED_AT else 0.38,
        member_state="LA", evidence={"shared_terms": ["risk", "@rm"], "overlap_days": 12},
    )  # fmt: skip
    return DedupResult(verdict=DedupVerdict.consolidation_suggested, candidates=[candidate])


def life(rid: str) -> list[RequestState]:
    """The request's state after each step: what the workflow's pump would project, in order."""
    states: list[RequestState] = []
    events: list[AuditEvent] = []
    stage = Stage.submitted
    for seq, (kind, to, actor) in enumerate(STEPS, start=1):
        at = T0 + timedelta(minutes=seq)
        events.append(
            AuditEvent(
                seq=seq, at=at, actor=actor, kind=kind, to_stage=to,
                from_stage=stage if to is not None and seq > 1 else None, data={"step": seq},
            )
        )  # fmt: skip
        stage = to or stage
        match = None
        if stage is Stage.rocb_matching:
            match = MatchInfo(candidates=[MatchCandidate(expert_id="EXP-1", name="A. Expert", score=0.9)])
        states.append(
            RequestState(
                request_id=rid, member_state="KH", draft=draft(seq >= AMENDED_AT), beneficiaries=["KH"],
                stage=stage, submitted_by=KH, submitted_at=T0, updated_at=at, events=list(events),
                version=seq * 2, sla_due_at=at + timedelta(days=5) if stage is Stage.asec_review else None,
                dedup=dedup(seq), match=match,
            )
        )  # fmt: skip
    return states


def whole(state: RequestState, before: RequestState | None) -> Projection:
    """What a workflow without the patch sends: everything, the events it has not projected beside."""
    seq = before.events[-1].seq if before else 0
    return Projection(state=state, new_events=[e for e in state.events if e.seq > seq])


def lean(state: RequestState, before: RequestState | None) -> Projection:
    """What the workflow sends under patch "lean-projection", `before` being what it projected last."""
    seq = before.events[-1].seq if before else 0
    done = [e for e in state.events if e.seq <= seq]
    kept = [n for n in LEAN_KEPT if before is not None and getattr(state, n) == getattr(before, n)]
    left_out = {n: RequestState.model_fields[n].get_default() for n in kept}
    return Projection(
        state=state.model_copy(update={"events": [], **left_out}),
        new_events=[e for e in state.events if e.seq > seq],
        events_omitted=True,
        stage_entered=next((e for e in reversed(done) if e.to_stage is not None), None),
        kept=kept,
    )


async def write(sessionmaker: SM, projection: Projection) -> None:
    await project(sessionmaker, projection, notifications(projection))


async def read(
    sessionmaker: SM, rid: str
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """The request's row, events and outbox rows, with the request id taken out (to compare two)."""
    async with sessionmaker() as s:
        row = dict(
            (await s.execute(text("SELECT * FROM requests WHERE id = :id"), {"id": rid})).mappings().one()
        )
        events = (
            await s.execute(
                text("SELECT * FROM request_events WHERE request_id = :id ORDER BY seq"), {"id": rid}
            )
        ).mappings()
        notes = (
            await s.execute(
                text("SELECT event_type, audience, payload, dedup_key FROM outbox WHERE request_id = :id "
                     "ORDER BY dedup_key"), {"id": rid},
            )
        ).mappings()  # fmt: skip
        out = [dict(e) for e in events], [dict(n) for n in notes]
    text_of = str(row)
    del row["id"]
    assert rid in text_of
    return (
        strip(row, rid),
        [strip(e, rid) for e in out[0]],
        [strip(n, rid) for n in out[1]],
    )


def strip(value: Any, rid: str) -> Any:
    if isinstance(value, str):
        return value.replace(rid, "RID")
    if isinstance(value, dict):
        return {k: strip(v, rid) for k, v in value.items()}
    if isinstance(value, list):
        return [strip(v, rid) for v in value]
    return value


async def terms(sessionmaker: SM) -> Counter[str]:
    async with sessionmaker() as s:
        rows = (await s.execute(text("SELECT term, df FROM dedup_terms"))).all()
        return Counter({term: df for term, df in rows})


def rid() -> str:
    return f"PRJ-{uuid.uuid4().hex[:10]}"


async def test_lean_and_whole_projections_store_the_same_row(sessionmaker: SM) -> None:
    a, b = rid(), rid()
    counted = await terms(sessionmaker)
    for make, request_id in ((whole, a), (lean, b)):
        states = life(request_id)
        projected: RequestState | None = None
        for i, state in enumerate(states):
            await write(sessionmaker, make(state, projected))
            if i == 4:  # a retried (stale) projection of an earlier step changes nothing
                await write(sessionmaker, make(states[1], states[0]))
            projected = state
        await write(sessionmaker, make(states[-1], states[-2]))  # the last one again, retried
    row_a, events_a, notes_a = await read(sessionmaker, a)
    assert (row_a, events_a, notes_a) == await read(sessionmaker, b)
    final = life(a)[-1]
    assert row_a["version"] == final.version and row_a["stage"] == "rocb_matching"
    assert RequestState.model_validate(strip(row_a["state"], "RID")) == final.model_copy(
        update={"request_id": "RID"}
    )
    assert [e["seq"] for e in events_a] == list(range(1, len(STEPS) + 1))
    assert len(notes_a) == len(STEPS)

    # the term counts saw each request's text once: the amended one, the first one netted out
    delta = await terms(sessionmaker) - counted
    final_terms = set(row_a["search_text"].split())
    assert delta == Counter({t: 2 for t in final_terms} | {"#documents": 2})


async def test_a_lean_projection_extends_a_trail_a_whole_one_wrote(sessionmaker: SM) -> None:
    """A workflow that took the patch mid-life (or a reprojected row) goes on from the stored trail."""
    a, b = rid(), rid()
    for request_id, makers in (
        (a, [whole] * len(STEPS)),
        (b, [whole, whole, lean, whole, lean, lean, lean, lean]),
    ):
        before: RequestState | None = None
        for make, state in zip(makers, life(request_id), strict=True):
            await write(sessionmaker, make(state, before))
            before = state
    assert await read(sessionmaker, a) == await read(sessionmaker, b)


async def test_a_row_never_goes_back_in_version(sessionmaker: SM) -> None:
    r = rid()
    states = life(r)
    await write(sessionmaker, lean(states[0], None))
    await write(sessionmaker, lean(states[3], states[0]))
    newer = await read(sessionmaker, r)
    await write(sessionmaker, lean(states[2], states[0]))  # late and older: only its events may land
    row, events, _ = await read(sessionmaker, r)
    assert row == newer[0]
    assert [e["seq"] for e in events] == [1, 2, 3, 4]


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    sent: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement.split(None, 1)[0])

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", note)


async def test_the_common_case_is_one_statement(sessionmaker: SM, engine: AsyncEngine) -> None:
    r = rid()
    states = life(r)
    with statements(engine) as first:
        await write(sessionmaker, lean(states[0], None))  # a new row: the transaction, term counts
    assert len(first) > 1
    with statements(engine) as next_one:
        await write(sessionmaker, lean(states[1], states[0]))
    assert next_one == ["WITH"]
    with statements(engine) as amended:
        await write(sessionmaker, lean(states[AMENDED_AT - 1], states[1]))  # the text changed
    assert len(amended) > 1
    row, events, _ = await read(sessionmaker, r)
    assert row["version"] == states[AMENDED_AT - 1].version and len(events) == AMENDED_AT


async def test_write_projection_in_the_callers_transaction(sessionmaker: SM) -> None:
    """What `taflow reproject` and the tests use: the whole state, in one transaction."""
    a, b = rid(), rid()
    final_a, final_b = life(a)[-1], life(b)[-1]
    async with sessionmaker.begin() as s:
        await write_projection(s, whole(final_a, None), [])
    before: RequestState | None = None
    for state in life(b):
        await write(sessionmaker, lean(state, before))
        before = state
    row_a, events_a, _ = await read(sessionmaker, a)
    row_b, events_b, _ = await read(sessionmaker, b)
    assert (row_a, events_a) == (row_b, events_b)
    assert final_a.version == final_b.version
