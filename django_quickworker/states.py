"""A job's states, and every change between them.

A job is scheduled, then running once a worker claims it, then succeeded, failed or
cancelled; a release puts a running job back to scheduled, and a scheduled job may be
cancelled before it runs. Each change is one function here, giving what it writes onto the
row: the ORM's updates (``models.WorkerJobQuerySet``) and the databases' raw SQL
(``databases/``) both write what it gives, so a status is assigned in this module only.
"""

from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import models
from django.db.models import Case, ExpressionWrapper, F, Q, Value, When
from django.db.models.functions import Coalesce

from django_quickworker.conf import conf

if TYPE_CHECKING:
    from datetime import timedelta

    from django_quickworker.models import WorkerJob

Changes = dict[str, Any]  # column values (or SQL expressions) that a change writes


class Status(models.TextChoices):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

# The status is indexed, so it must never disagree with the timestamps; the database
# refuses any row where it does, whatever code wrote it.
STATUS_MATCHES_TIMESTAMPS = (
    Q(status=Status.SCHEDULED, started__isnull=True, finished__isnull=True, success__isnull=True)
    | Q(status=Status.RUNNING, started__isnull=False, finished__isnull=True, success__isnull=True)
    | Q(status=Status.SUCCEEDED, started__isnull=False, finished__isnull=False, success=True)
    | Q(status__in=[Status.FAILED, Status.CANCELLED], finished__isnull=False, success=False)
)
# A CHECK that evaluates to NULL passes, and "success = true" is NULL when success is NULL.
STATUS_MATCHES_TIMESTAMPS &= Q(success__isnull=False) | Q(
    status__in=[Status.SCHEDULED, Status.RUNNING]
)


def fence(job: "WorkerJob") -> dict[str, Any]:
    """The column values that only the run ``job`` holds has: a write conditioned on them
    lands only on that run, never on a later one after a rescue or a release."""
    # The start time tells two runs of one attempt apart: a release gives the attempt back.
    return {
        "id": job.pk,
        "status": Status.RUNNING,
        "worker": job.worker,
        "attempt": job.attempt,
        "started": job.started,
    }


def claimed(worker: str, started: datetime, attempt: object, lease_expires: object) -> Changes:
    """Claiming: running under ``worker`` from ``started``. ``attempt`` (one more than
    before) and ``lease_expires`` (on the database's clock) may be SQL expressions. (On
    PostgreSQL, ``quickworker_claim``, a function of the initial migration, writes the same.)"""
    return {
        "status": Status.RUNNING,
        "started": started,
        "worker": worker,
        "attempt": attempt,
        "lease_expires": lease_expires,
        "updated_at": started,
    }


def released(now: datetime) -> Changes:
    """Releasing an interrupted run: scheduled again, unfinished. The run does not count:
    its attempt is given back, so that a job put back by a second SIGTERM, a dead parent
    or a lost connection still gets all of its max_attempts runs."""
    return {
        "status": Status.SCHEDULED,
        "started": None,
        "worker": "",
        "lease_expires": None,
        "attempt": F("attempt") - 1,
        "updated_at": now,
    }


def finished(
    job: "WorkerJob",
    now: datetime,
    *,
    success: bool,
    result: Any,
    traceback: str = "",
    cancelled: bool = False,
) -> Changes:
    """Finishing ``job``'s run at ``now``: succeeded, failed, or cancelled (by an operator,
    while it ran)."""
    status = Status.CANCELLED if cancelled else Status.SUCCEEDED if success else Status.FAILED
    return {
        "status": status,
        "finished": now,
        "success": success,
        "result": result,
        "error_traceback": traceback,
        "lease_expires": None,
        "remove_at": removal_time(job, status, now),
        "updated_at": now,
    }


def cancelled_before_running(reason: str, now: datetime) -> Changes:
    """Cancelling scheduled jobs, any number of them at once, with ``reason``."""
    return {
        "status": Status.CANCELLED,
        "finished": now,
        "success": False,
        "result": {"error": reason},
        "remove_at": _removal_time_sql(now, retention(Status.CANCELLED)),
        "updated_at": now,
    }


def failed_plainly(job: "WorkerJob", now: datetime, result: Any, traceback: str) -> Changes:
    """Failing a run whose ordinary finish could not be written, with the plainest change
    there is: it uses none of the row's values but ``persistent``, so that a value that broke
    the finish (a remove_delay past the year 9999, in a row written before the bounds)
    cannot break this too."""
    return {
        "status": Status.FAILED,
        "finished": now,
        "success": False,
        "result": result,
        "error_traceback": traceback,
        "lease_expires": None,
        "remove_at": None if job.persistent else now + retention(Status.FAILED),
        "updated_at": now,
    }


def apply(job: "WorkerJob", changes: Changes) -> None:
    """Make ``job`` show ``changes`` (plain values only), once they are written on its row."""
    for name, value in changes.items():
        setattr(job, name, value)


# Retention: when cleanup may delete a finished row. Counted from the finish, by the row's
# own remove_delay or the retention for its outcome; never for persistent rows. Worked out
# in Python for one row whose values are known, in SQL for rows cancelled together.


def removal_time(job: "WorkerJob", status: str, finished: datetime) -> datetime | None:
    """When cleanup may delete ``job``, finished with ``status`` at ``finished``."""
    if job.persistent:
        return None
    delay = job.remove_delay if job.remove_delay is not None else retention(status)
    return finished + delay


def retention(status: str) -> "timedelta":
    """How long a row finished with ``status`` is kept, unless it says otherwise."""
    return conf.retain_succeeded if status == Status.SUCCEEDED else conf.retain_failed


def _removal_time_sql(finished: datetime, default_retention: "timedelta") -> Case:
    delay = Coalesce(F("remove_delay"), Value(default_retention))
    return Case(
        When(persistent=True, then=Value(None)),
        default=ExpressionWrapper(Value(finished) + delay, output_field=models.DateTimeField()),
        output_field=models.DateTimeField(),
    )
