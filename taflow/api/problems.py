"""RFC 9457 problem details: every error the API gives is `application/problem+json`.

`type` URIs are stable identifiers clients may switch on; `title` is fixed per type, `detail`
explains this occurrence. Nothing the caller sent is echoed back (validation errors list
locations and messages, not inputs).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("taflow.api")

PROBLEM_BASE = "https://taflow.dev/problems/"
PROBLEM_JSON = "application/problem+json"

KINDS: dict[str, tuple[int, str]] = {
    "bad-request": (400, "Bad request"),
    "malformed-json": (400, "Malformed JSON body"),
    "invalid-cursor": (400, "Invalid pagination cursor"),
    "unauthorized": (401, "Missing or invalid credentials"),
    "forbidden": (403, "Not allowed"),
    "four-eyes": (403, "The four-eyes rule forbids this"),
    "not-found": (404, "Not found"),
    "method-not-allowed": (405, "Method not allowed"),
    "conflict": (409, "Conflict"),
    "wrong-stage": (409, "The request is not at a stage that allows this"),
    "duplicate-unresolved": (409, "A suspected duplicate must be confirmed or dismissed first"),
    "idempotency-conflict": (409, "Idempotency-Key reused with a different body"),
    "idempotency-in-progress": (409, "A request with this Idempotency-Key is still being processed"),
    "token-used": (409, "Invitation link already used"),
    "token-expired": (410, "Invitation link expired"),
    "payload-too-large": (413, "Request body too large"),
    "unsupported-media-type": (415, "Unsupported media type"),
    "validation-error": (422, "Invalid request"),
    "invalid-decision": (422, "Invalid decision"),
    "internal-error": (500, "Internal server error"),
    "unavailable": (503, "A backing service is unavailable"),
    "timeout": (504, "The workflow did not answer in time"),
}

STATUS_KINDS: dict[int, str] = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    500: "internal-error",
    503: "unavailable",
    504: "timeout",
}


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "https://taflow.dev/problems/wrong-stage",
                    "title": "The request is not at a stage that allows this",
                    "status": 409,
                    "detail": "request is at rocb_matching, expected asec_review",
                    "instance": "/v1/requests/TA-2026-000042/asec-review",
                }
            ]
        }
    )

    type: str = Field(description="Stable URI identifying the kind of problem")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = Field(default=None, description="The path of the request that failed")
    errors: list[FieldError] | None = Field(default=None, description="Validation errors, one per field")


class ProblemError(Exception):
    """Raise anywhere in a request to answer with a problem of `kind` (a key of KINDS)."""

    def __init__(
        self,
        kind: str,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        errors: Sequence[FieldError] | None = None,
    ) -> None:
        super().__init__(detail or kind)
        self.kind = kind
        self.status, self.title = KINDS[kind]
        self.detail = detail
        self.headers = dict(headers or {})
        self.errors = list(errors) if errors is not None else None


def problem_response(
    kind: str,
    detail: str | None = None,
    *,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    errors: Sequence[FieldError] | None = None,
    status: int | None = None,
) -> JSONResponse:
    code, title = KINDS[kind]
    body = Problem(
        type=PROBLEM_BASE + kind,
        title=title,
        status=status or code,
        detail=detail,
        instance=instance,
        errors=list(errors) if errors is not None else None,
    )
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True),
        status_code=status or code,
        headers=dict(headers or {}),
        media_type=PROBLEM_JSON,
    )


def field_errors(raw: Sequence[Any]) -> list[FieldError]:
    """Pydantic errors without their `input` (which may be huge or private)."""
    out: list[FieldError] = []
    for err in raw:
        loc = [p if isinstance(p, int) else str(p) for p in err.get("loc", ())]
        out.append(FieldError(loc=loc, msg=str(err.get("msg", "")), type=str(err.get("type", ""))))
    return out


def answer(problem: ProblemError, instance: str | None) -> JSONResponse:
    """The problem+json response for a raised ProblemError."""
    return problem_response(
        problem.kind, problem.detail, instance=instance, headers=problem.headers, errors=problem.errors
    )


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return answer(exc, request.url.path)


# ---------------------------------------------------------------------------- the database is away

RETRY_AFTER_SECONDS = 1
STATEMENT_BUGS = (sa_exc.IntegrityError, sa_exc.ProgrammingError, sa_exc.DataError, sa_exc.NotSupportedError)
"""Errors that say the statement is wrong, not that the database is away: they stay 500s (a retry
would fail the same way), unless the connection died under them."""
FILE_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError)
"""OSErrors that are about files, not about reaching a service: 500s like any other bug, when they
name a file. Connecting to a PostgreSQL that is down through its unix socket raises a
FileNotFoundError naming none (the socket file is gone): that one is an outage."""
ASYNCPG_UNREACHABLE = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up (cannot connect now)
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, out of memory or disk
    asyncpg.InterfaceError,  # the connection is closed
    asyncpg.InternalClientError,  # its protocol stuck on a server's farewell (taflow.db.prepared)
)


def unavailable(exc: BaseException) -> ProblemError | None:
    """A 503 `unavailable` (with Retry-After) when `exc` means PostgreSQL cannot be used right now: it
    refuses connections, dropped ours (a restart), is shutting down, or the pool has no connection to
    spare; None for anything else. With the API's engine not pinging connections before use, the first
    call on a connection a restart dropped lands here, and SQLAlchemy renews the pool after it."""
    if isinstance(exc, sa_exc.DBAPIError):
        if isinstance(exc, STATEMENT_BUGS) and not exc.connection_invalidated:
            return None
        detail = "the database is unreachable; retry shortly"
    elif isinstance(exc, sa_exc.TimeoutError):
        detail = "the database has no free connection; retry shortly"
    elif isinstance(exc, ASYNCPG_UNREACHABLE):
        detail = "the database is unreachable; retry shortly"
    elif isinstance(exc, OSError) and not (isinstance(exc, FILE_ERRORS) and exc.filename is not None):
        detail = "a backing service is unreachable; retry shortly"
    else:
        return None
    log.warning("backing service unavailable: %s: %s", type(exc).__name__, exc)
    return ProblemError("unavailable", detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


async def _on_unavailable(request: Request, exc: Exception) -> JSONResponse:
    problem = unavailable(exc)
    if problem is None:
        raise exc  # a bug, not an outage: on to _on_unexpected (500, logged)
    return answer(problem, request.url.path)


UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.DBAPIError,
    sa_exc.TimeoutError,
    *ASYNCPG_UNREACHABLE,
    OSError,
)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(exc.errors())
    if any(e.type == "json_invalid" for e in errors):
        return problem_response(
            "malformed-json", "the body is not valid JSON", instance=request.url.path, errors=errors
        )
    count = len(errors)
    return problem_response(
        "validation-error",
        f"{count} field{'s' if count != 1 else ''} failed validation",
        instance=request.url.path,
        errors=errors,
    )


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = STATUS_KINDS.get(exc.status_code, "bad-request" if exc.status_code < 500 else "internal-error")
    detail = exc.detail if isinstance(exc.detail, str) else None
    if exc.status_code == 400 and detail and detail.startswith("There was an error parsing the body"):
        kind, detail = "malformed-json", "the body is not valid JSON (or not UTF-8)"
    return problem_response(
        kind, detail, instance=request.url.path, headers=exc.headers, status=exc.status_code
    )


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    problem = unavailable(exc)  # raised outside the routes (a middleware's own database work)
    if problem is not None:
        return answer(problem, request.url.path)
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response("internal-error", "the error was logged", instance=request.url.path)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    for error in UNAVAILABLE_ERRORS:
        app.add_exception_handler(error, _on_unavailable)
    app.add_exception_handler(Exception, _on_unexpected)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries declaring problem+json errors (moved to that media type in app.py)."""
    descriptions = {
        400: "Malformed JSON or an invalid cursor",
        401: "Missing, unknown or revoked API key",
        403: "The caller's role may not do this (or the four-eyes rule forbids it)",
        404: "No such request (or not visible to the caller)",
        409: "Wrong stage, or Idempotency-Key reused with another body (or still in progress)",
        410: "Invitation link expired",
        413: "Body larger than the configured limit",
        415: "Body is not JSON",
        422: "Validation failed (fields listed in `errors`)",
        503: "Temporal or the database is unreachable",
        504: "The workflow did not answer in time",
    }
    return {s: {"model": Problem, "description": descriptions.get(s, "Problem")} for s in statuses}


def problems_to_media_type(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite every 4xx/5xx response of an OpenAPI document to `application/problem+json`."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for code, response in operation.get("responses", {}).items():
                if str(code)[0] not in "45":
                    continue
                content = response.get("content", {})
                if "application/json" in content:
                    content[PROBLEM_JSON] = content.pop("application/json")
    return schema


# ---------------------------------------------------------------------------- body limit middleware

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class BodyLimitMiddleware:
    """Refuse bodies above `max_bytes` (by Content-Length, then by counting what is streamed).

    The body is buffered (it is small by definition) so the 413 goes out before any route runs:
    nothing is half-read and nothing is half-written. Non-JSON bodies on /v1 get 415.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = content_type = None
        for name, value in scope["headers"]:  # ASGI header names are lower-case
            if name == b"content-length":
                declared = value.decode("latin-1")
            elif name == b"content-type":
                content_type = value.decode("latin-1")
        path = scope.get("path", "")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await problem_response("bad-request", "Content-Length is not a number", instance=path)(
                    scope, receive, send
                )
                return
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and scope.get("method") in BODY_METHODS and path.startswith("/v1/"):
            ctype = (content_type or "").split(";")[0].strip().lower()
            if not (
                ctype == "application/json" or (ctype.startswith("application/") and ctype.endswith("+json"))
            ):
                await problem_response(
                    "unsupported-media-type", "send the body as application/json", instance=path
                )(scope, receive, send)
                return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await problem_response(
            "payload-too-large",
            f"the body may not exceed {self.max_bytes} bytes",
            instance=scope.get("path"),
        )(scope, receive, send)
