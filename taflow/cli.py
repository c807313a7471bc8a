"""`taflow`: the dev stack (`taflow dev` is `make run`), migrations, seeding, the worker, the API.

Other modules add command groups without touching this file: a module listed in `SUB_APPS` that
exists is imported and its `app: typer.Typer` mounted under the given name (`taflow keys ...`).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import runpy
from typing import Annotated

import typer

from taflow.db.session import libpq_url
from taflow.devstack import (
    DevStack,
    DevStackError,
    database_url,
    normalize_database_url,
    pgdata_dir,
    running_embedded_postgres_url,
)
from taflow.settings import Settings

app = typer.Typer(
    name="taflow",
    help="TAflow: customs technical-assistance requests between ASEAN, ASEC and WCO ROCB A/P.",
    no_args_is_help=True,
    add_completion=False,
)

SUB_APPS: dict[str, str] = {
    # command name -> module exposing `app: typer.Typer`; missing modules are skipped
    "keys": "taflow.cli_keys",
    "webhooks": "taflow.cli_webhooks",
    "catalogue": "taflow.cli_catalogue",
    "dedup-eval": "taflow.cli_dedup_eval",
    "overdue": "taflow.cli_overdue",
    # "": merged at the top level: `requests show`, `signal`, `reproject`, `replay`, `histories export`
    "": "taflow.cli_ops",
}


def _mount_sub_apps() -> None:
    for name, module_name in SUB_APPS.items():
        if importlib.util.find_spec(module_name) is None:
            continue  # not written yet; an ImportError *inside* an existing module still surfaces
        module = importlib.import_module(module_name)
        app.add_typer(module.app, name=name)


def _settings() -> Settings:
    return Settings()


def _fail(msg: str) -> typer.Exit:
    typer.secho(f"taflow: {msg}", err=True, fg=typer.colors.RED)
    return typer.Exit(1)


def _export_running_database_url(settings: Settings) -> None:
    """For the worker and the API run on their own: without TAFLOW_DATABASE_URL, use the embedded
    server if `taflow dev` (or another command) has it running."""
    if settings.database_url:
        return
    url = running_embedded_postgres_url(pgdata_dir(settings))
    if url:
        os.environ["TAFLOW_DATABASE_URL"] = url


@app.command()
def dev() -> None:
    """Run the whole stack until Ctrl-C: PostgreSQL and Temporal (embedded unless TAFLOW_DATABASE_URL /
    TAFLOW_TEMPORAL_ADDRESS are set), migrations, reference data, demo credentials, worker, API."""
    try:
        code = DevStack(_settings()).run()
    except DevStackError as exc:
        raise _fail(str(exc)) from exc
    raise typer.Exit(code)


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Alembic revision to upgrade to")] = "head",
) -> None:
    """Upgrade the database schema (TAFLOW_DATABASE_URL, or the embedded server in the data dir)."""
    from taflow.db.migrate import upgrade

    with database_url(_settings()) as url:
        upgrade(url, revision)
    typer.echo(f"database at {revision}")


@app.command()
def seed() -> None:
    """Load the reference data (idempotent)."""
    from taflow.db.seed import seed as seed_reference_data
    from taflow.db.session import make_engine, make_sessionmaker

    async def _run(url: str) -> dict[str, int]:
        engine = make_engine(url, pool_size=2)
        try:
            return await seed_reference_data(make_sessionmaker(engine))
        finally:
            await engine.dispose()

    with database_url(_settings()) as url:
        counts = asyncio.run(_run(url))
    typer.echo("reference data loaded: " + ", ".join(f"{table} {n}" for table, n in counts.items()))


@app.command()
def worker() -> None:
    """Run the Temporal worker (what `python -m taflow.worker` runs)."""
    _export_running_database_url(_settings())
    runpy.run_module("taflow.worker", run_name="__main__", alter_sys=True)


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="default: TAFLOW_API_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="default: TAFLOW_API_PORT")] = None,
) -> None:
    """Serve the HTTP API with uvicorn, in TAFLOW_API_WORKERS processes (default 1)."""
    from taflow.api.serve import serve

    settings = _settings()
    _export_running_database_url(settings)
    serve(settings, host=host, port=port)


@app.command("db-url")
def db_url(
    libpq: Annotated[bool, typer.Option("--libpq", help="print a libpq URI (for psql) instead")] = False,
) -> None:
    """Print the database URL in use: TAFLOW_DATABASE_URL, or the running embedded server's."""
    settings = _settings()
    if settings.database_url:
        url = normalize_database_url(settings.database_url)
    else:
        running = running_embedded_postgres_url(pgdata_dir(settings))
        if running is None:
            raise _fail(
                f"the embedded PostgreSQL in {pgdata_dir(settings)} is not running "
                "(start it with `taflow dev`, or set TAFLOW_DATABASE_URL)"
            )
        url = running
    typer.echo(libpq_url(url) if libpq else url)


_mount_sub_apps()

if __name__ == "__main__":
    app()
