"""`taflow` as installed (the console script), against the test database."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from taflow.db.migrate import alembic_config
from taflow.devstack import normalize_database_url, running_embedded_postgres_url
from tests.support.pg import external_test_database

TAFLOW = Path(sys.executable).parent / "taflow"


def _taflow(*args: str, data_dir: Path, database_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAFLOW_")}
    env["TAFLOW_DATA_DIR"] = str(data_dir)
    if database_url is not None:
        env["TAFLOW_DATABASE_URL"] = database_url
    return subprocess.run([str(TAFLOW), *args], env=env, capture_output=True, text=True, timeout=120)


async def _schema(url: str) -> tuple[set[str], str | None]:
    conn = await asyncpg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        tables = {
            r["tablename"]
            for r in await conn.fetch("select tablename from pg_tables where schemaname='public'")
        }
        version = (
            await conn.fetchval("select version_num from alembic_version")
            if "alembic_version" in tables
            else None
        )
    finally:
        await conn.close()
    return tables, version


def test_help_lists_the_commands(tmp_path: Path) -> None:
    out = _taflow("--help", data_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    for command in ("dev", "migrate", "seed", "worker", "api", "db-url"):
        assert command in out.stdout


def test_db_url_prints_the_external_url_in_use(database_url: str, tmp_path: Path) -> None:
    out = _taflow("db-url", data_dir=tmp_path, database_url=database_url)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == normalize_database_url(database_url)


def test_db_url_without_a_running_embedded_server_says_how_to_get_one(tmp_path: Path) -> None:
    out = _taflow("db-url", data_dir=tmp_path)
    assert out.returncode == 1
    assert "not running" in out.stderr
    assert "Traceback" not in out.stderr


def test_migrate_brings_a_fresh_database_to_head_and_is_repeatable(database_url: str, tmp_path: Path) -> None:
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    with external_test_database(database_url) as fresh:
        assert asyncio.run(_schema(fresh)) == (set(), None)
        for _ in range(2):
            out = _taflow("migrate", data_dir=tmp_path, database_url=fresh)
            assert out.returncode == 0, out.stderr
        tables, version = asyncio.run(_schema(fresh))
    assert {"requests", "request_events", "api_keys", "alembic_version"} <= tables
    assert version == head
    assert not (tmp_path / "pgdata").exists(), "an external database must not start the embedded one"


def test_migrate_without_a_database_url_uses_the_embedded_server_and_stops_it(tmp_path: Path) -> None:
    out = _taflow("migrate", data_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "pgdata" / "PG_VERSION").exists()
    assert running_embedded_postgres_url(tmp_path / "pgdata") is None, "left the embedded server running"


def test_seed_loads_the_reference_data_into_a_migrated_database(database_url: str, tmp_path: Path) -> None:
    with external_test_database(database_url) as fresh:
        assert _taflow("migrate", data_dir=tmp_path, database_url=fresh).returncode == 0
        out = _taflow("seed", data_dir=tmp_path, database_url=fresh)
        assert out.returncode == 0, out.stderr
        experts = asyncio.run(_count(fresh, "experts"))
    assert "reference data loaded" in out.stdout
    assert experts > 0


async def _count(url: str, table: str) -> int:
    conn = await asyncpg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        return int(await conn.fetchval(f"select count(*) from {table}"))
    finally:
        await conn.close()
