"""When jobs run: durations, due times and cron schedules."""

import math
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter
from django.utils import timezone

from django_quickworker.exceptions import InvalidCronSchedule, InvalidDue, InvalidDuration

Duration = timedelta | int | float

# Bounds that keep every time a job can reach storable. A job runs only once its due time
# has come, so every time computed from a duration (lease end, retry, removal, next cron
# tick) is the clock's now plus at most a few durations: with durations of at most 100
# years and due times before the year 9000, none passes datetime's (and MySQL's) year 9999,
# which would raise OverflowError in the middle of finishing a job.
MAX_DURATION = timedelta(days=36525)  # 100 years
MIN_DUE = datetime(1900, 1, 1, tzinfo=dt_timezone.utc)  # earlier is surely a typo
MAX_DUE = datetime(9000, 1, 1, tzinfo=dt_timezone.utc)


def to_timedelta(value: Duration, name: str) -> timedelta:
    """Return ``value`` as a non-negative timedelta of at most MAX_DURATION, or raise
    InvalidDuration naming ``name``."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidDuration(
            f"{name}={value!r} is not a duration; give a timedelta or a number of seconds."
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidDuration(f"{name}={value!r} must be a finite duration of zero or more.")
    if seconds > MAX_DURATION.total_seconds():
        raise InvalidDuration(
            f"{name}={value!r} is longer than the longest duration allowed, "
            f"{MAX_DURATION.days} days (100 years)."
        )
    return value if isinstance(value, timedelta) else timedelta(seconds=seconds)


def wall_time(when: datetime) -> datetime:
    """``when`` as people read it: an aware time in the current time zone; a naive one
    (``USE_TZ = False``) already is one, in TIME_ZONE."""
    return timezone.localtime(when) if timezone.is_aware(when) else when


def check_due(due: datetime, name: str = "due") -> datetime:
    """Return ``due`` if it lies between MIN_DUE and MAX_DUE, else raise InvalidDue naming it.

    A naive ``due`` (``USE_TZ = False``) is compared as if it were UTC: the bounds are far
    enough from any real time for the difference not to matter.
    """
    aware = due if due.tzinfo is not None else due.replace(tzinfo=dt_timezone.utc)
    if not MIN_DUE <= aware <= MAX_DUE:
        raise InvalidDue(
            f"{name}={due!r} is out of range; due times lie between "
            f"{MIN_DUE:%Y-%m-%d} and {MAX_DUE:%Y-%m-%d}."
        )
    return due


def validate_cron(expression: str) -> str:
    """Return ``expression`` stripped, or raise InvalidCronSchedule naming it.

    Five fields are standard cron; six put seconds first (QuickDapp's form, so
    ``*/3 * * * * *`` runs every 3 seconds); ``@hourly``-style nicknames work too.
    """
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidCronSchedule(f"cron={expression!r} is not a cron string.")
    stripped = " ".join(expression.split())
    # croniter also takes 7 fields (seconds and year last), which would silently mean
    # something else than QuickDapp's seconds-first form.
    if len(stripped.split()) not in (1, 5, 6) or not croniter.is_valid(
        stripped, second_at_beginning=_has_seconds(stripped)
    ):
        raise InvalidCronSchedule(
            f"cron={expression!r} is not a valid cron string; use 5 fields "
            "(minute hour day month weekday), 6 with seconds first, or a nickname like @hourly."
        )
    return stripped


def next_cron_due(expression: str, after: datetime, time_zone: ZoneInfo) -> datetime:
    """Return the first tick of ``expression`` strictly after ``after``, read in ``time_zone``.

    When the clocks go back, a wall time happens twice; a job that runs at given hours runs
    at its first showing only, while one that runs every hour keeps both real hours.
    The tick has the form ``after`` has: aware, or naive in TIME_ZONE (``USE_TZ = False``:
    how Django stores datetimes then).
    """
    if timezone.is_naive(after):
        local = timezone.get_default_timezone()
        tick = next_cron_due(expression, timezone.make_aware(after, local), time_zone)
        return timezone.make_naive(tick, local)
    local_after = after.astimezone(time_zone)
    ticks = croniter(expression, local_after, second_at_beginning=_has_seconds(expression))
    hours = ticks.expanded[1]
    every_hour = hours == ["*"] or len(hours) == 24
    while True:
        try:
            due: datetime = ticks.get_next(datetime)
        except CroniterBadDateError:  # e.g. "0 0 30 2 *": there is no February 30th
            raise InvalidCronSchedule(
                f"cron={expression!r} never fires: no date matches all of its fields."
            ) from None
        if every_hour or not _repeated_wall_time(due, time_zone):
            break
    return due.astimezone(after.tzinfo)


def next_runs(expression: str, after: datetime, time_zone: ZoneInfo, count: int) -> list[datetime]:
    """Return the first ``count`` ticks of ``expression`` after ``after``, read in ``time_zone``."""
    runs: list[datetime] = []
    for _index in range(count):
        after = next_cron_due(expression, after, time_zone)
        runs.append(after)
    return runs


def _repeated_wall_time(moment: datetime, time_zone: ZoneInfo) -> bool:
    """Whether ``moment`` is the second showing of a wall time the clocks went back over."""
    local = moment.astimezone(dt_timezone.utc).astimezone(time_zone)
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


def _has_seconds(expression: str) -> bool:
    return len(expression.split()) == 6


def format_duration(duration: timedelta) -> str:
    """A duration for people: "850 ms", "4.2 s", "3 min 5 s", "2 h 10 min", "3 d 4 h"."""
    seconds = duration.total_seconds()
    if seconds < 1:
        return f"{max(seconds, 0) * 1000:.0f} ms"
    if seconds < 10:
        return f"{math.floor(seconds * 10) / 10:g} s"
    seconds = int(seconds)
    for size, unit, smaller_size, smaller_unit in UNITS:
        if seconds >= size:
            rest = (seconds % size) // smaller_size
            return f"{seconds // size} {unit}" + (f" {rest} {smaller_unit}" if rest else "")
    return f"{seconds} s"


UNITS = [(86400, "d", 3600, "h"), (3600, "h", 60, "min"), (60, "min", 1, "s")]
