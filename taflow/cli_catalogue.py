"""`taflow catalogue import FILE`: IATI activity XML or our JSONL, idempotent on the identifier."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from taflow.cli_support import with_database
from taflow.db.catalogue import ImportReport, import_catalogue

app = typer.Typer(help="The catalogue of activities that dedup compares requests with.", no_args_is_help=True)


@app.command("import")
def import_file(
    path: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="IATI XML or JSONL")
    ],
) -> None:
    """Import what is usable; print a one-line reason for each activity refused."""
    report: ImportReport = with_database(lambda sessions: import_catalogue(sessions, path))
    typer.echo(
        f"{path.name} ({report.format}): {len(report.imported)} imported, {len(report.refused)} refused"
    )
    for refusal in report.refused:
        typer.echo(f"  refused {refusal.ref}: {refusal.reason}")
    if not report.imported and report.refused:
        raise typer.Exit(1)
