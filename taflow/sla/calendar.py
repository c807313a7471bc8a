"""Working-day arithmetic on each organisation's public-holiday calendar (the `holidays` package).

Only activities call this: a calendar update must never change a replayed workflow.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from functools import lru_cache

import holidays

CALENDAR_OF_ORGANISATION = {"ASEC": "ID", "ROCB-AP": "TH"}
"""ASEC counts on Indonesia's calendar, ROCB A/P on Thailand's, a member state on its own."""

DEFAULT_WEEKEND = frozenset({5, 6})


def calendar_country(organisation: str) -> str:
    return CALENDAR_OF_ORGANISATION.get(organisation, organisation)


@lru_cache(maxsize=256)
def _holidays(country: str, year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays(country, years=year).keys())


def is_working_day(day: date, country: str, weekend: Iterable[int] = DEFAULT_WEEKEND) -> bool:
    return day.weekday() not in set(weekend) and day not in _holidays(country, day.year)


def add_working_days(
    start: datetime, days: float, country: str, weekend: Iterable[int] = DEFAULT_WEEKEND
) -> datetime:
    """The moment `days` working days after `start` (same time of day; fractions count hours)."""
    weekend = frozenset(weekend)
    whole = int(days)
    moment = start
    while whole > 0:
        moment += timedelta(days=1)
        if is_working_day(moment.date(), country, weekend):
            whole -= 1
    fraction = days - int(days)
    if fraction > 0:
        moment += timedelta(days=fraction)
        while not is_working_day(moment.date(), country, weekend):
            moment += timedelta(days=1)
    return moment


def working_days_between(
    start: datetime, end: datetime, country: str, weekend: Iterable[int] = DEFAULT_WEEKEND
) -> float:
    """Working days from `start` to `end` (negative never: 0 if end is not after start)."""
    if end <= start:
        return 0.0
    weekend = frozenset(weekend)
    count = 0.0
    moment = start
    while moment + timedelta(days=1) <= end:
        moment += timedelta(days=1)
        if is_working_day(moment.date(), country, weekend):
            count += 1
    rest = end - moment
    if rest > timedelta(0) and is_working_day(end.date(), country, weekend):
        count += rest / timedelta(days=1)
    return count
