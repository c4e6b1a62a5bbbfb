"""When jobs run: durations, due times and cron schedules."""

import math
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from zoneinfo import ZoneInfo

from croniter import croniter

from django_quickworker.exceptions import InvalidCronSchedule, InvalidDuration

Duration = timedelta | int | float


def to_timedelta(value: Duration, name: str) -> timedelta:
    """Return ``value`` as a non-negative timedelta, or raise InvalidDuration naming ``name``."""
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
    return value if isinstance(value, timedelta) else timedelta(seconds=seconds)


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
    """
    local_after = after.astimezone(time_zone)
    ticks = croniter(expression, local_after, second_at_beginning=_has_seconds(expression))
    hours = ticks.expanded[1]
    every_hour = hours == ["*"] or len(hours) == 24
    while True:
        due: datetime = ticks.get_next(datetime)
        if every_hour or not _repeated_wall_time(due, time_zone):
            break
    return due.astimezone(after.tzinfo) if after.tzinfo else due


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
