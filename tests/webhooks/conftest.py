"""Webhook test helpers: a real HTTP receiver on loopback, a worker with a fast retry budget."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from taflow.activities.webhooks import dispatcher_id, start_dispatcher
from taflow.api.app import create_app
from taflow.db.models import WebhookDeliveryRow
from taflow.devstack import free_port
from taflow.settings import Settings
from taflow.worker import build_worker
from tests.api.conftest import MAX_BODY, Api, auth, keys  # noqa: F401 (fixtures shared with the API tests)

SM = async_sessionmaker[AsyncSession]


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    """A minimal HTTP/1.1 server on 127.0.0.1 that records every POST and answers `status`."""

    port: int = field(default_factory=free_port)
    status: int = 204
    received: list[Received] = field(default_factory=list)
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readline()  # request line
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.received.append(Received(headers, body))
            writer.write(
                f"HTTP/1.1 {self.status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()
            )
            await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.close()
                await writer.wait_closed()

    def events(self, request_id: str | None = None) -> list[dict[str, Any]]:
        out = [r.event for r in self.received]
        return [e for e in out if request_id is None or e["data"].get("request_id") == request_id]


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[[], Receiver]]:
    made: list[Receiver] = []

    def make() -> Receiver:
        made.append(Receiver())
        return made[-1]

    yield make
    for r in made:
        await r.stop()


def fast_settings(database_url: str, task_queue: str, **over: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "task_queue": task_queue,
        "max_body_bytes": MAX_BODY,
        "webhook_allow_http": True,
        "webhook_max_attempts": 40,
        "webhook_initial_interval_seconds": 0.1,
        "webhook_max_interval_seconds": 0.3,
        "webhook_poll_seconds": 0.05,
        "webhook_idle_wait_seconds": 2.0,
        "webhook_timeout_seconds": 2.0,
    }
    return Settings(**(values | over))


@contextlib.asynccontextmanager
async def running(client: Client, sessionmaker: SM, settings: Settings) -> AsyncIterator[None]:
    """A worker on the settings' task queue with its outbox dispatcher, stopped (and terminated) after.

    Webhooks other tests left behind (documentation URLs, fuzzed ones) are deleted first: a test's
    dispatcher delivers to loopback receivers only, never anywhere else.
    """
    await drop_foreign_webhooks(sessionmaker)
    async with build_worker(client, sessionmaker, settings.task_queue, settings):
        await start_dispatcher(client, settings.task_queue, settings)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                await client.get_workflow_handle(dispatcher_id(settings.task_queue)).terminate("test done")


@pytest.fixture
def hook_app(database_url: str, engine: AsyncEngine, temporal_client: Client, task_queue: str) -> FastAPI:
    return create_app(fast_settings(database_url, task_queue), client=temporal_client, engine=engine)


@pytest.fixture
async def api(hook_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with Api(hook_app) as client:
        yield client


async def wait_until(pred: Callable[[], Any], seconds: float = 20.0, what: str = "condition") -> Any:
    """Poll `pred` (sync or async) every 50 ms until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        value = pred()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def deliveries(sessionmaker: SM, subscription_id: str) -> list[WebhookDeliveryRow]:
    async with sessionmaker() as s:
        rows = await s.execute(
            select(WebhookDeliveryRow)
            .where(WebhookDeliveryRow.subscription_id == subscription_id)
            .order_by(WebhookDeliveryRow.id)
        )
        return list(rows.scalars())


async def drop_webhooks(sessionmaker: SM, ids: list[str]) -> None:
    """Delete test webhooks so later tests' dispatchers do not deliver to closed receivers."""
    from datetime import UTC, datetime

    from taflow.db.webhooks import delete_subscription

    async with sessionmaker.begin() as s:
        for i in ids:
            await delete_subscription(s, i, datetime.now(UTC))


async def drop_foreign_webhooks(sessionmaker: SM) -> None:
    from datetime import UTC, datetime

    from taflow.db.webhooks import delete_subscription, list_subscriptions

    async with sessionmaker.begin() as s:
        for sub in await list_subscriptions(s, None):
            if not sub.url.startswith("http://127.0.0.1:"):
                await delete_subscription(s, sub.id, datetime.now(UTC))


def new_task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:12]}"
