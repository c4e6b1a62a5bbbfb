"""Durations and cron schedules."""

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from django_quickworker.exceptions import InvalidCronSchedule, InvalidDue, InvalidDuration
from django_quickworker.schedule import (
    MAX_DUE,
    MAX_DURATION,
    check_due,
    next_cron_due,
    to_timedelta,
    validate_cron,
)

UTC = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(minutes=2), timedelta(minutes=2)),
        (timedelta(0), timedelta(0)),
        (0, timedelta(0)),
        (90, timedelta(seconds=90)),
        (1.5, timedelta(seconds=1.5)),
    ],
)
def test_to_timedelta_accepts_timedelta_and_seconds(value: Any, expected: timedelta) -> None:
    result = to_timedelta(value, "delay")

    assert type(result) is timedelta
    assert result == expected


@pytest.mark.parametrize(
    "value",
    [True, False, -1, -0.001, timedelta(seconds=-1), float("nan"), float("inf"), "10", None, [1]],
)
def test_to_timedelta_refuses_non_durations(value: Any) -> None:
    with pytest.raises(InvalidDuration) as error:
        to_timedelta(value, "delay")

    assert isinstance(error.value, ValueError)
    assert f"delay={value!r}" in str(error.value)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("*/5 * * * *", "*/5 * * * *"),
        ("  0   3 * * 1-5 ", "0 3 * * 1-5"),
        ("*/3 * * * * *", "*/3 * * * * *"),
        ("0 0 * * * *", "0 0 * * * *"),
        ("@hourly", "@hourly"),
        ("@daily", "@daily"),
    ],
)
def test_validate_cron_accepts_five_six_fields_and_nicknames(
    expression: str, expected: str
) -> None:
    assert validate_cron(expression) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "   ",
        "not a cron",
        "* * *",
        "61 * * * *",
        "0 0 25 * * *",  # seconds first: hour 25
        "@every",
        # Seven fields are croniter's own form (seconds sixth, then a year), not the documented
        # 5 or 6-with-seconds-first: "30 0 3 * * * *" would run every second of 00:30 on the 3rd.
        "30 0 3 * * * *",
    ],
)
def test_validate_cron_refuses_invalid_strings_naming_them(expression: str) -> None:
    with pytest.raises(InvalidCronSchedule) as error:
        validate_cron(expression)

    assert isinstance(error.value, ValueError)
    assert repr(expression) in str(error.value)


@pytest.mark.parametrize("expression", [None, 5, ["* * * * *"]])
def test_validate_cron_refuses_non_strings(expression: Any) -> None:
    with pytest.raises(InvalidCronSchedule, match="not a cron string"):
        validate_cron(expression)


def test_six_fields_put_seconds_first() -> None:
    after = datetime(2026, 1, 15, 12, 0, 0, tzinfo=UTC)

    first = next_cron_due("*/3 * * * * *", after, UTC)
    second = next_cron_due("*/3 * * * * *", first, UTC)

    assert first == datetime(2026, 1, 15, 12, 0, 3, tzinfo=UTC)
    assert second - first == timedelta(seconds=3)


def test_six_fields_hourly_on_the_hour() -> None:
    after = datetime(2026, 1, 15, 12, 0, 0, tzinfo=UTC)  # a tick itself: the next one is later

    assert next_cron_due("0 0 * * * *", after, UTC) == datetime(2026, 1, 15, 13, tzinfo=UTC)
    assert next_cron_due("0 0 * * * *", after + timedelta(seconds=1), UTC) == datetime(
        2026, 1, 15, 13, tzinfo=UTC
    )
    assert next_cron_due("@hourly", after, UTC) == datetime(2026, 1, 15, 13, tzinfo=UTC)


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        # Winter: Paris is UTC+1, so 03:00 there is 02:00 UTC.
        (datetime(2026, 1, 15, 12, tzinfo=UTC), datetime(2026, 1, 16, 2, tzinfo=UTC)),
        (datetime(2026, 1, 16, 1, 59, tzinfo=UTC), datetime(2026, 1, 16, 2, tzinfo=UTC)),
        # Summer: UTC+2, so 03:00 there is 01:00 UTC.
        (datetime(2026, 7, 15, 12, tzinfo=UTC), datetime(2026, 7, 16, 1, tzinfo=UTC)),
    ],
)
def test_five_fields_in_a_time_zone(after: datetime, expected: datetime) -> None:
    due = next_cron_due("0 3 * * *", after, PARIS)

    assert due == expected
    assert due.tzinfo is not None
    assert due.utcoffset() == timedelta(0)  # returned in the time zone it was given
    assert due.astimezone(PARIS).hour == 3


def test_to_timedelta_accepts_up_to_a_hundred_years() -> None:
    assert to_timedelta(MAX_DURATION, "delay") == timedelta(days=36525)
    assert to_timedelta(MAX_DURATION.total_seconds(), "delay") == MAX_DURATION


# 10**12 s would overflow timedelta(); timedelta.max would overflow any datetime it is added to.
@pytest.mark.parametrize("value", [10**12, 1e300, timedelta.max, MAX_DURATION + timedelta(1)])
def test_to_timedelta_refuses_durations_over_a_hundred_years(value: Any) -> None:
    with pytest.raises(InvalidDuration) as error:
        to_timedelta(value, "remove_delay")

    assert str(error.value).startswith(f"remove_delay={value!r} is longer than")
    assert "36525 days (100 years)" in str(error.value)


@pytest.mark.parametrize(
    "due",
    [
        datetime(9000, 1, 2, tzinfo=dt_timezone.utc),
        datetime.max.replace(tzinfo=dt_timezone.utc),
        datetime(1899, 12, 31, tzinfo=dt_timezone.utc),
        datetime.min,
    ],
)
def test_due_times_out_of_range_are_refused_naming_the_range(due: datetime) -> None:
    with pytest.raises(InvalidDue) as error:
        check_due(due)

    assert str(error.value) == (
        f"due={due!r} is out of range; due times lie between 1900-01-01 and 9000-01-01."
    )


def test_due_times_in_range_are_accepted() -> None:
    for due in [MAX_DUE, datetime(2026, 5, 1), datetime(1900, 1, 1, tzinfo=dt_timezone.utc)]:
        assert check_due(due) is due
