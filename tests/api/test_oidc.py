"""OIDC bearer tokens: a locally generated key set served on loopback, tokens good and bad."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from taflow.api import oidc
from taflow.api.app import create_app
from taflow.settings import Settings
from tests.api.conftest import MAX_BODY, Api, assert_problem, draft

ISSUER = "https://idp.example.org/realms/asean"
AUDIENCE = "taflow-api"


class KeySet:
    """Signing keys and the JWKS that publishes their public halves."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.published: list[str] = []

    def add(self, kind: str = "rsa", publish: bool = True) -> str:
        kid = f"{kind}-{uuid.uuid4().hex[:8]}"
        self.keys[kid] = (
            rsa.generate_private_key(65537, 2048)
            if kind == "rsa"
            else ec.generate_private_key(ec.SECP256R1())
        )
        if publish:
            self.published.append(kid)
        return kid

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid in self.published:
            key = self.keys[kid]
            if isinstance(key, rsa.RSAPrivateKey):
                jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"alg": "RS256"}
            else:
                jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"alg": "ES256"}
            out.append(jwk | {"kid": kid, "use": "sig"})
        return {"keys": out}

    def token(self, kid: str, **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "th-coordinator@customs.go.th",
            "iat": now,
            "exp": now + 300,
            "taflow_org": "TH",
            "taflow_role": "requester",
        } | claims
        body = {k: v for k, v in body.items() if v is not None}
        alg = "RS256" if kid.startswith("rsa") else "ES256"
        return jwt.encode(body, self.keys[kid], algorithm=alg, headers={"kid": kid})


async def _serve_jwks(keyset: KeySet) -> tuple[asyncio.Server, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        body = json.dumps(keyset.jwks()).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
            + body
        )
        await writer.drain()
        writer.close()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    return server, f"http://127.0.0.1:{port}/realms/asean/protocol/openid-connect/certs"


@pytest.fixture
async def keyset() -> KeySet:
    return KeySet()


def _app_settings(database_url: str, task_queue: str, **over: Any) -> Settings:
    return Settings(
        database_url=database_url,
        task_queue=task_queue,
        max_body_bytes=MAX_BODY,
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        oidc_role_map={"ta-reviewer": "asec_reviewer"},
        **over,
    )


@pytest.fixture
async def oidc_api(
    keyset: KeySet, database_url: str, engine: AsyncEngine, temporal_client: Client, task_queue: str
) -> AsyncIterator[httpx.AsyncClient]:
    server, url = await _serve_jwks(keyset)
    settings = _app_settings(database_url, task_queue, oidc_jwks_url=url)
    try:
        async with Api(create_app(settings, client=temporal_client, engine=engine)) as client:
            yield client
    finally:
        server.close()
        await server.wait_closed()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_valid_token_acts_as_its_organisation_and_role(
    oidc_api: httpx.AsyncClient, keyset: KeySet
) -> None:
    kid, ec_kid = keyset.add(), keyset.add("ec")
    token = keyset.token(kid)
    resp = await oidc_api.post("/v1/requests", json=draft(), headers=_bearer(token))
    assert resp.status_code == 201, resp.text
    assert resp.json()["member_state"] == "TH"
    rid = resp.json()["id"]
    # the role claim is mapped (ta-reviewer -> asec_reviewer); an ES256 key works as well
    reviewer = keyset.token(
        ec_kid, sub="reviewer@asean.org", taflow_org="ASEC", taflow_role=["staff", "ta-reviewer"]
    )
    assert (await oidc_api.get("/v1/inbox", headers=_bearer(reviewer))).status_code == 200
    assert_problem(await oidc_api.post("/v1/requests", json=draft(), headers=_bearer(reviewer)), 403)
    listed = await oidc_api.get("/v1/requests", headers=_bearer(token))
    assert listed.status_code == 200
    assert all(i["member_state"] == "TH" for i in listed.json()["items"])
    assert rid.startswith("TA-")


@pytest.mark.parametrize(
    ("claims", "status", "detail"),
    [
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, 401, "expired"),
        ({"aud": "another-api"}, 401, "audience"),
        ({"iss": "https://evil.example.org/"}, 401, "issuer"),
        ({"exp": None}, 401, "invalid token"),
        ({"taflow_role": "superuser"}, 403, "no role"),
        ({"taflow_role": ["requester", "asec_head"]}, 403, "more than one"),
        ({"taflow_org": None}, 403, "organisation"),
        ({"taflow_org": "ASEC"}, 403, "cannot belong"),
        ({"sub": None}, 401, "sub"),
    ],
)
async def test_bad_tokens_are_refused(
    oidc_api: httpx.AsyncClient, keyset: KeySet, claims: dict[str, Any], status: int, detail: str
) -> None:
    token = keyset.token(keyset.add(), **claims)
    resp = await oidc_api.get("/v1/requests", headers=_bearer(token))
    body = assert_problem(resp, status)
    assert detail in body["detail"]
    if status == 401:
        assert 'error="invalid_token"' in resp.headers["www-authenticate"]


async def test_forged_and_unknown_keys_are_refused(oidc_api: httpx.AsyncClient, keyset: KeySet) -> None:
    published = keyset.add()
    secret = keyset.add(publish=False)
    unknown = keyset.token(secret)
    assert (
        "unknown key"
        in assert_problem(await oidc_api.get("/v1/inbox", headers=_bearer(unknown)), 401)["detail"]
    )
    # a published kid, but signed by another key
    forged = jwt.encode(
        jwt.decode(keyset.token(published), options={"verify_signature": False}),
        keyset.keys[secret],
        algorithm="RS256",
        headers={"kid": published},
    )
    assert_problem(await oidc_api.get("/v1/inbox", headers=_bearer(forged)), 401)
    # alg=none and HS256 keyed with the public key (algorithm confusion) are refused before any key is used
    claims = jwt.decode(keyset.token(published), options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": published})
    assert_problem(await oidc_api.get("/v1/inbox", headers=_bearer(unsigned)), 401)
    header = json.dumps({"alg": "HS256", "kid": published, "typ": "JWT"}).encode()
    import base64

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    confused = f"{b64(header)}.{b64(json.dumps(claims).encode())}.{b64(b'x' * 32)}"
    assert (
        "algorithm"
        in assert_problem(await oidc_api.get("/v1/inbox", headers=_bearer(confused)), 401)["detail"]
    )
    # an RSA key's kid on an ES256 token (signed with an EC key)
    ec_secret = keyset.add("ec", publish=False)
    mixed = jwt.encode(claims, keyset.keys[ec_secret], algorithm="ES256", headers={"kid": published})
    assert_problem(await oidc_api.get("/v1/inbox", headers=_bearer(mixed)), 401)
    for garbage in ("a.b.c", "eyJ.eyJ.sig"):
        assert_problem(await oidc_api.get("/v1/inbox", headers=_bearer(garbage)), 401)


async def test_the_issuer_may_rotate_its_keys(
    oidc_api: httpx.AsyncClient, keyset: KeySet, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = keyset.add()
    assert (await oidc_api.get("/v1/inbox", headers=_bearer(keyset.token(first)))).status_code == 200
    monkeypatch.setattr(oidc, "REFETCH_SECONDS", 0.0)
    keyset.published = []
    second = keyset.add()  # the issuer rotates: only the new key is published
    assert (await oidc_api.get("/v1/inbox", headers=_bearer(keyset.token(second)))).status_code == 200


async def test_a_jwks_file_and_oidc_off(
    keyset: KeySet,
    database_url: str,
    engine: AsyncEngine,
    temporal_client: Client,
    task_queue: str,
    tmp_path: Path,
) -> None:
    kid = keyset.add()
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(keyset.jwks()))
    settings = _app_settings(database_url, task_queue, oidc_jwks_file=path)
    async with Api(create_app(settings, client=temporal_client, engine=engine)) as client:
        assert (await client.get("/v1/inbox", headers=_bearer(keyset.token(kid)))).status_code == 200
    off = Settings(database_url=database_url, task_queue=task_queue)
    async with Api(create_app(off, client=temporal_client, engine=engine)) as client:
        assert_problem(await client.get("/v1/inbox", headers=_bearer(keyset.token(kid))), 401)
