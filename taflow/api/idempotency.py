"""Idempotency-Key on every state-changing call (POST and DELETE under /v1), safe under concurrency.

The first request with a key claims it (taflow.db.idempotency) and runs; its answer, if successful
(2xx), is stored before it is sent, and every later request with the same key and the same call
(method, path, canonical JSON body) gets that answer again, body and headers, with
`Idempotent-Replayed: true`; a `201 Created` comes back as `200 OK`, since the retry created nothing
(DESIGN section 3: "same key and body again: 200 with the same id"). Requests that arrive while the
first is still running wait for it.
Another call under a used key is a 409 `idempotency-conflict`. A failed call (4xx, 5xx, an
exception) releases its key, so the client may retry with it.

Keys belong to the caller (organisation, role and credential subject; or the invitation link), so
two callers never collide. A request whose credential does not authenticate passes through and gets
its 401/403 from the route, without touching the key.

Calls listed in `own_replay` are left alone: they keep their own record of a key and answer a retry
from it (a submission: taflow.db.submissions), which costs no extra round trips.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import Depends, Header
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taflow.api.auth import STATE_ACTOR, Authenticator, bearer_token
from taflow.api.problems import ProblemError, answer, problem_response, unavailable
from taflow.db import idempotency as store
from taflow.db.credentials import digest
from taflow.settings import Settings

log = logging.getLogger("taflow.api")

HEADER = "idempotency-key"
REPLAYED = "Idempotent-Replayed"
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,200}$")
METHODS = frozenset({"POST", "DELETE"})
KEPT_HEADERS = ("content-type", "location")
LOCK = timedelta(seconds=10)
"""How long a claim stays exclusive after its last heartbeat: a process that dies mid-call frees its
keys this long after, and a retry then takes over."""
HEARTBEAT_SECONDS = 3.0


def replayed_status(first: int) -> int:
    """The status a replay answers: the first call's, but 200 for its 201 (nothing is created again)."""
    return 200 if first == 201 else first


def replayed_response(model: type[Any], what: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI entry of a creating call's replay (`responses=`)."""
    return {200: {"model": model, "description": f"A retry with the same Idempotency-Key and body: {what}"}}


def fingerprint(method: str, path: str, body: bytes) -> str:
    """Method, path and the body's canonical JSON (key order and whitespace do not matter)."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError):
        canonical = body
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, own_replay: Iterable[tuple[str, str]] = ()) -> None:
        self.app = app
        self.own_replay = frozenset(own_replay)
        """(method, path) of calls that replay by their own record: passed through untouched."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method")
        if scope["type"] != "http" or method not in METHODS:
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if not path.startswith("/v1/") or (method, path) in self.own_replay:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        key = headers.get(HEADER)
        if key is None or not KEY_PATTERN.match(key):
            await self.app(scope, receive, send)  # no key, or one the route will refuse (422)
            return
        state = scope["app"].state
        sessions: async_sessionmaker[AsyncSession] = state.autocommit_sessionmaker
        try:
            owner = await self._owner(scope, headers, state.authenticator)
            if owner is not None:
                body, receive = await _read_body(receive)
                outcome = await _claim(sessions, state.settings, owner, key, fingerprint(method, path, body))
        except Exception as exc:
            problem = unavailable(exc)  # the database is away: 503, not a 500
            if problem is None:
                raise
            await answer(problem, path)(scope, receive, send)
            return
        if owner is None:
            await self.app(scope, receive, send)
        elif isinstance(outcome, store.Acquired):
            await self._run(scope, receive, send, sessions, owner, key)
        elif isinstance(outcome, store.Replay):
            await _replay(outcome, send)
        elif isinstance(outcome, store.Conflict):
            await problem_response(
                "idempotency-conflict",
                f"Idempotency-Key already used for another call{_first_answer(outcome)}",
                instance=path,
            )(scope, receive, send)
        else:
            await problem_response(
                "idempotency-in-progress",
                "the first request with this Idempotency-Key is still running; retry shortly",
                instance=path,
                headers={"Retry-After": "1"},
            )(scope, receive, send)

    async def _owner(
        self, scope: Scope, headers: Mapping[str, str], authenticator: Authenticator
    ) -> str | None:
        """Whose key this is: the authenticated caller, or the invitation link; None: let the route refuse."""
        try:
            token = bearer_token(headers.get("authorization"))
        except ProblemError:
            return None
        if token is not None:
            try:
                actor = await authenticator.resolve(token)
            except ProblemError:
                return None
            scope.setdefault("state", {})[STATE_ACTOR] = actor
            return f"{actor.organisation}/{actor.role.value}/{actor.subject}"[:200]
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        link = headers.get("x-invitation-token") or next(iter(query.get("token", [])), None)
        if link:
            return "link/" + digest(link)
        return None

    async def _run(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        sessions: async_sessionmaker[AsyncSession],
        owner: str,
        key: str,
    ) -> None:
        """Run the call with its answer held back, store a success, then send it."""
        messages: list[Message] = []

        async def hold(message: Message) -> None:
            messages.append(message)

        heartbeat = asyncio.create_task(_heartbeat(sessions, owner, key))
        try:
            await self.app(scope, receive, hold)
        except BaseException:
            await _release(sessions, owner, key)
            raise
        finally:
            heartbeat.cancel()
        start = next((m for m in messages if m["type"] == "http.response.start"), None)
        status = int(start["status"]) if start is not None else 500
        if 200 <= status < 300 and start is not None:
            kept = {
                k.decode("latin-1").lower(): v.decode("latin-1")
                for k, v in start.get("headers", [])
                if k.decode("latin-1").lower() in KEPT_HEADERS
            }
            body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
            try:
                async with sessions() as session:
                    await store.finish(
                        session, scope=owner, key=key, status_code=status, headers=kept, body=body
                    )
            except Exception:
                log.exception("could not store the answer for an Idempotency-Key; releasing it")
                await _release(sessions, owner, key)
        else:
            await _release(sessions, owner, key)
        for message in messages:
            await send(message)


async def _claim(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, owner: str, key: str, print_: str
) -> store.Claim:
    """Claim the key, waiting while another request holds it (InProgress only at the deadline)."""
    deadline = time.monotonic() + settings.idempotency_wait_seconds
    pause = 0.02
    while True:
        now = datetime.now(UTC)
        async with sessions() as session:
            outcome = await store.claim(
                session,
                scope=owner,
                key=key,
                fingerprint=print_,
                now=now,
                lock=LOCK,
                ttl=timedelta(hours=settings.idempotency_ttl_hours),
            )
        if not isinstance(outcome, store.InProgress) or time.monotonic() >= deadline:
            return outcome
        await asyncio.sleep(pause)
        pause = min(pause * 1.5, 0.25)


async def _heartbeat(sessions: async_sessionmaker[AsyncSession], owner: str, key: str) -> None:
    """While the call runs, keep its claim from looking abandoned."""
    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)
        try:
            async with sessions() as session:
                await store.extend(session, scope=owner, key=key, until=datetime.now(UTC) + LOCK)
        except Exception:
            log.warning("could not extend an Idempotency-Key claim", exc_info=True)


async def _release(sessions: async_sessionmaker[AsyncSession], owner: str, key: str) -> None:
    try:
        async with sessions() as session:
            await store.release(session, scope=owner, key=key)
    except Exception:  # the lock expires by itself
        log.exception("could not release an Idempotency-Key")


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body (already size-limited by BodyLimitMiddleware) and a receive that replays it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


async def _replay(answer: store.Replay, send: Send) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()]
    headers += [
        (REPLAYED.lower().encode(), b"true"),
        (b"content-length", str(len(answer.body)).encode()),
    ]
    status = replayed_status(answer.status_code)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body, "more_body": False})


def _first_answer(conflict: store.Conflict) -> str:
    """Which call the key went to, by what it answered (its Location or id), never echoing the body."""
    where = conflict.headers.get("location")
    if where is None and conflict.body:
        try:
            data: Any = json.loads(conflict.body)
            where = data.get("id") if isinstance(data, dict) else None
        except ValueError:
            where = None
    return f" (first answered {conflict.status_code}: {where})" if where and conflict.status_code else ""


# ---------------------------------------------------------------------------- the header, for OpenAPI

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="Any printable ASCII string (at most 200). A retry with the same key and body gets "
        "the first answer again (same status and body, `Idempotent-Replayed: true`); another body: 409.",
    ),
]


async def idempotency_key(key: IdempotencyKey = None) -> str | None:
    """Declares the header (the middleware does the work) and refuses a malformed key with 422."""
    return key


IDEMPOTENT = Depends(idempotency_key)
"""`dependencies=[IDEMPOTENT]` on every state-changing route."""
