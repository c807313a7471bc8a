"""`taflow keys create|list|revoke|rotate` against the test database (in process, with typer's runner)."""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner

from taflow.cli import app
from taflow.db.credentials import authenticate, digest
from taflow.db.session import make_engine, make_sessionmaker
from taflow.domain.models import Actor


def _authenticate(url: str, key: str) -> Actor | None:
    async def run() -> Actor | None:
        engine = make_engine(url, pool_size=1)
        try:
            async with make_sessionmaker(engine)() as s:
                return await authenticate(s, key)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _key_id(url: str, key: str) -> int:
    from sqlalchemy import text

    async def run() -> int:
        engine = make_engine(url, pool_size=1)
        try:
            async with engine.connect() as conn:
                found = await conn.execute(
                    text("select id from api_keys where digest = :d"), {"d": digest(key)}
                )
                return int(found.scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(run())


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("TAFLOW_DATABASE_URL", database_url)
    return CliRunner()


def test_create_list_rotate_revoke(cli: CliRunner, database_url: str) -> None:
    made = cli.invoke(app, ["keys", "create", "LA", "requester", "la-partner-system", "--label", "LCDMS"])
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    assert key.startswith("tf_") and "shown this once" in made.stderr
    actor = _authenticate(database_url, key)
    assert actor == Actor(subject="la-partner-system", organisation="LA", role="requester")
    key_id = _key_id(database_url, key)

    listed = cli.invoke(app, ["keys", "list", "--organisation", "LA"])
    assert listed.exit_code == 0
    line = next(li for li in listed.stdout.splitlines() if li.split()[0] == str(key_id))
    assert key[:9] in line and "la-partner-system" in line and "active" in line and "LCDMS" in line
    assert key not in listed.stdout  # never the key itself

    kept = cli.invoke(app, ["keys", "rotate", str(key_id), "--keep-old"])
    assert kept.exit_code == 0, kept.output
    changeover = kept.stdout.strip()
    assert (
        _authenticate(database_url, key) is not None and _authenticate(database_url, changeover) is not None
    )

    rotated = cli.invoke(app, ["keys", "rotate", str(key_id)])
    assert rotated.exit_code == 0, rotated.output
    new_key = rotated.stdout.strip()
    assert new_key not in (key, changeover)
    assert _authenticate(database_url, key) is None
    assert _authenticate(database_url, new_key) == actor
    assert cli.invoke(app, ["keys", "rotate", str(key_id)]).exit_code == 1  # the old one is revoked now

    new_id = _key_id(database_url, new_key)
    assert cli.invoke(app, ["keys", "revoke", str(new_id)]).exit_code == 0
    assert _authenticate(database_url, new_key) is None
    again = cli.invoke(app, ["keys", "revoke", str(new_id)])
    assert again.exit_code == 1 and "no active key" in again.stderr
    active = cli.invoke(app, ["keys", "list", "--organisation", "LA", "--active"]).stdout
    assert str(new_id) not in [li.split()[0] for li in active.splitlines()]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ASEC", "requester", "x"], "belongs to"),
        (["KH", "asec_head", "x"], "belongs to"),
        (["XX", "requester", "x"], "unknown organisation"),
        (["KH", "requester", " "], "subject"),
    ],
)
def test_create_refuses_identities_that_cannot_exist(cli: CliRunner, args: list[str], message: str) -> None:
    out = cli.invoke(app, ["keys", "create", *args])
    assert out.exit_code == 1
    assert message in out.stderr
