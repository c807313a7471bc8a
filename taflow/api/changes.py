"""Waiting for a request to change, without polling the database.

Every write of a request's read-model row is announced by PostgreSQL (`NOTIFY taflow_request_changed`,
payload `<id> <version>`, migration 0006). Each API process listens on one connection of its own and
wakes the calls waiting on that request (`GET /v1/requests/{id}` with `If-None-Match` and
`Prefer: wait=N`). A lost connection is made again; meanwhile waiters still re-read every
`RECHECK_SECONDS`, so a missed announcement delays an answer, never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

from taflow.db.session import libpq_url

log = logging.getLogger("taflow.api")

CHANNEL = "taflow_request_changed"
RECHECK_SECONDS = 2.0
RECONNECT_SECONDS = 1.0
MAX_WAIT_SECONDS = 30
_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


def requested_wait(prefer: str | None) -> float:
    """Seconds asked for by `Prefer: wait=N` (RFC 7240), capped at MAX_WAIT_SECONDS; 0 when absent."""
    found = _WAIT.search(prefer or "")
    return min(float(found.group(1)), MAX_WAIT_SECONDS) if found else 0.0


def etag_of(version: int) -> str:
    """A request's ETag: its read-model version, quoted."""
    return f'"{version}"'


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Whether `If-None-Match` names `etag` (weak comparison, a list, or `*`; RFC 9110 section 13.1.2)."""
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or etag in tags


class RequestChanges:
    """One listening connection per process, and the events of the calls waiting on each request."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        """Set while the listening connection is up (tests and health wait on it)."""

    @classmethod
    def for_url(cls, url: URL) -> RequestChanges:
        dsn = libpq_url(url.render_as_string(hide_password=False))
        return cls(lambda: asyncpg.connect(dsn))

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="request-changes")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.asynccontextmanager
    async def watching(self, request_id: str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever `request_id` is written, for as long as the block runs."""
        event = asyncio.Event()
        self._waiting.setdefault(request_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiting.get(request_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiting[request_id]

    def _announced(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        for event in self._waiting.get(payload.split(" ", 1)[0], ()):
            event.set()

    def _wake_all(self) -> None:
        for waiters in self._waiting.values():
            for event in waiters:
                event.set()

    async def _listen(self) -> None:
        while True:
            lost = asyncio.Event()
            try:
                connection = await self._connect()
                try:
                    connection.add_termination_listener(lambda _c, lost=lost: lost.set())
                    await connection.add_listener(CHANNEL, self._announced)
                    self.listening.set()
                    self._wake_all()  # whatever was announced while we were away: look again
                    await lost.wait()
                finally:
                    self.listening.clear()
                    with contextlib.suppress(Exception):
                        await connection.close(timeout=1)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # PostgreSQL down or restarting: waiters fall back to re-reading
                log.warning("request change announcements unavailable: %s", exc)
            await asyncio.sleep(RECONNECT_SECONDS)
