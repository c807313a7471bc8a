"""Loads the SLA policy file (TOML) that users edit; defaults ship in taflow/reference/sla.toml."""

from __future__ import annotations

import tomllib
from datetime import date, timedelta
from pathlib import Path

from pydantic import BaseModel, Field

from taflow.domain.sla import SlaPolicy

DEFAULT_POLICY_FILE = Path(__file__).resolve().parents[1] / "reference" / "sla.toml"


class Weekend(BaseModel):
    days: list[int] = Field(default=[5, 6])


class DonorRounds(BaseModel):
    """When dialogue partners' funds next consider requests: on_hold requests return to matching then."""

    dates: list[date] = []
    then_every_days: int | None = Field(default=None, gt=0)

    def next_after(self, moment: date) -> date | None:
        upcoming = sorted(d for d in self.dates if d > moment)
        if upcoming:
            return upcoming[0]
        if not self.then_every_days or not self.dates:
            return None
        last = max(self.dates)
        steps = (moment - last).days // self.then_every_days + 1
        return last + timedelta(days=steps * self.then_every_days)


class SlaPolicies(BaseModel):
    weekend: Weekend = Weekend()
    policies: dict[str, SlaPolicy]
    donor_rounds: DonorRounds = DonorRounds()


def load_policies(path: Path | None = None) -> SlaPolicies:
    """Read and validate the file; an invalid file is an error naming the field, not a silent default."""
    with (path or DEFAULT_POLICY_FILE).open("rb") as f:
        return SlaPolicies.model_validate(tomllib.load(f))
