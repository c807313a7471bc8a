"""OIDC bearer tokens as an alternative to API keys: a JWT signed by the configured issuer.

A token is accepted when its signature verifies with a key of the issuer's JWKS (by `kid`), its
algorithm is one of `oidc_algorithms` (never `none`, never HMAC), and `iss`, `aud` and `exp` are
what the settings say (with `oidc_leeway_seconds`). The caller's subject, organisation and role come
from configurable claims; the role may be renamed by `oidc_role_map`. A token that fails any of
this is a 401; a valid token whose role TAflow does not know is a 403.

The JWKS is fetched from `oidc_jwks_url` (or read from `oidc_jwks_file`), cached for an hour, and
fetched again when a token names an unknown `kid` (at most every 30 s), so the issuer may rotate keys.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from jwt import PyJWK, PyJWKSet

from taflow.api.problems import ProblemError
from taflow.domain.enums import Role
from taflow.domain.models import Actor
from taflow.settings import Settings

log = logging.getLogger("taflow.api")

CACHE_SECONDS = 3600.0
REFETCH_SECONDS = 30.0
FETCH_TIMEOUT = 5.0
ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


def _invalid(detail: str) -> ProblemError:
    return ProblemError(
        "unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="taflow", error="invalid_token"'}
    )


@dataclass
class JwksCache:
    source: str
    keys: dict[str, PyJWK] = field(default_factory=dict)
    loaded_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def key(self, kid: str | None, settings: Settings) -> PyJWK | None:
        fresh = time.monotonic() - self.loaded_at < CACHE_SECONDS
        if not fresh or (kid not in self.keys and time.monotonic() - self.loaded_at > REFETCH_SECONDS):
            async with self.lock:
                if time.monotonic() - self.loaded_at > REFETCH_SECONDS or not self.keys:
                    await self._load(settings)
        if kid is None:
            return next(iter(self.keys.values())) if len(self.keys) == 1 else None
        return self.keys.get(kid)

    async def _load(self, settings: Settings) -> None:
        try:
            if settings.oidc_jwks_file is not None:
                data: Any = json.loads(await asyncio.to_thread(settings.oidc_jwks_file.read_text, "utf-8"))
            else:
                async with httpx.AsyncClient(timeout=FETCH_TIMEOUT, follow_redirects=False) as http:
                    resp = await http.get(self.source)
                    resp.raise_for_status()
                    data = resp.json()
            keyset = PyJWKSet.from_dict(data)
        except (OSError, ValueError, httpx.HTTPError, jwt.PyJWKSetError) as exc:
            log.warning("could not load the OIDC JWKS from %s: %s", self.source, exc)
            if not self.keys:
                raise ProblemError("unavailable", "the identity provider's keys are unavailable") from exc
            return  # keep the keys we have
        self.keys = {k.key_id or f"#{i}": k for i, k in enumerate(keyset.keys)}
        self.loaded_at = time.monotonic()


_caches: dict[str, JwksCache] = {}


def _cache(settings: Settings) -> JwksCache:
    source = str(settings.oidc_jwks_file or settings.oidc_jwks_url or "")
    if not source:
        raise ProblemError("unavailable", "OIDC is enabled but no JWKS is configured")
    if source not in _caches:
        _caches[source] = JwksCache(source)
    return _caches[source]


def _role(raw: Any, settings: Settings) -> Role:
    names = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    roles: set[Role] = set()
    for name in names:
        if not isinstance(name, str):
            continue
        mapped = settings.oidc_role_map.get(name, name)
        try:
            roles.add(Role(mapped))
        except ValueError:
            continue
    if len(roles) != 1:
        why = "names no role TAflow knows" if not roles else "names more than one TAflow role"
        raise ProblemError("forbidden", f"the token's {settings.oidc_role_claim} claim {why}")
    return roles.pop()


async def verify_token(settings: Settings, token: str) -> Actor:
    """The actor of a valid token; ProblemError 401 (invalid) or 403 (valid, but no known role)."""
    if not settings.oidc_issuer or not settings.oidc_audience:
        raise _invalid("OIDC tokens are not accepted here; use an API key")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise _invalid("malformed token") from None
    algorithms = [a for a in settings.oidc_algorithms if a in ASYMMETRIC]
    alg = header.get("alg")
    if alg not in algorithms:
        raise _invalid("token algorithm not accepted")
    kid = header.get("kid")
    key = await _cache(settings).key(kid if isinstance(kid, str) else None, settings)
    if key is None:
        raise _invalid("token signed with an unknown key")
    declared = getattr(key, "algorithm_name", None)
    if declared and declared != alg:
        raise _invalid("token algorithm does not match its key")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key.key,
            algorithms=[alg],
            audience=settings.oidc_audience,
            issuer=settings.oidc_issuer,
            leeway=settings.oidc_leeway_seconds,
            options={"require": ["exp", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise _invalid("token expired") from None
    except jwt.InvalidAudienceError:
        raise _invalid("token is not meant for this API (audience)") from None
    except jwt.InvalidIssuerError:
        raise _invalid("token from an issuer this API does not trust") from None
    except jwt.PyJWTError as exc:  # a bad signature, a key of another type than `alg`, a malformed claim
        raise _invalid(f"invalid token: {type(exc).__name__}") from None
    subject = claims.get(settings.oidc_subject_claim)
    if not isinstance(subject, str) or not subject or len(subject) > 120:
        raise _invalid(f"token has no usable {settings.oidc_subject_claim} claim")
    organisation = claims.get(settings.oidc_organisation_claim)
    if not isinstance(organisation, str) or not organisation or len(organisation) > 16:
        raise ProblemError(
            "forbidden", f"the token's {settings.oidc_organisation_claim} claim names no organisation"
        )
    return Actor(
        subject=subject, organisation=organisation, role=_role(claims.get(settings.oidc_role_claim), settings)
    )
