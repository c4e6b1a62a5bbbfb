"""Cron jobs: exactly one pending row per schedule, and a next occurrence after every run.

A cron job declared in code (``@job(..., cron=...)``) lives under the tag ``cron:<type>``
(QuickDapp's convention). Its pending row is a row of that tag with a ``cron_schedule``;
retries of a failed run are one-off rows without one, so they never fork the chain.
"""

import logging
from datetime import datetime

from django.db import router, transaction

from django_quickworker.conf import conf
from django_quickworker.models import WorkerJob, WorkerJobQuerySet
from django_quickworker.registry import registry
from django_quickworker.schedule import next_cron_due
from django_quickworker.submit import RESUBMITTED_FIELDS, insert, lock_tags, submit_job

logger = logging.getLogger(__name__)

CRON_TAG_PREFIX = "cron:"
REMOVED_FROM_CODE = "Cron job no longer declared in code"
SCHEDULE_CHANGED = "Cron schedule changed in code"


def pending_cron_rows(tags: list[str]) -> WorkerJobQuerySet:
    """The scheduled rows that carry the cron chains of ``tags``."""
    return WorkerJob.objects.scheduled().filter(tag__in=tags).exclude(cron_schedule="")


def running_cron_rows(tags: list[str]) -> WorkerJobQuerySet:
    """The running rows of the cron chains of ``tags``."""
    return WorkerJob.objects.running().filter(tag__in=tags).exclude(cron_schedule="")


def ensure_cron_jobs() -> None:
    """Give each cron job declared in code exactly one pending row; cancel the undeclared.

    Safe to run from many ``runworkers`` at once: the tags are locked first (PostgreSQL
    advisory locks; SQLite's single writer), so only one of them writes each row.
    """
    declared = {CRON_TAG_PREFIX + job_type.name: job_type for job_type in registry if job_type.cron}
    alias = router.db_for_write(WorkerJob)
    with transaction.atomic(using=alias):
        existing = WorkerJob.objects.scheduled().filter(tag__startswith=CRON_TAG_PREFIX)
        tags = sorted(set(declared) | set(existing.values_list("tag", flat=True)))
        lock_tags(tags, alias)
        for row in pending_cron_rows(tags):
            job_type = declared.get(row.tag)
            if job_type is None or job_type.name != row.type:
                logger.info("cancelling cron job %s: %s", row.tag, REMOVED_FROM_CODE.lower())
                WorkerJob.objects.filter(pk=row.pk).cancel(REMOVED_FROM_CODE)
            elif job_type.cron != row.cron_schedule:
                logger.info("rescheduling cron job %s: %s", row.tag, SCHEDULE_CHANGED.lower())
                WorkerJob.objects.filter(pk=row.pk).cancel(SCHEDULE_CHANGED)
        # A chain whose run is in progress gets its next row when that run finishes.
        live = pending_cron_rows(list(declared)) | running_cron_rows(list(declared))
        present = set(live.values_list("tag", flat=True))
        for tag, job_type in declared.items():
            if tag not in present:
                submit_job(
                    tag=tag, type=job_type.name, cron=job_type.cron, on_duplicate_tag="allow"
                )


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
    next_run = WorkerJob(
        due=next_cron_due(job.cron_schedule, after, conf.cron_time_zone),
        cron_schedule=job.cron_schedule,
        **{name: getattr(job, name) for name in RESUBMITTED_FIELDS if name != "attempt"},
    )
    insert([next_run], alias)
    return next_run
