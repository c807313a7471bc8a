"""Credentials -> Actor, and the one authorisation gate every route goes through.

A bearer credential is an API key (`tf_...`, looked up by its SHA-256 digest) or, when an OIDC issuer
is configured, a JWT validated against the issuer's JWKS (taflow.api.oidc). Missing or invalid
credentials answer 401; a role that may not take an action, or a credential whose role does not fit
its organisation, answers 403 (taflow.authz holds the table).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine

from taflow import authz
from taflow.api.problems import ProblemError
from taflow.authz import Action, Reach
from taflow.db.credentials import KEY_PREFIX, actor_of_digest, digest, plausible_key
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


CACHE_ENTRIES = 10_000
"""At most this many keys are remembered per process (the expired ones go first, then all)."""


class Authenticator:
    """Bearer credential -> Actor, one per API process (made in the lifespan, on `app.state`).

    API keys it has looked up are trusted for `cache_seconds` (by the key's SHA-256 digest, never
    the key), so a caller's calls cost no database round trip for authentication; a revoked key
    stops working within that time. Unknown keys are not remembered: each costs a lookup.
    """

    def __init__(self, settings: Settings, database: AsyncEngine, cache_seconds: float) -> None:
        self.settings = settings
        self.database = database
        """Autocommit (taflow.db.session.autocommit): the lookup is one statement, no BEGIN/COMMIT."""
        self.cache_seconds = cache_seconds
        self._known: dict[str, tuple[float, Actor]] = {}

    async def resolve(self, token: str) -> Actor:
        """The actor behind a bearer credential; ProblemError 401/403 when it is not a usable one."""
        if token.startswith(KEY_PREFIX):
            actor = await self.api_key(token)
            if actor is None:
                raise unauthorized("unknown or revoked API key", invalid=True)
        elif token.count(".") == 2 and self.settings.oidc_issuer:
            from taflow.api.oidc import verify_token

            actor = await verify_token(self.settings, token)
        else:
            raise unauthorized("unknown or revoked API key", invalid=True)
        if not authz.role_fits_organisation(actor.role, actor.organisation):
            raise ProblemError(
                "forbidden", f"role {actor.role.value} cannot belong to organisation {actor.organisation}"
            )
        return actor

    async def api_key(self, key: str) -> Actor | None:
        """The actor of an active API key (from the cache while it is fresh); None: refuse it."""
        if not plausible_key(key):
            return None
        key_digest = digest(key)
        now = time.monotonic()
        known = self._known.get(key_digest)
        if known is not None and known[0] > now:
            return known[1]
        async with self.database.connect() as connection:
            actor = await actor_of_digest(connection, key_digest)
        if actor is None:
            self._known.pop(key_digest, None)
        elif self.cache_seconds > 0:
            if len(self._known) >= CACHE_ENTRIES:
                self._forget_expired(now)
            self._known[key_digest] = (now + self.cache_seconds, actor)
        return actor

    def _forget_expired(self, now: float) -> None:
        self._known = {k: v for k, v in self._known.items() if v[0] > now}
        if len(self._known) >= CACHE_ENTRIES:
            self._known.clear()


def authenticator(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.authenticator
    return auth


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
"""The bearer credential as sent (also what puts the scheme in the OpenAPI document)."""


async def optional_actor(request: Request, credentials: Credentials) -> Actor | None:
    """The caller, or None when no Authorization header was sent; a wrong credential is still a 401."""
    cached: Actor | None = getattr(request.state, STATE_ACTOR, None)
    if cached is not None:
        return cached
    if credentials is None:
        if request.headers.get("authorization"):
            raise unauthorized("use `Authorization: Bearer <api key or token>`", invalid=True)
        return None
    actor = await authenticator(request).resolve(credentials.credentials.strip())
    setattr(request.state, STATE_ACTOR, actor)
    return actor


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


def allow(action: Action) -> Callable[[Request, HTTPAuthorizationCredentials | None], Awaitable[Caller]]:
    """Dependency: the caller, if the authz table lets their role take `action`; 401 without a usable
    credential, 403 otherwise. One dependency over the credential, not a chain of them: each level
    costs FastAPI about 40 us per call."""

    async def dependency(request: Request, credentials: Credentials) -> Caller:
        actor = await optional_actor(request, credentials)
        if actor is None:
            raise unauthorized("an API key is required: `Authorization: Bearer <api key>`", invalid=False)
        return check(actor, action)

    return dependency
