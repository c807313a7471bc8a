"""`taflow dedup-eval --requests FILE --catalogue FILE --out FILE` on a fresh temporary database."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from taflow.db.migrate import upgrade
from taflow.db.scratch import scratch_database
from taflow.db.session import make_engine, make_sessionmaker
from taflow.dedup.evaluate import Prediction, load_requests
from taflow.dedup_eval import evaluate, replay_through_database, write_predictions
from taflow.settings import Settings

app = typer.Typer(help="Score duplicate detection on a labelled set.")

Existing = Annotated[Path, typer.Option(exists=True, dir_okay=False, readable=True)]


async def _run(url: str, requests: Path, catalogue: Path, window_days: int) -> dict[str, Prediction]:
    engine = make_engine(url, pool_size=2)
    try:
        return await replay_through_database(
            make_sessionmaker(engine), load_requests(requests), catalogue, window_days
        )
    finally:
        await engine.dispose()


@app.callback(invoke_without_command=True)
def dedup_eval(
    requests: Existing,
    catalogue: Existing,
    out: Annotated[Path, typer.Option(dir_okay=False, writable=True)],
) -> None:
    """Load the catalogue into a fresh database, check the requests in submission order with the
    workflow's own code, write one JSON line per request and print precision, recall and F1."""
    settings = Settings()
    with scratch_database(settings.database_url) as url:
        upgrade(url)
        predictions = asyncio.run(_run(url, requests, catalogue, settings.dedup_window_days))
    write_predictions(out, predictions)
    report = evaluate(requests, predictions)
    typer.echo(f"duplicates     {report.duplicates.summary()}")
    typer.echo(f"consolidation  {report.consolidation.summary()}")
    typer.echo(
        f"hard negatives flagged as duplicates: {report.hard_negatives_flagged}/{report.hard_negatives}"
    )
    typer.echo(f"predictions written to {out}")
