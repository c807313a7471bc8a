"""SLA types carried by workflows: the policy in force and the clock of the stage that waits."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, Field

from taflow.domain.enums import Role, Stage


class DayKind(StrEnum):
    working = "working"
    calendar = "calendar"


class Breach(StrEnum):
    """What happens when the final deadline passes unanswered."""

    escalate = "escalate"
    expire = "expire"
    next_expert = "next_expert"


class SlaPolicy(BaseModel):
    """How long one waiting stage may take, on whose calendar, and what happens after."""

    due: int = Field(gt=0, le=365)
    days: DayKind = DayKind.working
    reminder: int | None = Field(default=None, gt=0, le=365)
    on_breach: Breach = Breach.escalate
    escalate_to: Role | None = None


class ClockRequest(BaseModel):
    """Asks the deadline activity for a stage's clock (computed outside the workflow: calendars change)."""

    request_id: str
    policy_key: str
    stage: Stage
    owner: str
    """Organisation whose calendar counts: ASEC, ROCB-AP, or a member state code."""
    start: datetime


class StageClock(BaseModel):
    """The clock of the stage now waiting; recorded in state, so a policy edit never moves it."""

    policy_key: str
    stage: Stage
    owner: str
    policy: SlaPolicy
    started_at: datetime
    reminder_at: datetime | None = None
    due_at: datetime
    reminded: bool = False
    breached: bool = False
    paused_at: datetime | None = None

    def next_alarm(self) -> datetime | None:
        if self.paused_at is not None or self.breached:
            return None
        if self.reminder_at is not None and not self.reminded:
            return self.reminder_at
        return self.due_at

    def time_to_alarm(self, now: datetime) -> timedelta | None:
        alarm = self.next_alarm()
        return None if alarm is None else max(alarm - now, timedelta(seconds=1))


class ClockResume(BaseModel):
    """Restarts a paused clock at `at` with the time that was left when it stopped."""

    clock: StageClock
    at: datetime
