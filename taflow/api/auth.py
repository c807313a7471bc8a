"""Credentials -> Actor, and the one authorisation gate every route goes through.

A bearer credential is an API key (`tf_...`, looked up by its SHA-256 digest) or, when an OIDC issuer
is configured, a JWT validated against the issuer's JWKS (taflow.api.oidc). Missing or invalid
credentials answer 401; a role that may not take an action, or a credential whose role does not fit
its organisation, answers 403 (taflow.authz holds the table).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from taflow import authz
from taflow.api.deps import SessionDep
from taflow.api.problems import ProblemError
from taflow.authz import Action, Reach
from taflow.db.credentials import KEY_PREFIX, authenticate
from taflow.domain.models import Actor
from taflow.settings import Settings

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key issued to one organisation and role (`Authorization: Bearer tf_...`), or, where "
    "the deployment configures an OIDC issuer, an access token from it (`Authorization: Bearer eyJ...`).",
)

CHALLENGE = 'Bearer realm="taflow"'
STATE_ACTOR = "taflow_actor"
"""request.state attribute holding the caller once resolved (the idempotency middleware resolves early)."""


def unauthorized(detail: str, *, invalid: bool) -> ProblemError:
    challenge = CHALLENGE + (', error="invalid_token"' if invalid else "")
    return ProblemError("unauthorized", detail, headers={"WWW-Authenticate": challenge})


def bearer_token(authorization: str | None) -> str | None:
    """The credential of an `Authorization: Bearer ...` header; None when absent, 401 when malformed."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("use `Authorization: Bearer <api key or token>`", invalid=True)
    return token


async def resolve(session: AsyncSession, settings: Settings, token: str) -> Actor:
    """The actor behind a bearer credential; ProblemError 401/403 when it is not a usable one."""
    if token.startswith(KEY_PREFIX):
        actor = await authenticate(session, token)
        if actor is None:
            raise unauthorized("unknown or revoked API key", invalid=True)
    elif token.count(".") == 2 and settings.oidc_issuer:
        from taflow.api.oidc import verify_token

        actor = await verify_token(settings, token)
    else:
        raise unauthorized("unknown or revoked API key", invalid=True)
    if not authz.role_fits_organisation(actor.role, actor.organisation):
        raise ProblemError(
            "forbidden", f"role {actor.role.value} cannot belong to organisation {actor.organisation}"
        )
    return actor


async def optional_actor(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Actor | None:
    """The caller, or None when no Authorization header was sent; a wrong credential is still a 401."""
    cached: Actor | None = getattr(request.state, STATE_ACTOR, None)
    if cached is not None:
        return cached
    if credentials is None:
        if request.headers.get("authorization"):
            raise unauthorized("use `Authorization: Bearer <api key or token>`", invalid=True)
        return None
    actor = await resolve(session, request.app.state.settings, credentials.credentials.strip())
    setattr(request.state, STATE_ACTOR, actor)
    return actor


async def current_actor(actor: Annotated[Actor | None, Depends(optional_actor)]) -> Actor:
    if actor is None:
        raise unauthorized("an API key is required: `Authorization: Bearer <api key>`", invalid=False)
    return actor


CurrentActor = Annotated[Actor, Depends(current_actor)]
OptionalActor = Annotated[Actor | None, Depends(optional_actor)]


@dataclass(frozen=True)
class Caller:
    """An authenticated caller allowed to take `action`, and how far that reaches (taflow.authz)."""

    actor: Actor
    action: Action
    reach: Reach


def check(actor: Actor, action: Action) -> Caller:
    try:
        return Caller(actor, action, authz.reach(actor, action))
    except authz.Denied as exc:
        raise ProblemError("forbidden", str(exc)) from None


def allow(action: Action) -> Callable[[Actor], Awaitable[Caller]]:
    """Dependency: the caller, if the authz table lets their role take `action`; 403 otherwise."""

    async def dependency(actor: CurrentActor) -> Caller:
        return check(actor, action)

    return dependency
