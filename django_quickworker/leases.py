"""Leases: what the ``runworkers`` parent does for running jobs besides running them.

It renews the leases of its workers' jobs (and ends the runs whose lease was lost), ends
the jobs of workers that died (failed, or cancelled if an operator asked), puts
interrupted jobs back in the queue, ends the runs an operator cancelled, and rescues the
jobs of hosts that stopped renewing theirs.
"""

import asyncio
import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from django.db import router

from django_quickworker import processes
from django_quickworker.children import Child, describe_exit
from django_quickworker.conf import conf
from django_quickworker.cron import ensure_cron_jobs
from django_quickworker.databases import database
from django_quickworker.finish import Outcome, announce_finished, finish_safely
from django_quickworker.models import Status, WorkerJob
from django_quickworker.outages import DATABASE_UNAVAILABLE

if TYPE_CHECKING:
    from django_quickworker.supervisor import Supervisor

logger = logging.getLogger(__name__)

CANCELLED_WHILE_RUNNING = "Cancelled by an operator while running."
CANCEL_CHECK_INTERVAL = 1.0  # seconds between looks for running jobs an operator cancelled


def renew_leases(workers: list[str], running_ids: set[int], lease: timedelta) -> set[int]:
    """Extend the leases of the jobs these live workers are running, by the database's
    clock; return those of ``running_ids`` (the jobs they are known to run) that are no
    longer leased to them: rescued or ended elsewhere, so their runs must stop."""
    ours = WorkerJob.objects.running().filter(worker__in=workers)
    db = database(router.db_for_write(WorkerJob))
    renewed = db.retrying(lambda: ours.renew(db.later(lease)))
    if renewed >= len(running_ids):  # nearly always: nothing lost, and no second query
        return set()
    return running_ids - set(ours.filter(pk__in=running_ids).values_list("pk", flat=True))


def release_job(job: WorkerJob) -> bool:
    """Put an interrupted run back in the queue, unfinished (``states.released``); return
    whether it was released."""
    return WorkerJob.objects.fenced(job).release() == 1


def end_jobs_of(worker: str, reason: str) -> int:
    """Finish the jobs still running under ``worker``, which has died: cancelled if an
    operator asked for it, otherwise failed (and maybe retried) with ``reason``."""
    jobs = list(WorkerJob.objects.running().filter(worker=worker))
    for job in jobs:
        logger.warning("job ended id=%s type=%s worker=%s: %s", job.pk, job.type, worker, reason)
        finish_safely(job, _ended(job, reason))
        announce_finished(job)
    return len(jobs)


async def settle_jobs_of(supervisor: "Supervisor", child: Child) -> None:
    """Put back or end whatever job ``child``, which has exited, left running: back in the
    queue when runworkers is stopping now, otherwise ended as its exit says."""
    code = child.process.exitcode
    assert code is not None
    if supervisor.stopping_now:
        released = await supervisor.in_db(release_jobs_of, child.worker)
        if released:
            logger.info("put %d interrupted job(s) of %s back in the queue", released, child.worker)
    else:
        # Even a clean exit can leave a job behind (the job called sys.exit()).
        reason = child.end_reason or describe_exit(code)
        if code != 0:
            logger.warning("worker %s exited: %s", child.worker, reason)
        if await supervisor.in_db(end_jobs_of, child.worker, reason):
            supervisor.wakeups.wake()  # a retry may be due now


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
    for job in WorkerJob.objects.lease_expired(now):
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


# The parent's loops, on the supervisor's event loop; their database work runs on its
# database thread (Supervisor.in_db).


async def watch_cancellations(supervisor: "Supervisor") -> None:
    """End the workers whose running job an operator cancelled (in the admin)."""
    while True:
        await asyncio.sleep(CANCEL_CHECK_INTERVAL)
        busy = {c.worker: c for c in supervisor.children.values() if c.job_id and not c.ended_at}
        if busy:
            for worker_name, job_id in await supervisor.in_db(jobs_asked_to_cancel, list(busy)):
                child = busy[worker_name]
                if child.job_id == job_id and not child.ended_at:  # still that job
                    supervisor.end_job(child, "Cancelled by an operator.", "cancelled")


async def maintain_leases(supervisor: "Supervisor") -> None:
    """Renew our children's leases, stop the runs whose lease was lost, then rescue the
    jobs of hosts that stopped renewing theirs.

    In that order, every time: a host back from a partition or an outage renews its own
    leases before it rescues anyone's. And after being cut off for longer than a lease,
    it rescues nothing for one more lease: the other hosts, cut off too, may not have
    reconnected and renewed theirs yet.
    """
    lease = conf.lease.total_seconds()
    rescue_from = 0.0  # monotonic time from which this host may rescue
    next_cron_check = time.monotonic() + lease
    while True:
        await supervisor.in_db(processes.heartbeat)
        now = time.monotonic()
        if now - supervisor.last_heartbeat > lease:
            logger.warning(
                "cut off from the database for %.1fs; rescuing no other host's jobs for "
                "%gs, while they reconnect",
                now - supervisor.last_heartbeat,
                lease,
            )
            rescue_from = now + lease
        supervisor.last_heartbeat = now
        await renew_leases_of_children(supervisor)
        if time.monotonic() >= rescue_from:
            rescued = await supervisor.in_db(rescue_expired_jobs)
            if rescued:
                if supervisor.metrics:
                    supervisor.metrics.rescued.inc(rescued)
                supervisor.wakeups.wake()
        if time.monotonic() >= next_cron_check:  # see ensure_cron_jobs: once per lease
            await supervisor.in_db(ensure_cron_jobs)
            next_cron_check = time.monotonic() + lease
        await asyncio.sleep(lease / 4)


async def renew_leases_of_children(supervisor: "Supervisor") -> None:
    """Renew the leases of our children's jobs; end the runs whose row is no longer
    leased to them (rescued or ended elsewhere): their outcome could not land anyway."""
    children = list(supervisor.children.values())
    if not children:
        return
    running = {child.job_id for child in children if child.job_id is not None}
    workers = [child.worker for child in children]
    lost = await supervisor.in_db(renew_leases, workers, running, conf.lease)
    for child in list(supervisor.children.values()):
        # Still that job (it may have finished, or the child exited, meanwhile).
        if child.job_id in lost and not child.ended_at:
            reason = "Its lease was lost: another host rescued or ended the job."
            supervisor.end_job(child, reason, "lease_lost")
