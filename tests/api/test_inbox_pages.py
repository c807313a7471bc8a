"""The inbox pages and filters: most urgent first, cursors that never skip or repeat, overdue only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taflow.domain.enums import Stage
from tests.api.conftest import assert_problem, put_request

Auth = Callable[[str], dict[str, str]]


async def _all_pages(
    api: httpx.AsyncClient, headers: dict[str, str], **params: str
) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    cursor: str | None = None
    for _ in range(200):
        query = params | ({"cursor": cursor} if cursor else {}) | {"limit": "2"}
        body = (await api.get("/v1/inbox", params=query, headers=headers)).json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the inbox never ended")


async def test_inbox_pages_in_urgency_order_and_filters(
    api: httpx.AsyncClient, auth: Auth, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    now = datetime.now(UTC)
    due = {
        "late": now - timedelta(days=2),
        "later": now - timedelta(hours=1),
        "soon": now + timedelta(days=1),
        "none-1": None,
        "none-2": None,
    }
    ids = {}
    for i, (name, at) in enumerate(due.items()):
        ids[name] = await put_request(
            sessionmaker,
            member_state="MM",
            stage=Stage.changes_requested,
            sla_due_at=at,
            updated_at=now - timedelta(minutes=10 - i),
        )
    mm = auth("MM/requester")
    everything = await _all_pages(api, mm)
    seen = [str(i["request_id"]) for i in everything]
    assert len(seen) == len(set(seen)), "a page repeated an item"
    mine = [s for s in seen if s in ids.values()]
    assert mine == [ids[n] for n in ("late", "later", "soon", "none-1", "none-2")]
    flags = {str(i["request_id"]): i["overdue"] for i in everything}
    assert flags[ids["late"]] and flags[ids["later"]] and not flags[ids["soon"]] and not flags[ids["none-1"]]

    overdue = [str(i["request_id"]) for i in await _all_pages(api, mm, overdue="true")]
    assert ids["late"] in overdue and ids["later"] in overdue and ids["soon"] not in overdue
    calm = [str(i["request_id"]) for i in await _all_pages(api, mm, overdue="false")]
    assert ids["soon"] in calm and ids["none-2"] in calm and ids["late"] not in calm
    assert await _all_pages(api, mm, stage="asec_review") == [] or all(
        i["stage"] == "asec_review" for i in await _all_pages(api, mm, stage="asec_review")
    )
    assert await _all_pages(api, mm, member_state="KH") == []  # a requester's inbox is its own anyway


async def test_bad_inbox_cursors_and_filters(api: httpx.AsyncClient, auth: Auth) -> None:
    for cursor in ("nope!!", "W10", "WyJ4IiwieSIsInoiXQ"):
        assert_problem(
            await api.get("/v1/inbox", params={"cursor": cursor}, headers=auth("ASEC/asec_head")), 400
        )
    for query in ({"stage": "nowhere"}, {"overdue": "maybe"}, {"limit": "0"}):
        assert_problem(await api.get("/v1/inbox", params=query, headers=auth("ASEC/asec_head")), 422)
