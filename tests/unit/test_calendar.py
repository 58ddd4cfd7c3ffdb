"""When a delivered document is due (Decree 30/2020: acknowledged the same working day), and
the [deadlines] table that configures it. Every instant is written out; no clock is read."""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.calendar import WorkingCalendar
from exchange.config import NodeConfig, node_config_from_mapping
from exchange.errors import ConfigurationError
from tests.unit.test_config import GOOD

HANOI = ZoneInfo("Asia/Ho_Chi_Minh")  # UTC+7, no summer time
TET_2027 = frozenset(
    date.fromisoformat(d)
    for d in ("2027-02-05", "2027-02-08", "2027-02-09", "2027-02-10", "2027-02-11")
)
CALENDAR = WorkingCalendar(holidays=TET_2027)


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=HANOI)


# 2027-02-02 is a Tuesday.
@pytest.mark.parametrize(
    ("delivered", "due"),
    [
        ("2027-02-02 10:00", "2027-02-02 17:00"),  # Tuesday morning: that evening
        ("2027-02-02 06:00", "2027-02-02 17:00"),  # before opening: still that day
        ("2027-02-02 16:59", "2027-02-02 17:00"),
        ("2027-02-02 17:00", "2027-02-03 17:00"),  # at the close: the next working day
        ("2027-02-02 18:00", "2027-02-03 17:00"),  # Tuesday evening: Wednesday
        ("2027-01-29 18:00", "2027-02-01 17:00"),  # Friday evening: Monday
        ("2027-01-30 10:00", "2027-02-01 17:00"),  # Saturday: Monday
        ("2027-02-04 18:00", "2027-02-12 17:00"),  # Thursday before Tết: after it
        ("2027-02-08 09:00", "2027-02-12 17:00"),  # during Tết: the first day back
    ],
)
def test_a_delivery_is_due_at_the_close_of_its_working_day_or_the_next(
    delivered: str, due: str
) -> None:
    deadline = CALENDAR.end_of_working_day(local(delivered))
    assert deadline == local(due)
    assert deadline.tzinfo is UTC


def test_a_working_saturday_counts() -> None:
    worked = date(2027, 2, 20)  # a Saturday, worked in exchange for a bridge day
    calendar = WorkingCalendar(extra_working_days=frozenset({worked}))
    assert calendar.is_working_day(worked)
    assert not calendar.is_working_day(date(2027, 2, 21))
    assert calendar.end_of_working_day(local("2027-02-19 18:00")) == local("2027-02-20 17:00")
    assert calendar.end_of_working_day(local("2027-02-20 11:00")) == local("2027-02-20 17:00")
    assert CALENDAR.end_of_working_day(local("2027-02-19 18:00")) == local("2027-02-22 17:00")


def test_instants_in_utc_are_judged_in_local_time() -> None:
    # 09:30Z is 16:30 in Hà Nội: before the close, due the same day at 10:00Z
    assert CALENDAR.end_of_working_day(datetime(2027, 2, 3, 9, 30, tzinfo=UTC)) == datetime(
        2027, 2, 3, 10, 0, tzinfo=UTC
    )
    # 10:30Z is 17:30 there: after the close
    assert CALENDAR.end_of_working_day(datetime(2027, 2, 3, 10, 30, tzinfo=UTC)) == datetime(
        2027, 2, 4, 10, 0, tzinfo=UTC
    )
    # Monday 20:00Z is already Tuesday 03:00 in Hà Nội: due Tuesday
    assert CALENDAR.end_of_working_day(datetime(2027, 2, 1, 20, 0, tzinfo=UTC)) == local(
        "2027-02-02 17:00"
    )


def test_overdue_is_judged_against_the_deadline() -> None:
    delivered = local("2027-02-02 10:00")  # due 17:00 that day
    before, at, after = (
        local("2027-02-02 16:00"),
        local("2027-02-02 17:00"),
        local("2027-02-03 08:00"),
    )
    assert not CALENDAR.overdue(delivered, None, now=before)
    assert not CALENDAR.overdue(delivered, None, now=at)
    assert CALENDAR.overdue(delivered, None, now=after)
    assert not CALENDAR.overdue(delivered, acknowledged_at=before, now=after)
    assert not CALENDAR.overdue(delivered, acknowledged_at=at, now=after)
    assert CALENDAR.overdue(delivered, acknowledged_at=after, now=after)  # acknowledged late


def test_naive_instants_are_refused() -> None:
    naive = datetime(2027, 2, 2, 10, 0)
    with pytest.raises(ValueError, match="aware datetime"):
        CALENDAR.end_of_working_day(naive)
    with pytest.raises(ValueError, match="acknowledged_at"):
        CALENDAR.overdue(local("2027-02-02 10:00"), naive, now=local("2027-02-03 10:00"))
    with pytest.raises(ValueError, match="now"):
        CALENDAR.overdue(local("2027-02-02 10:00"), None, now=naive)


def test_a_calendar_that_can_never_be_met_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one working weekday"):
        WorkingCalendar(work_days=frozenset())
    with pytest.raises(ValueError, match="closes"):
        WorkingCalendar(opens=time(17, 0), closes=time(7, 30))
    day = frozenset({date(2027, 2, 20)})
    with pytest.raises(ValueError, match="both holidays and working days: 2027-02-20"):
        WorkingCalendar(holidays=day, extra_working_days=day)
    mondays_off = frozenset(date(2027, 1, 4) + timedelta(weeks=n) for n in range(60))
    only_mondays = WorkingCalendar(work_days=frozenset({0}), holidays=mondays_off)
    with pytest.raises(ValueError, match="no working day within 366 days"):
        only_mondays.end_of_working_day(local("2027-01-01 10:00"))


@given(
    delivered=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
    ),
    saturdays=st.sets(st.dates(date(2027, 1, 1), date(2027, 12, 31))).map(
        lambda days: frozenset(d for d in days if d.weekday() == 5)
    ),
)
def test_the_deadline_is_the_first_working_close_after_delivery(
    delivered: datetime, saturdays: frozenset[date]
) -> None:
    calendar = WorkingCalendar(holidays=TET_2027, extra_working_days=saturdays)
    due = calendar.end_of_working_day(delivered)
    there = due.astimezone(HANOI)
    assert due > delivered
    assert calendar.is_working_day(there.date())
    assert there.time() == time(17, 0)
    # and it is the first close of a working day after the delivery: none was skipped
    day = delivered.astimezone(HANOI).date()
    while day < there.date():
        assert not calendar.is_working_day(day) or calendar.close_of(day) <= delivered
        day += timedelta(days=1)


# The [deadlines] table of the node file


def load(extra: str) -> NodeConfig:
    return node_config_from_mapping(
        tomllib.loads(GOOD + extra), "node.toml", Path("/etc/lienthong")
    )


def test_without_a_deadlines_table_the_defaults_hold() -> None:
    deadlines = load("").deadlines
    assert deadlines.calendar == WorkingCalendar()
    assert deadlines.calendar.time_zone.key == "Asia/Ho_Chi_Minh"
    assert deadlines.calendar.work_days == frozenset(range(5))
    assert (deadlines.calendar.opens, deadlines.calendar.closes) == (time(7, 30), time(17))
    assert deadlines.ttl == timedelta(hours=168)


def test_a_deadlines_table_is_read() -> None:
    config = load(
        """
[deadlines]
time_zone = "Asia/Bangkok"
work_days = ["mon", "tue", "wed", "thu", "fri", "sat"]
work_hours = "08:00-16:30"
holidays = ["2027-02-05", 2027-02-08]
working_saturdays = ["2027-02-20"]
ttl_hours = 72
"""
    )
    calendar = config.deadlines.calendar
    assert calendar.time_zone.key == "Asia/Bangkok"
    assert calendar.work_days == frozenset(range(6))
    assert (calendar.opens, calendar.closes) == (time(8), time(16, 30))
    assert calendar.holidays == {date(2027, 2, 5), date(2027, 2, 8)}
    assert calendar.extra_working_days == {date(2027, 2, 20)}
    assert config.deadlines.ttl == timedelta(hours=72)
    assert config.link.expire_after_hours == 72


def test_link_expire_after_hours_is_read_as_the_older_name_of_ttl_hours() -> None:
    config = load("[link]\nexpire_after_hours = 24\n")
    assert config.deadlines.ttl == timedelta(hours=24)
    assert config.link.expire_after_hours == 24
    same = load("[link]\nexpire_after_hours = 24\n[deadlines]\nttl_hours = 24\n")
    assert same.deadlines.ttl == timedelta(hours=24)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'time_zone = "Asia/Hanoi"',
            "key 'deadlines.time_zone': expected a known IANA time zone such as "
            "'Asia/Ho_Chi_Minh', found str 'Asia/Hanoi'",
        ),
        ('time_zone = "../../etc/passwd"', "key 'deadlines.time_zone': expected a known"),
        ('time_zone = "Asia"', "key 'deadlines.time_zone': expected a known"),
        ('time_zone = "zone.tab"', "key 'deadlines.time_zone': expected a known"),
        (
            'holidays = ["2027-02-30"]',
            "key 'deadlines.holidays': expected a list of dates, YYYY-MM-DD, "
            "found str '2027-02-30'",
        ),
        ('holidays = ["5/2/2027"]', "key 'deadlines.holidays': expected a list of dates"),
        ("holidays = [2027-02-05T00:00:00]", "key 'deadlines.holidays': expected a list"),
        ('holidays = "2027-02-05"', "key 'deadlines.holidays': expected a list of dates"),
        (
            'work_hours = "7:30-17:00"',
            "key 'deadlines.work_hours': expected local opening and closing times, "
            "'HH:MM-HH:MM', found str '7:30-17:00'",
        ),
        ('work_hours = "07:30-25:00"', "key 'deadlines.work_hours': expected local opening"),
        (
            'work_hours = "17:00-07:30"',
            "key 'deadlines.work_hours': expected a closing time after the opening time, "
            "found str '17:00-07:30'",
        ),
        (
            "work_days = []",
            "key 'deadlines.work_days': expected a non-empty list of weekdays from "
            "mon, tue, wed, thu, fri, sat, sun, found list []",
        ),
        ('work_days = ["monday"]', "key 'deadlines.work_days': expected a non-empty list"),
        (
            'working_saturdays = ["2027-02-21"]',
            "key 'deadlines.working_saturdays': expected Saturdays, found str '2027-02-21'",
        ),
        (
            'holidays = ["2027-02-20"]\nworking_saturdays = ["2027-02-20"]',
            "key 'deadlines.working_saturdays': 2027-02-20 also listed in 'deadlines.holidays'",
        ),
        (
            "ttl_hours = 0",
            "key 'deadlines.ttl_hours': expected a positive number of hours, found float 0.0",
        ),
        ('holiday = ["2027-02-05"]', "unknown key 'deadlines.holiday'; did you mean 'holidays'?"),
        (
            "ttl_hours = 72\n[link]\nexpire_after_hours = 24",
            "key 'deadlines.ttl_hours': 72 hours, but 'link.expire_after_hours' "
            "(its older name) says 24; keep one",
        ),
    ],
)
def test_each_deadlines_mistake_names_the_key(table: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load("[deadlines]\n" + table + "\n")
    assert caught.value.message.startswith("node.toml: ")
    assert message in caught.value.message
