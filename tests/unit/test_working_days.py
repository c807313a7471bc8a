"""Working-day arithmetic against known public holidays (the `holidays` package's calendars)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from taflow.activities.deadlines import plan_clock, resume_clock
from taflow.domain.enums import Stage
from taflow.domain.sla import ClockRequest, ClockResume
from taflow.sla.calendar import add_working_days, calendar_country, is_working_day, working_days_between
from taflow.sla.policy import load_policies


def test_ten_indonesian_working_days_skip_christmas_new_year_and_isra_miraj() -> None:
    start = datetime(2026, 12, 21, 9, 0, tzinfo=UTC)  # Monday before Christmas
    due = add_working_days(start, 10, "ID")
    # 22, 23, 24 Dec; 25 Dec holiday; 28-31 Dec; 1 Jan holiday; 4 Jan; 5 Jan holiday (Isra Mi'raj); 6, 7 Jan
    assert due == datetime(2027, 1, 7, 9, 0, tzinfo=UTC)
    assert not is_working_day(date(2026, 12, 25), "ID")
    assert not is_working_day(date(2027, 1, 5), "ID")
    assert working_days_between(start, due, "ID") == 10


def test_calendars_differ_by_organisation() -> None:
    assert calendar_country("ASEC") == "ID"
    assert calendar_country("ROCB-AP") == "TH"
    assert calendar_country("KH") == "KH"
    # 5 Dec is a Thai public holiday (the late King's birthday) but a working day in Indonesia in 2029.
    assert not is_working_day(date(2029, 12, 5), "TH")
    assert is_working_day(date(2029, 12, 5), "ID")


def test_weekend_is_configurable() -> None:
    friday = datetime(2026, 12, 4, 12, tzinfo=UTC)
    assert add_working_days(friday, 1, "SG") == datetime(2026, 12, 7, 12, tzinfo=UTC)
    assert add_working_days(friday, 1, "SG", weekend={4, 5}) == datetime(2026, 12, 6, 12, tzinfo=UTC)


def test_clock_from_default_policies() -> None:
    start = datetime(2026, 12, 21, 9, 0, tzinfo=UTC)
    clock = plan_clock(
        ClockRequest(
            request_id="R", policy_key="asec_review", stage=Stage.asec_review, owner="ASEC", start=start
        ),
        load_policies(),
    )
    assert clock.due_at == datetime(2027, 1, 7, 9, 0, tzinfo=UTC)
    assert clock.reminder_at == add_working_days(start, 7, "ID")
    assert clock.policy.escalate_to == "asec_head"


def test_resumed_clock_keeps_the_working_days_that_were_left() -> None:
    start = datetime(2026, 12, 21, 9, 0, tzinfo=UTC)
    clock = plan_clock(
        ClockRequest(
            request_id="R", policy_key="asec_review", stage=Stage.asec_review, owner="ASEC", start=start
        ),
        load_policies(),
    )
    paused = clock.model_copy(update={"paused_at": start + timedelta(days=2)})  # Wednesday: 8 days left
    resumed = resume_clock(ClockResume(clock=paused, at=datetime(2027, 2, 1, 9, 0, tzinfo=UTC)), [5, 6])
    assert resumed.due_at == add_working_days(datetime(2027, 2, 1, 9, 0, tzinfo=UTC), 8, "ID")
    assert resumed.paused_at is None
