"""Repair tools: `taflow requests show`, `signal`, `reproject`, `replay`, `histories export`.

Mounted at the top level of `taflow` (SUB_APPS key ""). They reach Temporal at
TAFLOW_TEMPORAL_ADDRESS (default localhost:7233, namespace TAFLOW_TEMPORAL_NAMESPACE) and, for
`reproject`, the database at TAFLOW_DATABASE_URL or the dev stack's embedded server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from taflow.settings import Settings

T = TypeVar("T")

app = typer.Typer(no_args_is_help=True)
requests_app = typer.Typer(help="Look at requests as their workflows see them.", no_args_is_help=True)
histories_app = typer.Typer(help="Workflow histories: export for replay and audits.", no_args_is_help=True)
app.add_typer(requests_app, name="requests")
app.add_typer(histories_app, name="histories")


def _fail(msg: str, code: int = 1) -> typer.Exit:
    typer.secho(f"taflow: {msg}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _with_client(job: Callable[[Client], Awaitable[T]]) -> T:
    from taflow.temporal import connect

    settings = Settings()

    async def main() -> T:
        try:
            client = await connect(settings)
        except RuntimeError as exc:
            address = settings.temporal_address or f"localhost:{settings.temporal_port}"
            raise _fail(f"cannot reach Temporal at {address}: {exc}") from exc
        return await job(client)

    return asyncio.run(main())


def _with_client_and_db(job: Callable[[Client, async_sessionmaker[AsyncSession]], Awaitable[T]]) -> T:
    from taflow.cli_support import with_database

    return with_database(lambda sessionmaker: _client_then(job, sessionmaker))


async def _client_then(
    job: Callable[[Client, async_sessionmaker[AsyncSession]], Awaitable[T]],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> T:
    from taflow.temporal import connect

    return await job(await connect(Settings()), sessionmaker)


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


@requests_app.command("show")
def requests_show(
    request: Annotated[str, typer.Argument(help="Request id (TA-...) or workflow id (ta-request-...)")],
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """A request's state (stage, SLA, timeline) and a summary of its workflow history."""
    from taflow.ops.inspect import render, request_report

    report = _with_client(lambda client: request_report(client, request))
    if as_json:
        _echo_json(report)
    else:
        typer.echo(render(report))


@app.command()
def signal(
    request: Annotated[str, typer.Argument(help="Request id, or a workflow id (ta-request-/ta-invitation-)")],
    name: Annotated[
        str, typer.Argument(help="asec_review, amend, rocb_match, complete, withdraw, cancel...")
    ],
    payload: Annotated[str, typer.Argument(help='JSON body, e.g. \'{"decision": "approve"}\'')] = "{}",
    actor: Annotated[
        str | None,
        typer.Option(
            "--as",
            help="who decides, ORG/ROLE/SUBJECT (e.g. ASEC/asec_head/jdoe), if not in JSON: "
            "the subject of an active API key with that role",
        ),
    ] = None,
    wait: Annotated[
        float, typer.Option(help="seconds to wait for the audit trail to show the outcome")
    ] = 5.0,
) -> None:
    """Send a decision signal, validated against its model first; says whether the workflow took it."""
    from taflow.ops.signals import SignalError, parse_actor, send_signal

    try:
        body = json.loads(payload)
        who = parse_actor(actor) if actor else None
    except (json.JSONDecodeError, SignalError) as exc:
        raise _fail(str(exc), 2) from exc
    if not isinstance(body, dict):
        raise _fail("the payload must be a JSON object", 2)
    try:
        outcome = _with_client(
            lambda client: send_signal(client, request, name, body, actor=who, wait_s=wait)
        )
    except SignalError as exc:
        raise _fail(str(exc), 2) from exc
    typer.echo(f"signal {name} sent to {outcome.workflow_id}")
    for e in outcome.new_events:
        typer.echo(f"  {e.seq} {e.kind} {e.to_stage.value if e.to_stage else ''} {e.comment}".rstrip())
    if outcome.stage:
        typer.echo(f"  stage now {outcome.stage}")
    if outcome.refused:
        raise typer.Exit(3)


@app.command()
def reproject(
    request: Annotated[str | None, typer.Argument(help="Request id; omit with --all")] = None,
    all_requests: Annotated[
        bool, typer.Option("--all", help="every request workflow visibility knows")
    ] = False,
    query: Annotated[
        str | None,
        typer.Option(help="with --all: narrow by a visibility query, e.g. \"TaStage = 'asec_review'\""),
    ] = None,
) -> None:
    """Rebuild the read model (requests, request_events) from the workflows' own state."""
    from taflow.ops.reproject import reproject_all, reproject_one

    if (request is None) == (not all_requests):
        raise _fail("give a request id or --all (not both)", 2)
    if request is not None:
        results = [_with_client_and_db(lambda client, sm: reproject_one(client, sm, request))]
    else:
        results = _with_client_and_db(lambda client, sm: reproject_all(client, sm, query))
    failed = [r for r in results if not r.ok]
    for r in results:
        if r.ok:
            typer.echo(f"{r.request_id}: {r.stage} (version {r.version}, {r.events} events)")
        else:
            typer.secho(f"{r.request_id}: FAILED {r.error}", err=True, fg=typer.colors.RED)
    typer.echo(f"reprojected {len(results) - len(failed)} request(s), {len(failed)} failed")
    if failed:
        raise typer.Exit(1)


@app.command()
def replay(
    request: Annotated[str | None, typer.Argument(help="Request or invitation id (every run)")] = None,
    files: Annotated[
        list[Path] | None, typer.Option("--file", help="exported history JSON (repeatable)")
    ] = None,
    directory: Annotated[Path | None, typer.Option("--dir", help="every *.json in this directory")] = None,
) -> None:
    """Replay histories against the current workflow code: a failure is a change that needs patching."""
    from taflow.ops.histories import replay_files, replay_workflow

    paths = list(files or []) + (sorted(directory.glob("*.json")) if directory else [])
    if (request is None) == (not paths):
        raise _fail("give an id, or --file / --dir (not both)", 2)
    if request is not None:
        results = _with_client(lambda client: replay_workflow(client, request))
    else:
        results = asyncio.run(replay_files(paths))
    for r in results:
        where = f"{r.workflow_id} {r.run_id or ''}".rstrip()
        if r.ok:
            typer.echo(f"{where}: replayed {r.events} events, deterministic")
        else:
            typer.secho(f"{where}: NONDETERMINISTIC {r.failure}", err=True, fg=typer.colors.RED)
    if any(not r.ok for r in results):
        raise typer.Exit(1)


@histories_app.command("export")
def histories_export(
    directory: Annotated[Path, typer.Argument(help="where to write <workflow id>.<run id>.json")],
    query: Annotated[
        str | None, typer.Option(help="visibility query; default: every request and invitation workflow")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="at most this many executions")] = None,
) -> None:
    """Export workflow histories as JSON (for `taflow replay --dir` and the replay tests)."""
    from taflow.ops.histories import export_histories

    written = _with_client(lambda client: export_histories(client, directory, query, limit=limit))
    typer.echo(f"exported {len(written)} histories to {directory}")
