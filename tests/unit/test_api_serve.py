"""The API launcher's pieces that need no server: the metrics directory it prepares and each
process's share of the connection budget."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from taflow.api.app import api_pool_share
from taflow.observability.multiprocess import MULTIPROCESS_DIR_ENV, multiprocess_dir
from taflow.settings import Settings
from taflow.worker import DB_CONNECTIONS


def test_a_directory_of_its_own_is_made_named_and_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROCESS_DIR_ENV, raising=False)
    with multiprocess_dir() as path:
        assert os.environ[MULTIPROCESS_DIR_ENV] == str(path)
        assert path.is_dir() and not any(path.iterdir())
        (path / "counter_1.db").write_bytes(b"x")
    assert MULTIPROCESS_DIR_ENV not in os.environ
    assert not path.exists()


def test_a_given_directory_is_emptied_of_metrics_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = tmp_path / "metrics"
    given.mkdir()
    (given / "counter_123.db").write_bytes(b"old")
    (given / "notes.txt").write_text("not ours")
    monkeypatch.setenv(MULTIPROCESS_DIR_ENV, str(given))
    with multiprocess_dir() as path:
        assert path == given
        assert [p.name for p in path.iterdir()] == ["notes.txt"]
    assert given.is_dir() and os.environ[MULTIPROCESS_DIR_ENV] == str(given)


def test_a_given_directory_is_made_if_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MULTIPROCESS_DIR_ENV, str(tmp_path / "a" / "b"))
    with multiprocess_dir() as path:
        assert path.is_dir()


@pytest.mark.parametrize(
    ("workers", "pool", "expected"),
    [(1, 40, 40), (2, 40, 20), (3, 40, 14), (2, 5, 3), (1, 5, 5)],
)
def test_the_api_shares_one_connection_budget_among_its_processes(
    workers: int, pool: int, expected: int
) -> None:
    settings = Settings(api_workers=workers, api_db_pool_size=pool)
    assert api_pool_share(settings) == expected
    assert workers * (expected + 1) <= pool + 2 * workers  # + LISTEN + rounding up


def test_the_stack_fits_the_embedded_postgresqls_connections_with_room_to_spare() -> None:
    api = api_pool_share(Settings()) + 1  # + its LISTEN connection
    assert api + DB_CONNECTIONS <= 100 - 25  # max_connections, less room for migrations, CLI, psql, tests


def test_one_process_by_default() -> None:
    assert Settings.model_fields["api_workers"].default == 1
