"""Working days and the acknowledgement deadline of a delivered document.

Decree 30/2020/NĐ-CP asks that a document received be acknowledged the same working day.
The rule, read as a deadline: something delivered at ``at`` is due at the close of business
of the working day ``at`` falls on, when it came before that close; otherwise (after hours,
a weekend, a holiday) at the close of the next working day. Working days are the working
weekdays, less the holidays, plus the Saturdays made working days to make up for a bridge
("làm bù"). Times are judged in the calendar's time zone; deadlines are given in UTC.

Pure: no clock, no files. The caller passes every instant, as an aware datetime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DEFAULT_TIME_ZONE = "Asia/Ho_Chi_Minh"
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # date.weekday() order
LOOK_AHEAD_DAYS = 366  # a search for the next working day gives up after a year


def _aware(at: datetime, name: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime (with a time zone), found {at!r}")
    return at


@dataclass(frozen=True)
class WorkingCalendar:
    """Which days are worked, and when the working day opens and closes, in one time zone."""

    time_zone: ZoneInfo = field(default_factory=lambda: ZoneInfo(DEFAULT_TIME_ZONE))
    work_days: frozenset[int] = frozenset(range(5))  # date.weekday(): Monday 0 … Sunday 6
    opens: time = time(7, 30)
    closes: time = time(17, 0)
    holidays: frozenset[date] = frozenset()  # days off, e.g. Tết
    extra_working_days: frozenset[date] = frozenset()  # Saturdays worked to make up ("làm bù")

    def __post_init__(self) -> None:
        if not self.work_days:
            raise ValueError("a working calendar needs at least one working weekday")
        if not self.work_days <= set(range(7)):
            found = sorted(self.work_days)
            raise ValueError(f"working weekdays are 0 (Monday) to 6, found {found}")
        if self.opens.tzinfo is not None or self.closes.tzinfo is not None:
            raise ValueError("opening and closing times are local: give them without a time zone")
        if self.closes <= self.opens:
            raise ValueError(
                f"the working day closes ({self.closes:%H:%M}) before it opens ({self.opens:%H:%M})"
            )
        both = self.holidays & self.extra_working_days
        if both:
            days = ", ".join(sorted(d.isoformat() for d in both))
            raise ValueError(f"days both holidays and working days: {days}")

    def is_working_day(self, day: date) -> bool:
        if day in self.extra_working_days:
            return True
        return day.weekday() in self.work_days and day not in self.holidays

    def close_of(self, day: date) -> datetime:
        """The close of business of ``day`` (whether or not it is worked), in UTC."""
        return datetime.combine(day, self.closes, tzinfo=self.time_zone).astimezone(UTC)

    def next_working_day(self, after: date) -> date:
        """The first working day after ``after``; ValueError if none comes within a year."""
        day = after
        for _ in range(LOOK_AHEAD_DAYS):
            day += timedelta(days=1)
            if self.is_working_day(day):
                return day
        raise ValueError(f"no working day within {LOOK_AHEAD_DAYS} days after {after.isoformat()}")

    def end_of_working_day(self, at: datetime) -> datetime:
        """The deadline of something delivered at ``at``: the close of the working day it
        falls on when it came before that close, else the close of the next working day."""
        local = _aware(at, "at").astimezone(self.time_zone)
        day = local.date()
        if self.is_working_day(day) and at < self.close_of(day):
            return self.close_of(day)
        return self.close_of(self.next_working_day(day))

    def overdue(
        self, delivered_at: datetime, acknowledged_at: datetime | None, now: datetime
    ) -> bool:
        """Whether a delivery was not acknowledged by its deadline. An acknowledgement after
        the deadline still means it was overdue; one at the deadline is in time."""
        due = self.end_of_working_day(delivered_at)
        if acknowledged_at is not None:
            return _aware(acknowledged_at, "acknowledged_at") > due
        return _aware(now, "now") > due
