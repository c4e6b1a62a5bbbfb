"""Finishing jobs: record how a run ended, fenced to the worker that ran it; then retry it
and schedule a cron job's next occurrence. (Jobs whose worker died are finished from
``leases.py``.)

Every write here is fenced: it lands only if the row is still running under the worker,
attempt and start time of the claim, so a job rescued from a dead worker can never be
finished twice.
"""

import logging
import random
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import router, transaction
from django.utils import timezone

from django_quickworker.claim import claim_next
from django_quickworker.conf import conf
from django_quickworker.cron import is_declared_in_code, schedule_next_occurrence
from django_quickworker.databases import database
from django_quickworker.databases.base import Claim, Database
from django_quickworker.models import Backoff, Status, WorkerJob
from django_quickworker.outages import DATABASE_UNAVAILABLE
from django_quickworker.payload import storable_text
from django_quickworker.signals import job_finished, send
from django_quickworker.states import Changes, apply, failed_plainly, finished
from django_quickworker.submit import resubmit

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """How one run of a job ended."""

    success: bool
    result: Any = None
    traceback: str = ""
    retryable: bool = True  # False when running again cannot help (an unknown job type)
    retry_requested: bool = False  # the job raised RetryJob
    retry_delay: timedelta | None = None  # RetryJob's delay, instead of the backoff
    cancelled: bool = False  # an operator stopped it: status cancelled, never retried

    @classmethod
    def failure(cls, message: str, traceback: str = "", retryable: bool = True) -> "Outcome":
        return cls(False, {"error": message}, traceback, retryable)


def finish_job(
    job: WorkerJob, outcome: Outcome, lease_expired_before: datetime | None = None
) -> WorkerJob | None:
    """Record ``outcome`` on the claimed ``job``; retry it if allowed; continue its cron chain.

    Returns the retry's row, or None. Records nothing when the fence no longer holds (or,
    with ``lease_expired_before``, when the lease was renewed since).
    """
    retry_delay = _retry_delay(job, outcome)
    if retry_delay is None and not job.cron_schedule:
        # The hot path: one UPDATE.
        _database().retrying(lambda: _record(job, outcome, timezone.now(), lease_expired_before))
        return None

    def record_and_continue() -> WorkerJob | None:
        # Due times are compared with the database's clock: the retry's and the next
        # occurrence's are counted from it, whatever this host's clock says.
        now = _database().current_time()
        # The outcome, the retry and the next occurrence land together or not at all.
        with transaction.atomic(using=router.db_for_write(WorkerJob), savepoint=False):
            if not _record(job, outcome, now, lease_expired_before):
                return None
            # Cancelling a run of a submitted cron job ends its chain; one declared in code
            # goes on (the code still declares it), so cancelling skips just that occurrence.
            if job.cron_schedule and (not outcome.cancelled or is_declared_in_code(job)):
                schedule_next_occurrence(job, now)
            return None if retry_delay is None else resubmit(job, due=now + retry_delay)

    # A deadlock rolls the whole transaction back: it is run again, from the start.
    return _database().retrying(record_and_continue)


def finish_safely(
    job: WorkerJob, outcome: Outcome, lease_expired_before: datetime | None = None
) -> WorkerJob | None:
    """``finish_job``; but if recording ``outcome`` raises, fail ``job`` with that error."""
    try:
        return finish_job(job, outcome, lease_expired_before)
    except DATABASE_UNAVAILABLE:
        raise
    except Exception as error:
        fail_instead(job, error, lease_expired_before)
        return None


def fail_instead(
    job: WorkerJob, error: Exception, lease_expired_before: datetime | None = None
) -> bool:
    """Fail ``job`` with ``error``, raised while its outcome was computed or written.

    The plainest fenced write there is, using none of the row's own values, so that one
    that breaks the ordinary finish (a remove_delay or a retry due past the year 9999 in a
    row written before the bounds, a cron schedule that no longer parses) never leaves the
    job running: a running row keeps its lease while its worker lives, and would never end.
    """
    logger.error(
        "recording the outcome of job id=%s type=%s failed; failing it instead",
        job.pk,
        job.type,
        exc_info=error,
    )
    now = timezone.now()
    message = f"Recording the job's outcome failed: {type(error).__name__}: {error}"
    fenced = WorkerJob.objects.fenced(job)
    if lease_expired_before is not None:
        fenced = fenced.lease_expired(lease_expired_before)
    result = {"error": storable_text(message)}
    traceback_text = storable_text("".join(traceback.format_exception(error)))
    changes = failed_plainly(job, now, result, traceback_text)
    return _landed(job, changes, fenced.update(**changes))


def finish_and_claim_next(
    job: WorkerJob,
    outcome: Outcome,
    queues: Sequence[str] | None,
    lease: timedelta,
    types: Sequence[str] | None = None,
) -> WorkerJob | None:
    """Finish ``job``, then claim its worker's next job (of ``queues`` and ``types``), or
    return None.

    When the finish needs no retry or next occurrence (nearly always), databases that can
    do both at once (one statement on PostgreSQL) do.
    """
    db = database(router.db_for_write(WorkerJob))
    now = timezone.now()
    needs_more = _retry_delay(job, outcome) is not None or bool(job.cron_schedule)
    if needs_more or not db.finishes_and_claims_at_once:
        finish_job(job, outcome)
        return claim_next(job.worker, queues, lease, types)
    changes = _finish_changes(job, outcome, now)
    rows, claimed = db.finish_and_claim(job, changes, Claim(job.worker, queues, types, lease))
    _landed(job, changes, rows)
    return claimed


def announce_finished(job: WorkerJob) -> None:
    """Send ``job_finished`` for ``job`` if its outcome was recorded (the fence held)."""
    if job.status == Status.RUNNING or not job_finished.has_listeners(WorkerJob):
        return
    result, error = (job.result, None) if job.success else (None, (job.result or {}).get("error"))
    send(job_finished, job=job, status=job.status, result=result, error=error)


def backoff(job: WorkerJob) -> timedelta:
    """How long a failed ``job`` waits before its retry.

    Fixed: the reschedule delay. Exponential: that delay (at least 1 s) doubled for each
    attempt so far, capped at RETRY_BACKOFF_MAX, then jittered down by up to half so that
    jobs that failed together do not all come back together.
    """
    delay = job.auto_reschedule_on_failure_delay
    if job.retry_backoff != Backoff.EXPONENTIAL:
        return delay
    base = max(delay, timedelta(seconds=1)).total_seconds()
    doublings = min(max(job.attempt - 1, 0), 64)  # past 2**64 s any cap has won; and no overflow
    ceiling = min(base * 2.0**doublings, conf.retry_backoff_max.total_seconds())
    return timedelta(seconds=ceiling * random.uniform(0.5, 1.0))


def _record(
    job: WorkerJob, outcome: Outcome, now: datetime, lease_expired_before: datetime | None
) -> bool:
    """Write the outcome onto the row (and ``job``) if the fence holds; return whether it did."""
    changes = _finish_changes(job, outcome, now)
    fenced = WorkerJob.objects.fenced(job)
    if lease_expired_before is not None:  # a rescue must not fail a job renewed meanwhile
        fenced = fenced.lease_expired(lease_expired_before)
    return _landed(job, changes, fenced.update(**changes))


def _finish_changes(job: WorkerJob, outcome: Outcome, now: datetime) -> Changes:
    return finished(
        job,
        now,
        success=outcome.success,
        result=outcome.result,
        traceback=outcome.traceback,
        cancelled=outcome.cancelled,
    )


def _landed(job: WorkerJob, changes: Changes, rows: int) -> bool:
    """Apply ``changes`` to ``job`` if the fenced write changed its row; say so if it did not."""
    if rows != 1:
        logger.warning(
            "finish ignored id=%s worker=%s attempt=%s: the job is no longer leased to it",
            job.pk,
            job.worker,
            job.attempt,
        )
        return False
    apply(job, changes)
    return True


def _retry_delay(job: WorkerJob, outcome: Outcome) -> timedelta | None:
    """How long after ``outcome`` ``job`` runs again, or None if it does not."""
    if outcome.success or outcome.cancelled or not outcome.retryable:
        return None
    if outcome.retry_requested:
        # A job that asks for a retry gets one even without a retry policy, but never
        # more than MAX_ATTEMPTS runs: QuickDapp's endless retries are what we avoid.
        limit = job.max_attempts if job.auto_reschedule_on_failure else conf.max_attempts
    elif job.auto_reschedule_on_failure:
        limit = job.max_attempts
    else:
        return None
    if job.attempt >= limit:
        return None
    return outcome.retry_delay if outcome.retry_delay is not None else backoff(job)


def _database() -> Database:
    return database(router.db_for_write(WorkerJob))
