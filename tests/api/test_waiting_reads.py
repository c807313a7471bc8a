"""`GET /v1/requests/{id}` with `If-None-Match` and `Prefer: wait=N`: a conditional read that waits for
the request to change, woken by PostgreSQL's announcement of the projection's write (migration 0006)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taflow.api.changes import RECHECK_SECONDS, etag_matches, requested_wait
from taflow.domain.enums import Stage
from tests.api.conftest import assert_problem, put_request

Auth = Callable[[str], dict[str, str]]
SM = async_sessionmaker[AsyncSession]


async def listening(app: FastAPI) -> None:
    await asyncio.wait_for(app.state.changes.listening.wait(), 10)


async def test_answers_carry_the_version_as_etag_and_unchanged_is_304(
    api: httpx.AsyncClient, auth: Auth, sessionmaker: SM
) -> None:
    rid = await put_request(sessionmaker, member_state="KH", version=3)
    first = await api.get(f"/v1/requests/{rid}", headers=auth("ASEC/asec_reviewer"))
    assert first.status_code == 200 and first.headers["etag"] == '"3"'
    asec = auth("ASEC/asec_reviewer")
    same = await api.get(f"/v1/requests/{rid}", headers=asec | {"If-None-Match": '"3"'})
    assert same.status_code == 304 and same.headers["etag"] == '"3"' and same.content == b""
    older = await api.get(f"/v1/requests/{rid}", headers=asec | {"If-None-Match": '"2"'})
    assert older.status_code == 200 and older.json()["version"] == 3


async def test_an_unchanged_conditional_read_answers_from_the_version_alone(
    api: httpx.AsyncClient, auth: Auth, sessionmaker: SM
) -> None:
    """A 304 never reads the document: here the stored state could not even be read as a request."""
    rid = await put_request(sessionmaker, member_state="KH", version=4)
    async with sessionmaker() as session:
        await session.execute(text("UPDATE requests SET state = '{}'::jsonb WHERE id = :id"), {"id": rid})
        await session.commit()
    same = await api.get(f"/v1/requests/{rid}", headers=auth("KH/requester") | {"If-None-Match": '"4"'})
    assert same.status_code == 304 and same.headers["etag"] == '"4"'
    foreign = await api.get(f"/v1/requests/{rid}", headers=auth("LA/requester") | {"If-None-Match": '"4"'})
    assert_problem(foreign, 404, "not-found")  # the version is no one else's business


async def test_a_waiting_read_answers_as_soon_as_the_request_changes(
    app: FastAPI, api: httpx.AsyncClient, auth: Auth, sessionmaker: SM
) -> None:
    await listening(app)
    rid = await put_request(sessionmaker, member_state="KH", stage=Stage.asec_review, version=2)
    headers = auth("KH/requester") | {"If-None-Match": '"2"', "Prefer": "wait=20"}
    began = time.monotonic()
    waiting = asyncio.create_task(api.get(f"/v1/requests/{rid}", headers=headers))
    await asyncio.sleep(0.3)
    assert not waiting.done()  # unchanged: it waits
    await put_request(sessionmaker, request_id=rid, member_state="KH", stage=Stage.rocb_matching, version=3)
    resp = await asyncio.wait_for(waiting, 10)
    assert resp.status_code == 200, resp.text
    assert resp.json()["stage"] == "rocb_matching" and resp.headers["etag"] == '"3"'
    # woken by the write's announcement: before the first periodic re-read (RECHECK_SECONDS) would
    assert time.monotonic() - began < RECHECK_SECONDS - 0.2


async def test_a_waiting_read_that_sees_no_change_answers_304_after_the_wait(
    app: FastAPI, api: httpx.AsyncClient, auth: Auth, sessionmaker: SM
) -> None:
    await listening(app)
    rid = await put_request(sessionmaker, member_state="KH", version=1)
    began = time.monotonic()
    headers = auth("ASEC/asec_reviewer") | {"If-None-Match": 'W/"1"', "Prefer": "wait=1"}
    resp = await api.get(f"/v1/requests/{rid}", headers=headers)
    took = time.monotonic() - began
    assert resp.status_code == 304 and resp.headers["preference-applied"] == "wait=1"
    assert 0.9 <= took < 5


async def test_waiting_never_reaches_past_what_the_caller_may_see(
    api: httpx.AsyncClient, auth: Auth, sessionmaker: SM
) -> None:
    rid = await put_request(sessionmaker, member_state="KH", version=1)
    began = time.monotonic()
    resp = await api.get(
        f"/v1/requests/{rid}", headers=auth("LA/requester") | {"If-None-Match": '"1"', "Prefer": "wait=5"}
    )
    assert_problem(resp, 404, "not-found")
    assert time.monotonic() - began < 2  # refused at once, not after waiting


def test_prefer_and_if_none_match_parsing() -> None:
    assert requested_wait(None) == 0
    assert requested_wait("wait=7") == 7
    assert requested_wait("respond-async, wait=12") == 12
    assert requested_wait("wait=600") == 30  # capped
    assert requested_wait("handling=lenient") == 0
    assert etag_matches('"4"', '"4"') and etag_matches('W/"4"', '"4"') and etag_matches('"1", "4"', '"4"')
    assert etag_matches("*", '"4"') and not etag_matches('"3"', '"4"')
