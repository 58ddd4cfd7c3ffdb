"""Overdue answers (Decree 30/2020: acknowledged the same working day), with an injected
clock, across the Tết holiday of the example calendar."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from exchange.calendar import WorkingCalendar
from exchange.evidence import Event, EventKind
from exchange.tracking import recipient_state

HANOI = timezone(timedelta(hours=7))
H41 = "000.00.00.H41"
TET_2027 = frozenset(date(2027, 2, d) for d in (5, 8, 9, 10, 11))
CALENDAR = WorkingCalendar(holidays=TET_2027)
# delivered on the Thursday before Tết, after hours: due at the close of the first
# working day after it, Friday 12 February 2027
DELIVERED = datetime(2027, 2, 4, 18, 0, tzinfo=HANOI)


def delivered() -> Event:
    return Event(
        EventKind.DELIVERED,
        "d",
        DELIVERED,
        "province-h41",
        message_id="m",
        detail={"recipients": [H41]},
    )


def answered(code: str, at: datetime) -> Event:
    return Event(
        EventKind.STATUS,
        f"s{code}",
        at,
        "central",
        document_id="D",
        party=H41,
        detail={"code": code, "sent_at": at.isoformat()},
    )


def state(now: datetime, *statuses: Event):  # type: ignore[no-untyped-def]
    return recipient_state(
        H41, DELIVERED, None, [delivered()], list(statuses), now=now, deadlines=CALENDAR
    )


def test_not_overdue_through_the_holiday() -> None:
    row = state(datetime(2027, 2, 11, 16, 0, tzinfo=HANOI))
    assert row.due == datetime(2027, 2, 12, 17, 0, tzinfo=HANOI)
    assert not row.overdue


def test_overdue_once_the_first_working_day_after_tet_closes_unanswered() -> None:
    assert state(datetime(2027, 2, 12, 17, 1, tzinfo=HANOI)).overdue


def test_an_arrival_or_registration_in_time_is_not_overdue_and_a_late_one_was() -> None:
    later = datetime(2027, 2, 15, 9, 0, tzinfo=HANOI)
    assert not state(later, answered("01", datetime(2027, 2, 12, 9, 0, tzinfo=HANOI))).overdue
    assert not state(later, answered("03", datetime(2027, 2, 12, 16, 59, tzinfo=HANOI))).overdue
    assert state(later, answered("03", datetime(2027, 2, 15, 8, 0, tzinfo=HANOI))).overdue
    # a 04 is no acknowledgement of receipt by itself
    assert state(later, answered("04", datetime(2027, 2, 12, 9, 0, tzinfo=HANOI))).overdue


def test_nothing_is_overdue_before_it_is_delivered() -> None:
    row = recipient_state(
        H41, DELIVERED, None, [], [], now=DELIVERED + timedelta(days=30), deadlines=CALENDAR
    )
    assert (row.transport, row.overdue, row.due) == ("accepted", False, None)
