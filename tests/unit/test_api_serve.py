"""The API launcher's pieces that need no server: the metrics directory it prepares and each
process's share of the connection budget."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from taflow.api.app import api_pool_share
from taflow.db.session import MAX_OVERFLOW
from taflow.observability.multiprocess import MULTIPROCESS_DIR_ENV, multiprocess_dir
from taflow.settings import Settings


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
    [(1, 20, (20, MAX_OVERFLOW)), (2, 20, (10, 10)), (3, 20, (7, 7)), (2, 5, (3, 10)), (1, 5, (5, 20))],
)
def test_the_api_shares_one_connection_budget_among_its_processes(
    workers: int, pool: int, expected: tuple[int, int]
) -> None:
    settings = Settings(api_workers=workers, api_db_pool_size=pool)
    assert api_pool_share(settings) == expected
    size, burst = expected
    assert workers * (size + burst + 1) <= pool + MAX_OVERFLOW + 3 * workers  # + LISTEN + rounding


def test_one_process_by_default() -> None:
    assert Settings.model_fields["api_workers"].default == 1
