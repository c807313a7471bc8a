"""`taflow dedup-eval`: the labelled set replayed through the production dedup check on a real database.

The catalogue goes in through the importer, each request is checked by `run_dedup_check` (what the
workflow's activity runs) and then projected by `write_projection` (what the workflow's projection
runs), so every later request sees it exactly as it would in production.
"""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taflow.activities.dedup import run_dedup_check
from taflow.db.candidates import engine_of
from taflow.db.catalogue import import_catalogue
from taflow.db.projection import write_projection
from taflow.dedup.evaluate import LabelledNeed, Prediction, Report, load_requests, score
from taflow.domain.enums import MemberState, Modality, Role, Stage
from taflow.domain.models import (
    Actor,
    DedupCheckInput,
    DedupResult,
    Projection,
    RequestDraft,
    RequestState,
)


def draft_of(need: LabelledNeed) -> RequestDraft:
    return RequestDraft(
        title=need.title[:200],
        description=need.description[:5000],
        topics=list(need.topics),  # validated into Topic by pydantic
        modality=Modality.parse(need.modality),
        desired_start=need.desired_start,
        desired_end=need.desired_end,
        beneficiaries=[b for b in need.beneficiaries if b in MemberState.__members__],
    )


def state_after_check(need: LabelledNeed, draft: RequestDraft, result: DedupResult) -> RequestState:
    """The request as its workflow projects it once the check is done: waiting in ASEC review."""
    submitted = need.submitted_at if need.submitted_at.tzinfo else need.submitted_at.replace(tzinfo=UTC)
    state = MemberState(need.member_state)
    return RequestState(
        request_id=need.id,
        member_state=state,
        draft=draft,
        beneficiaries=[state],
        stage=Stage.asec_review,
        submitted_by=Actor(
            subject=f"{need.member_state.lower()}-eval", organisation=need.member_state, role=Role.requester
        ),
        submitted_at=submitted,
        updated_at=submitted,
        dedup=result,
        version=1,
    )


async def replay_through_database(
    sessionmaker: async_sessionmaker[AsyncSession],
    requests: list[LabelledNeed],
    catalogue: Path,
    window_days: int = 183,
) -> dict[str, Prediction]:
    report = await import_catalogue(sessionmaker, catalogue)
    if report.refused:
        raise ValueError(f"catalogue lines refused: {[r.model_dump() for r in report.refused][:3]}")
    predictions: dict[str, Prediction] = {}
    for need in sorted(requests, key=lambda n: n.submitted_at):
        draft = draft_of(need)
        check = DedupCheckInput(
            request_id=need.id,
            member_state=MemberState(need.member_state),
            draft=draft,
            submitted_at=need.submitted_at,
        )
        result = await run_dedup_check(engine_of(sessionmaker), check, window_days)
        async with sessionmaker.begin() as session:
            await write_projection(
                session, Projection(state=state_after_check(need, draft, result), new_events=[]), []
            )
        predictions[need.id] = Prediction(
            duplicate_of=result.duplicate_of, consolidate_with=result.consolidate_with
        )
    return predictions


def write_predictions(path: Path, predictions: dict[str, Prediction]) -> None:
    with path.open("w") as out:
        for rid, p in predictions.items():
            line = {"id": rid, "duplicate_of": p.duplicate_of, "consolidate_with": p.consolidate_with}
            out.write(json.dumps(line) + "\n")


def evaluate(requests_path: Path, predictions: dict[str, Prediction]) -> Report:
    return score(load_requests(requests_path), predictions)
