"""A minimal keep-alive HTTP/1.1 client for load generation on loopback.

httpx costs the load generator about 3 ms of CPU per call, on the same cores as the server it
measures; this costs a fraction of that, so the API is not charged for its client. It speaks just
enough HTTP for our API: JSON bodies, Content-Length responses, keep-alive connections.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Response:
    status_code: int
    headers: dict[str, str]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
KEEP_IDLE_S = 3.0
"""uvicorn closes idle keep-alive connections after 5 s: never reuse one idle that long."""


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = time.monotonic()

    def close(self) -> None:
        self.writer.close()


class Http1Client:
    """`await client.request("POST", "/v1/requests", json=..., headers=...)` against one base URL."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname not in LOOPBACK:
            raise ValueError(f"load goes to loopback only (http://127.0.0.1:port), not {base_url}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self._idle: list[_Conn] = []

    async def _connect(self, fresh: bool = False) -> _Conn:
        while self._idle and not fresh:
            conn = self._idle.pop()
            if time.monotonic() - conn.idle_since < KEEP_IDLE_S:
                return conn
            conn.close()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return _Conn(reader, writer)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        body = b"" if json is None else _dumps(json)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        if json is not None:
            lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        for attempt in (1, 2):  # a kept-alive connection the server closed meanwhile: once more, fresh
            conn = await self._connect(fresh=attempt == 2)
            try:
                conn.writer.write(head + body)
                response = await self._read(conn)
            except (ConnectionError, asyncio.IncompleteReadError):
                conn.close()
                if attempt == 2:
                    raise
                continue
            if response.headers.get("connection", "").lower() == "close":
                conn.close()
            else:
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
            return response
        raise AssertionError("unreachable")

    async def get(self, path: str, *, headers: dict[str, str] | None = None) -> Response:
        return await self.request("GET", path, headers=headers)

    async def post(self, path: str, *, json: Any = None, headers: dict[str, str] | None = None) -> Response:
        return await self.request("POST", path, json=json, headers=headers)

    @staticmethod
    async def _read(conn: _Conn) -> Response:
        status_line = await conn.reader.readuntil(b"\r\n")
        if not status_line.strip():
            raise ConnectionError("empty status line")
        status = int(status_line.split(b" ", 2)[1])
        headers: dict[str, str] = {}
        while True:
            line = await conn.reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await conn.reader.readuntil(b"\r\n")).strip(), 16)
                chunks.append(await conn.reader.readexactly(size + 2))
                if size == 0:
                    break
            content = b"".join(c[:-2] for c in chunks)
        else:
            content = await conn.reader.readexactly(int(headers.get("content-length", "0")))
        return Response(status, headers, content)

    async def aclose(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
