"""Bearer API keys -> Actor. Missing or wrong keys answer 401, a role that may not act answers 403."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from taflow.api.deps import SessionDep
from taflow.api.problems import ProblemError
from taflow.db.credentials import authenticate
from taflow.domain.enums import Role
from taflow.domain.models import Actor

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key issued to one organisation and role: `Authorization: Bearer tf_...`",
)

CHALLENGE = 'Bearer realm="taflow"'


def unauthorized(detail: str, *, invalid: bool) -> ProblemError:
    challenge = CHALLENGE + (', error="invalid_token"' if invalid else "")
    return ProblemError("unauthorized", detail, headers={"WWW-Authenticate": challenge})


async def optional_actor(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Actor | None:
    """The caller, or None when no Authorization header was sent; a wrong key is still a 401."""
    if credentials is None:
        if request.headers.get("authorization"):
            raise unauthorized("use `Authorization: Bearer <api key>`", invalid=True)
        return None
    actor = await authenticate(session, credentials.credentials.strip())
    if actor is None:
        raise unauthorized("unknown or revoked API key", invalid=True)
    return actor


async def current_actor(actor: Annotated[Actor | None, Depends(optional_actor)]) -> Actor:
    if actor is None:
        raise unauthorized("an API key is required: `Authorization: Bearer <api key>`", invalid=False)
    return actor


CurrentActor = Annotated[Actor, Depends(current_actor)]
OptionalActor = Annotated[Actor | None, Depends(optional_actor)]


def require(*roles: Role) -> Callable[[Actor], Awaitable[Actor]]:
    """Dependency: the caller, if their role is one of `roles`; 403 otherwise."""
    allowed = frozenset(roles)
    names = ", ".join(r.value for r in roles)

    async def dependency(actor: CurrentActor) -> Actor:
        if actor.role not in allowed:
            raise ProblemError("forbidden", f"role {actor.role.value} may not do this (needs: {names})")
        return actor

    return dependency
