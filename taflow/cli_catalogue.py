"""`taflow catalogue`: the activities dedup compares requests with, and the matching roster.

`taflow catalogue import FILE` imports activities (IATI XML or JSONL). The roster has a group per
kind: `experts`, `programmes`, `meetings`, each with `import FILE` (CSV or JSON, validated in full,
all-or-nothing unless `--partial`) and `list`; experts also `set-unavailable`, `clear-unavailable`
and `remove`. Any refusal gives a non-zero exit code. File formats: docs/catalogue.md.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, get_args

import typer

from taflow.cli_support import with_database
from taflow.db.catalogue import ImportReport, import_catalogue
from taflow.db.roster_import import (
    Kind,
    RemoveRefused,
    RosterFileError,
    RosterReport,
    add_unavailable,
    clear_unavailable,
    import_roster,
    list_experts,
    list_meetings,
    list_programmes,
    remove_expert,
    to_csv,
)
from taflow.domain.enums import MemberState, Topic
from taflow.reference import MeetingBody

app = typer.Typer(
    help="The catalogue: activities that dedup compares requests with, and the roster matching uses "
    "(experts, programmes, meetings).",
    no_args_is_help=True,
)
experts_app = typer.Typer(
    help="WCO-accredited experts: import, list, unavailability, removal.", no_args_is_help=True
)
programmes_app = typer.Typer(
    help="Programmes and dialogue partners' funds that can pay for assistance.", no_args_is_help=True
)
meetings_app = typer.Typer(help="CCWG and other ASEAN customs body meetings.", no_args_is_help=True)
app.add_typer(experts_app, name="experts")
app.add_typer(programmes_app, name="programmes")
app.add_typer(meetings_app, name="meetings")


@app.command("import")
def import_file(
    path: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="IATI XML or JSONL")
    ],
) -> None:
    """Import activities: what is usable; print a one-line reason for each activity refused."""
    report: ImportReport = with_database(lambda sessions: import_catalogue(sessions, path))
    typer.echo(
        f"{path.name} ({report.format}): {len(report.imported)} imported, {len(report.refused)} refused"
    )
    for refusal in report.refused:
        typer.echo(f"  refused {refusal.ref}: {refusal.reason}")
    if not report.imported and report.refused:
        raise typer.Exit(1)


# ------------------------------------------------------------------------------------ helpers


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


FormatOption = Annotated[
    OutputFormat,
    typer.Option("--format", "-f", help="table to read; csv or json to edit and import back"),
]


def _fail(msg: str, code: int = 1) -> typer.Exit:
    typer.secho(f"taflow: {msg}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _topic(value: str | None) -> str | None:
    if value is None:
        return None
    slug = value.strip().lower().replace("_", "-").replace(" ", "-")
    if slug in {t.value for t in Topic}:
        return slug
    close = difflib.get_close_matches(slug, [t.value for t in Topic], n=1)
    raise _fail(f"unknown topic {value!r}" + (f" (did you mean {close[0]!r}?)" if close else ""), 2)


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise _fail(f"{value!r} is not a date (YYYY-MM-DD)", 2) from None


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [headers, *rows]
    ]
    return "\n".join(lines)


def _print(kind: Kind, records: list[dict[str, Any]], fmt: OutputFormat, table: Callable[[], str]) -> None:
    if fmt is OutputFormat.json:
        typer.echo(json.dumps(records, indent=2, ensure_ascii=False))
    elif fmt is OutputFormat.csv:
        typer.echo(to_csv(kind, records), nl=False)
    elif not records:
        typer.echo(f"no {kind}")
    else:
        typer.echo(table())


def _import(kind: Kind, path: Path, partial: bool, dry_run: bool) -> None:
    try:
        report: RosterReport = with_database(
            lambda sessions: import_roster(sessions, kind, path, partial=partial, dry_run=dry_run)
        )
    except RosterFileError as e:
        raise _fail(f"{path.name}: refused, nothing written: {e}") from None
    head = f"{path.name} ({report.format})"
    refused = len(report.refused)
    if report.written:
        typer.echo(f"{head}: {len(report.added)} added, {len(report.updated)} updated, {refused} refused")
    elif dry_run:
        typer.echo(f"{head}: {len(report.valid)} valid, {refused} refused (dry run: nothing written)")
    elif refused:
        typer.echo(
            f"{head}: {refused} refused, nothing written ({len(report.valid)} valid; "
            "fix the file, or import the valid ones with --partial)"
        )
    else:
        typer.echo(f"{head}: no {kind} in the file")
    for r in report.refused:
        typer.echo(f"  refused {r.ref}: {r.reason}")
    if refused:
        raise typer.Exit(1)


PathArgument = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="a .csv or .json file")
]
PartialOption = Annotated[
    bool, typer.Option("--partial", help="write the valid records even if some are refused")
]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="validate only; write nothing")]


# -------------------------------------------------------------------------------------- experts


@experts_app.command("import")
def experts_import(path: PathArgument, partial: PartialOption = False, dry_run: DryRunOption = False) -> None:
    """Add or update experts from CSV or JSON (upsert on id); refused rows are listed with reasons."""
    _import("experts", path, partial, dry_run)


@experts_app.command("list")
def experts_list(
    topic: Annotated[
        str | None, typer.Option("--topic", "-t", help="only experts covering this topic")
    ] = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """The experts, by id."""
    slug = _topic(topic)
    records = with_database(lambda sessions: list_experts(sessions, slug))

    def table() -> str:
        return _table(
            ["ID", "NAME", "CATEGORY", "HOME", "LANG", "INV12M", "TOPICS", "UNAVAILABLE"],
            [
                [
                    r["id"],
                    r["name"],
                    r["category"],
                    r["home_administration"],
                    ",".join(r["languages"]),
                    str(r["invitations_12m"]),
                    ",".join(r["topics"]),
                    ",".join(f"{p['from']}..{p['to']}" for p in r["unavailable"]) or "-",
                ]
                for r in records
            ],
        )

    _print("experts", records, fmt, table)


@experts_app.command("set-unavailable")
def experts_set_unavailable(
    expert_id: Annotated[str, typer.Argument(metavar="ID")],
    start: Annotated[str, typer.Argument(metavar="FROM", help="first unavailable day, YYYY-MM-DD")],
    end: Annotated[str, typer.Argument(metavar="TO", help="last unavailable day, YYYY-MM-DD")],
) -> None:
    """Add a period (inclusive) during which the expert is never proposed."""
    a, b = _day(start), _day(end)
    if b < a:
        raise _fail(f"TO ({b}) is before FROM ({a})", 2)
    periods = with_database(lambda sessions: add_unavailable(sessions, expert_id, a, b))
    if periods is None:
        raise _fail(f"no expert {expert_id}")
    typer.echo(f"{expert_id} unavailable: " + ", ".join(f"{x}..{y}" for x, y in periods))


@experts_app.command("clear-unavailable")
def experts_clear_unavailable(expert_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Remove all of an expert's unavailable periods."""
    had = with_database(lambda sessions: clear_unavailable(sessions, expert_id))
    if had is None:
        raise _fail(f"no expert {expert_id}")
    typer.echo(f"{expert_id}: {had} unavailable period(s) removed")


@experts_app.command("remove")
def experts_remove(
    expert_id: Annotated[str, typer.Argument(metavar="ID")],
    force: Annotated[bool, typer.Option("--force", help="even if engaged on an open request")] = False,
) -> None:
    """Remove an expert from the roster (refused while engaged on an open request, unless --force)."""
    try:
        removed = with_database(lambda sessions: remove_expert(sessions, expert_id, force=force))
    except RemoveRefused as e:
        raise _fail(f"not removed: {e}") from None
    if not removed:
        raise _fail(f"no expert {expert_id}")
    typer.echo(f"{expert_id} removed")


# ----------------------------------------------------------------------------------- programmes


@programmes_app.command("import")
def programmes_import(
    path: PathArgument, partial: PartialOption = False, dry_run: DryRunOption = False
) -> None:
    """Add or update programmes from CSV or JSON (upsert on id); `ASEAN` means all eleven members."""
    _import("programmes", path, partial, dry_run)


@programmes_app.command("list")
def programmes_list(
    topic: Annotated[
        str | None, typer.Option("--topic", "-t", help="only programmes with this topic")
    ] = None,
    beneficiary: Annotated[
        str | None, typer.Option("--beneficiary", "-b", help="only programmes open to this member state")
    ] = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """The programmes, by id."""
    slug = _topic(topic)
    state = beneficiary.strip().upper() if beneficiary else None
    if state is not None and state not in {m.value for m in MemberState}:
        raise _fail(f"{beneficiary!r} is not a member state code", 2)
    records = with_database(lambda sessions: list_programmes(sessions, slug, state))

    def table() -> str:
        return _table(
            ["ID", "PROVIDER", "PARTNER", "BENEFICIARIES", "TOPICS", "NAME"],
            [
                [
                    r["id"],
                    r["provider"],
                    r["funding_partner"] or "-",
                    ",".join(r["beneficiaries"]),
                    ",".join(r["topics"]),
                    r["name"],
                ]
                for r in records
            ],
        )

    _print("programmes", records, fmt, table)


# ------------------------------------------------------------------------------------- meetings


@meetings_app.command("import")
def meetings_import(
    path: PathArgument, partial: PartialOption = False, dry_run: DryRunOption = False
) -> None:
    """Add or update meetings from CSV or JSON (upsert on id)."""
    _import("meetings", path, partial, dry_run)


@meetings_app.command("list")
def meetings_list(
    body: Annotated[str | None, typer.Option("--body", help="CCWG, CCC, CPTFWG, CECWG or CCBWG")] = None,
    open_only: Annotated[
        bool, typer.Option("--open", help="only meetings whose agenda cut-off has not passed")
    ] = False,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """The meetings, by date."""
    bodies: Mapping[str, str] = {b.casefold(): b for b in get_args(MeetingBody)}
    chosen = None
    if body is not None:
        chosen = bodies.get(body.strip().casefold())
        if chosen is None:
            raise _fail(f"{body!r} is not one of {', '.join(bodies.values())}", 2)
    today = date.today() if open_only else None
    records = with_database(lambda sessions: list_meetings(sessions, chosen, today))

    def table() -> str:
        return _table(
            ["ID", "BODY", "NO", "STARTS", "ENDS", "CUT-OFF", "PLACE"],
            [
                [
                    r["id"],
                    r["body"],
                    str(r["number"]),
                    r["starts_on"],
                    r["ends_on"],
                    r["agenda_cutoff"],
                    r["place"],
                ]
                for r in records
            ],
        )

    _print("meetings", records, fmt, table)
