"""Loads the SLA policy file (TOML) that users edit; defaults ship in taflow/reference/sla.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, Field

from taflow.domain.sla import SlaPolicy

DEFAULT_POLICY_FILE = Path(__file__).resolve().parents[1] / "reference" / "sla.toml"


class Weekend(BaseModel):
    days: list[int] = Field(default=[5, 6])


class SlaPolicies(BaseModel):
    weekend: Weekend = Weekend()
    policies: dict[str, SlaPolicy]


def load_policies(path: Path | None = None) -> SlaPolicies:
    """Read and validate the file; an invalid file is an error naming the field, not a silent default."""
    with (path or DEFAULT_POLICY_FILE).open("rb") as f:
        return SlaPolicies.model_validate(tomllib.load(f))
