"""Due dates for waiting stages: the policy file read now, the owing organisation's calendar.

Computed here, not in the workflow, so a calendar or policy update never breaks replay; the
result is recorded in the workflow's state and stays as it was for that stage.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from taflow.domain.sla import ClockRequest, ClockResume, DayKind, SlaPolicy, StageClock
from taflow.sla.calendar import add_working_days, calendar_country, working_days_between
from taflow.sla.policy import DEFAULT_POLICY_FILE, SlaPolicies, load_policies


def _after(policy: SlaPolicy, start: datetime, days: float, owner: str, weekend: list[int]) -> datetime:
    if policy.days is DayKind.calendar:
        return start + timedelta(days=days)
    return add_working_days(start, days, calendar_country(owner), weekend)


def plan_clock(req: ClockRequest, policies: SlaPolicies) -> StageClock:
    policy = policies.policies.get(req.policy_key)
    if policy is None:
        raise ApplicationError(
            f"no SLA policy named {req.policy_key}", type="InvalidInput", non_retryable=True
        )
    weekend = policies.weekend.days
    return StageClock(
        policy_key=req.policy_key,
        stage=req.stage,
        owner=req.owner,
        policy=policy,
        started_at=req.start,
        reminder_at=_after(policy, req.start, policy.reminder, req.owner, weekend)
        if policy.reminder
        else None,
        due_at=_after(policy, req.start, policy.due, req.owner, weekend),
    )


def resume_clock(resume: ClockResume, weekend: list[int]) -> StageClock:
    """The stopped clock goes on from `at` with what was left: due = at + remaining, to the working day."""
    clock = resume.clock
    paused = clock.paused_at or resume.at
    policy = clock.policy

    def shift(moment: datetime | None) -> datetime | None:
        if moment is None:
            return None
        if policy.days is DayKind.calendar:
            return resume.at + max(moment - paused, timedelta(0))
        country = calendar_country(clock.owner)
        left = working_days_between(paused, moment, country, weekend)
        return add_working_days(resume.at, left, country, weekend)

    due = shift(clock.due_at)
    assert due is not None
    return clock.model_copy(
        update={
            "due_at": due,
            "reminder_at": None if clock.reminded else shift(clock.reminder_at),
            "paused_at": None,
        }
    )


class DeadlineActivities:
    def __init__(self, policy_file: Path | None = None) -> None:
        self._policy_file = policy_file or DEFAULT_POLICY_FILE
        self._read: tuple[tuple[int, int], SlaPolicies] | None = None

    def _policies(self) -> SlaPolicies:
        """The policy file as it is now: read again whenever it changed (size or modification time)."""
        stat = self._policy_file.stat()
        seen = (stat.st_mtime_ns, stat.st_size)
        if self._read is None or self._read[0] != seen:
            self._read = (seen, load_policies(self._policy_file))
        return self._read[1]

    @activity.defn
    async def start_clock(self, req: ClockRequest) -> StageClock:
        return plan_clock(req, self._policies())

    @activity.defn
    async def next_donor_round(self, after: datetime) -> datetime | None:
        """The opening of the next donor round after `after` (start of that day, UTC), if any."""
        day = self._policies().donor_rounds.next_after(after.date())
        return None if day is None else datetime.combine(day, time.min, tzinfo=UTC)

    @activity.defn
    async def resume_clock(self, resume: ClockResume) -> StageClock:
        return resume_clock(resume, self._policies().weekend.days)
