"""The README's configuration table names every setting the code reads (prefix groups may use `*`)."""

from __future__ import annotations

from pathlib import Path

from taflow.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    groups = {line.split("`")[1].removesuffix("*") for line in README.splitlines() if "_*`" in line}
    missing = [
        name
        for name in Settings.model_fields
        if f"TAFLOW_{name.upper()}" not in README
        and not any(f"TAFLOW_{name.upper()}".startswith(g) for g in groups)
    ]
    assert missing == []


def test_readme_shows_the_two_commands() -> None:
    assert "make run" in README and "make test" in README
