"""The dev stack's pure parts: URLs, command lines, child environments, search-attribute diffs."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import IndexedValueType

from taflow.db.session import libpq_url
from taflow.devstack import (
    DevStack,
    DevStackError,
    api_command,
    api_url,
    browser_host,
    child_env,
    embedded_postgres_url,
    find_temporal_binary,
    missing_search_attributes,
    normalize_database_url,
    temporal_dev_server_command,
    wanted_search_attributes,
    worker_command,
)
from taflow.domain.search_attributes import ALL_SEARCH_ATTRIBUTES
from taflow.settings import Settings


def test_embedded_uri_becomes_an_asyncpg_url_on_the_unix_socket() -> None:
    url = make_url(embedded_postgres_url("postgresql://postgres:@/postgres?host=/tmp/x/pgdata"))
    assert (url.drivername, url.username, url.host, url.database) == (
        "postgresql+asyncpg",
        "postgres",
        None,
        "postgres",
    )
    assert not url.password
    assert url.query["host"] == "/tmp/x/pgdata"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@db:5432/taflow", "postgresql+asyncpg://u:p@db:5432/taflow"),
        ("postgres://u:p@db/taflow", "postgresql+asyncpg://u:p@db/taflow"),
        ("postgresql+asyncpg://u:p@db/taflow", "postgresql+asyncpg://u:p@db/taflow"),
    ],
)
def test_external_urls_are_normalised_to_asyncpg_keeping_the_password(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


def test_libpq_url_drops_the_driver() -> None:
    url = make_url(libpq_url("postgresql+asyncpg://postgres@/postgres?host=/s"))
    assert url.drivername == "postgresql"
    assert url.query["host"] == "/s"


def test_dev_server_command_uses_settings_ports_the_sqlite_file_and_every_search_attribute(
    tmp_path: Path,
) -> None:
    s = Settings(data_dir=tmp_path, temporal_port=17233, temporal_ui_port=18233, temporal_namespace="ta")
    cmd = temporal_dev_server_command(Path("/x/temporal"), s)
    assert cmd[:3] == ["/x/temporal", "server", "start-dev"]
    flags = dict(zip(cmd[3::2], cmd[4::2], strict=False))
    assert flags["--port"] == "17233"
    assert flags["--ui-port"] == "18233"
    assert flags["--db-filename"] == str(tmp_path.resolve() / "temporal.sqlite")
    assert flags["--namespace"] == "ta"
    registered = {
        v.split("=")[0] for k, v in zip(cmd[3::2], cmd[4::2], strict=False) if k == "--search-attribute"
    }
    assert registered == {key.name for key in ALL_SEARCH_ATTRIBUTES}


def test_temporal_binary_is_found_next_to_the_interpreter() -> None:
    assert find_temporal_binary() == Path(sys.executable).parent / "temporal"


def test_child_env_points_children_at_the_resolved_servers_without_touching_the_parent(
    tmp_path: Path,
) -> None:
    base = {"PATH": "/bin", "TAFLOW_DATABASE_URL": "", "TAFLOW_LOG_LEVEL": "DEBUG"}
    env = child_env(
        base, database_url="postgresql+asyncpg://x", temporal_address="localhost:7", data_dir=tmp_path
    )
    assert env["TAFLOW_DATABASE_URL"] == "postgresql+asyncpg://x"
    assert env["TAFLOW_TEMPORAL_ADDRESS"] == "localhost:7"
    assert env["TAFLOW_DATA_DIR"] == str(tmp_path)
    assert env["TAFLOW_LOG_LEVEL"] == "DEBUG"
    assert env["PATH"] == "/bin"
    assert base["TAFLOW_DATABASE_URL"] == ""


def test_worker_and_api_run_with_this_interpreter() -> None:
    s = Settings(api_host="0.0.0.0", api_port=8123)
    assert worker_command() == [sys.executable, "-m", "taflow.worker"]
    assert api_command(s.api_host, s.api_port) == [
        sys.executable,
        "-m",
        "taflow.api.serve",
        "--host",
        "0.0.0.0",
        "--port",
        "8123",
    ]
    assert api_command("127.0.0.1", 1, "--no-access-log")[-1] == "--no-access-log"
    assert api_url(s) == "http://localhost:8123"
    assert browser_host("127.0.0.1") == "127.0.0.1"


def test_only_missing_search_attributes_are_registered() -> None:
    wanted = wanted_search_attributes()
    assert missing_search_attributes(wanted) == {}
    assert missing_search_attributes({}) == wanted
    partial = {k: v for k, v in wanted.items() if k != "TaStage"}
    assert missing_search_attributes(partial) == {"TaStage": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD}


def test_a_search_attribute_with_another_type_is_an_error() -> None:
    existing = dict(wanted_search_attributes(), TaStage=IndexedValueType.INDEXED_VALUE_TYPE_TEXT)
    with pytest.raises(DevStackError, match="TaStage"):
        missing_search_attributes(existing)


def test_banner_names_the_urls_and_the_credentials_file(tmp_path: Path) -> None:
    stack = DevStack(Settings(data_dir=tmp_path), out=io.StringIO())
    stack.temporal_address = "localhost:7233"
    stack.credentials = {"TH/requester": "k"}
    text = stack.banner()
    for part in (
        "http://127.0.0.1:8000",
        "http://127.0.0.1:8000/docs",
        "http://localhost:8233",
        str(tmp_path.resolve() / "dev-credentials.json"),
    ):
        assert part in text


def test_banner_with_external_temporal_does_not_claim_a_local_ui(tmp_path: Path) -> None:
    stack = DevStack(Settings(data_dir=tmp_path, temporal_address="temporal:7233"), out=io.StringIO())
    assert ":8233" not in stack.banner()
