"""Leases: what the ``runworkers`` parent does for running jobs besides running them.

It renews the leases of its workers' jobs, ends the jobs of workers that died (failed, or
cancelled if an operator asked), puts interrupted jobs back in the queue, finds the jobs an
operator asked to cancel, and rescues the jobs of hosts that stopped renewing theirs.
"""

import logging
from datetime import timedelta

from django.db import router
from django.db.models import F
from django.utils import timezone

from django_quickworker.databases import database
from django_quickworker.finish import Outcome, announce_finished, finish_safely
from django_quickworker.models import Status, WorkerJob
from django_quickworker.outages import DATABASE_UNAVAILABLE

logger = logging.getLogger(__name__)

CANCELLED_WHILE_RUNNING = "Cancelled by an operator while running."


def renew_leases(workers: list[str], running_ids: set[int], lease: timedelta) -> set[int]:
    """Extend the leases of the jobs these live workers are running, by the database's
    clock; return those of ``running_ids`` (the jobs they are known to run) that are no
    longer leased to them: rescued or ended elsewhere, so their runs must stop."""
    ours = WorkerJob.objects.running().filter(worker__in=workers)
    lease_expires = database(router.db_for_write(WorkerJob)).later(lease)
    renewed = ours.update(lease_expires=lease_expires, updated_at=timezone.now())
    if renewed >= len(running_ids):  # nearly always: nothing lost, and no second query
        return set()
    return running_ids - set(ours.filter(pk__in=running_ids).values_list("pk", flat=True))


def release_job(job: WorkerJob) -> bool:
    """Put an interrupted run back in the queue, unfinished; return whether it was released.

    The run does not count: its attempt is given back, so that a job put back by a second
    SIGTERM, a dead parent or a lost connection still gets all of its max_attempts runs.
    """
    released = WorkerJob.objects.fenced(job).update(
        status=Status.SCHEDULED,
        started=None,
        worker="",
        lease_expires=None,
        attempt=F("attempt") - 1,
        updated_at=timezone.now(),
    )
    return released == 1


def end_jobs_of(worker: str, reason: str) -> int:
    """Finish the jobs still running under ``worker``, which has died: cancelled if an
    operator asked for it, otherwise failed (and maybe retried) with ``reason``."""
    jobs = list(WorkerJob.objects.running().filter(worker=worker))
    for job in jobs:
        logger.warning("job ended id=%s type=%s worker=%s: %s", job.pk, job.type, worker, reason)
        finish_safely(job, _ended(job, reason))
        announce_finished(job)
    return len(jobs)


def _ended(job: WorkerJob, reason: str) -> Outcome:
    """How a run that its worker did not finish ended: cancelled, if an operator asked."""
    if job.cancel_requested:
        return Outcome(False, {"error": CANCELLED_WHILE_RUNNING}, cancelled=True)
    return Outcome.failure(reason)


def jobs_asked_to_cancel(workers: list[str]) -> list[tuple[str, int]]:
    """(worker, job id) of the jobs these workers run that an operator asked to cancel."""
    running = WorkerJob.objects.running().filter(worker__in=workers, cancel_requested__isnull=False)
    return list(running.values_list("worker", "pk"))


def release_jobs_of(worker: str) -> int:
    """Put the jobs still running under ``worker`` back in the queue; return how many."""
    return sum(release_job(job) for job in WorkerJob.objects.running().filter(worker=worker))


def rescue_expired_jobs() -> int:
    """Fail (and maybe retry) running jobs whose lease ran out: their host stopped renewing."""
    # The hosts' clocks may disagree; the database's is one.
    now = database(router.db_for_write(WorkerJob)).current_time()
    rescued = 0
    for job in WorkerJob.objects.running().filter(lease_expires__lt=now):
        reason = f"Worker {job.worker} stopped renewing its lease; its host is presumed dead."
        try:
            finish_safely(job, _ended(job, reason), lease_expired_before=now)
        except DATABASE_UNAVAILABLE:
            raise
        except Exception:  # even failing it did not work: the others still deserve rescue
            logger.error(
                "rescue of job id=%s type=%s failed; skipping it", job.pk, job.type, exc_info=True
            )
            continue
        if job.status != Status.RUNNING:  # recorded: the fence and the lease check held
            logger.warning("job rescued id=%s type=%s: %s", job.pk, job.type, reason)
            announce_finished(job)
            rescued += 1
    return rescued
