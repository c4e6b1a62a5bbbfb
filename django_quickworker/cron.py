"""Cron jobs: exactly one pending row per schedule, and a next occurrence after every run.

A cron job declared in code (``@job(..., cron=...)``) lives under the tag ``cron:<type>``
(QuickDapp's convention). Its pending row is a row of that tag with a ``cron_schedule``;
retries of a failed run are one-off rows without one, so they never fork the chain.
"""

import logging
from datetime import datetime

from django.db import router, transaction

from django_quickworker import processes
from django_quickworker.databases import database
from django_quickworker.models import WorkerJob, WorkerJobQuerySet
from django_quickworker.registry import CRON_TAG_PREFIX, declared_cron_job, registry
from django_quickworker.submit import (
    build_job,
    copy_of,
    insert,
    lock_tags,
    next_tick,
)

logger = logging.getLogger(__name__)

REMOVED_FROM_CODE = "Cron job no longer declared in code"
SCHEDULE_CHANGED = "Cron schedule changed in code"


def pending_cron_rows(tags: list[str]) -> WorkerJobQuerySet:
    """The scheduled rows that carry the cron chains of ``tags``."""
    return WorkerJob.objects.scheduled().filter(tag__in=tags).exclude(cron_schedule="")


def running_cron_rows(tags: list[str]) -> WorkerJobQuerySet:
    """The running rows of the cron chains of ``tags``."""
    return WorkerJob.objects.running().filter(tag__in=tags).exclude(cron_schedule="")


def ensure_cron_jobs() -> None:
    """Give each cron job that a live runworkers declares exactly one pending row, on the
    schedule of the newest declaring it; cancel the rows of those nobody declares.

    Run at start and then once per LEASE by every runworkers, so that during a deploy old
    and new hosts agree (the newest's schedule wins, a job removed from the new code stops
    once no old host runs) and a chain that lost its pending row (an operator cancelled it)
    goes on. Safe to run from many at once: the tags are locked first (PostgreSQL advisory
    locks; SQLite's single writer), so only one of them writes each row.
    """
    schedules = processes.cron_schedules()
    alias = router.db_for_write(WorkerJob)
    with transaction.atomic(using=alias):
        existing = WorkerJob.objects.scheduled().filter(tag__startswith=CRON_TAG_PREFIX)
        wanted = {CRON_TAG_PREFIX + name: schedule for name, schedule in schedules.items()}
        tags = sorted(set(wanted) | set(existing.values_list("tag", flat=True)))
        lock_tags(tags, alias)
        for row in pending_cron_rows(tags):
            schedule = wanted.get(row.tag)
            if schedule is None or row.tag != CRON_TAG_PREFIX + row.type:
                logger.info("cancelling cron job %s: %s", row.tag, REMOVED_FROM_CODE.lower())
                WorkerJob.objects.filter(pk=row.pk).cancel(REMOVED_FROM_CODE)
            elif schedule != row.cron_schedule and row.type in registry:
                logger.info("rescheduling cron job %s: %s", row.tag, SCHEDULE_CHANGED.lower())
                WorkerJob.objects.filter(pk=row.pk).cancel(SCHEDULE_CHANGED)
        # A chain whose run is in progress gets its next row when that run finishes.
        live = pending_cron_rows(list(wanted)) | running_cron_rows(list(wanted))
        present = set(live.values_list("tag", flat=True))
        for tag, schedule in wanted.items():
            name = tag.removeprefix(CRON_TAG_PREFIX)
            if tag not in present and name in registry:  # else the hosts that know it will
                _start_chain(tag, name, schedule, alias)


def _start_chain(tag: str, type_name: str, schedule: str, alias: str) -> None:
    """Write the first pending row of a cron chain; on any error, log it and go on: one
    cron job whose next occurrence cannot be computed must not stop the others."""
    try:
        with transaction.atomic(using=alias):
            now = database(alias).current_time()  # due times are compared with its clock
            insert([build_job({"tag": tag, "type": type_name, "cron": schedule}, now)], alias)
    except Exception:
        logger.error("cron job %s (%r) cannot be scheduled", tag, schedule, exc_info=True)


def is_declared_in_code(job: WorkerJob) -> bool:
    """Whether ``job`` is a run of a cron job declared in code (rather than submitted)."""
    job_type = declared_cron_job(job.tag)
    return job_type is not None and job_type.name == job.type


def schedule_next_occurrence(job: WorkerJob, now: datetime) -> WorkerJob | None:
    """Write the next run of cron ``job``, unless its chain already has a pending row.

    The next tick follows the run's ``due`` (not its finish), but never lies in the past:
    ticks missed while nothing ran are skipped, so downtime gives one run, not a storm.
    Call inside the transaction that finishes ``job``.
    """
    alias = router.db_for_write(WorkerJob)
    lock_tags([job.tag], alias)
    if pending_cron_rows([job.tag]).exists():
        return None
    after = max(job.due, now)
    next_run = copy_of(
        job, due=next_tick(job.cron_schedule, after), cron_schedule=job.cron_schedule
    )
    insert([next_run], alias)
    return next_run


def missing_cron_jobs() -> list[str]:
    """Tags of the cron jobs declared in code (here or by a live runworkers) whose chain has
    no pending or running row: nothing would run them until a runworkers schedules them."""
    tags = [CRON_TAG_PREFIX + name for name in processes.cron_schedules()]
    live = pending_cron_rows(tags) | running_cron_rows(tags)
    return sorted(set(tags) - set(live.values_list("tag", flat=True)))
