"""The queue: one ``WorkerJob`` row per job, from scheduled to finished."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from django.conf import settings
from django.db import models, router, transaction
from django.db.models import BooleanField, Expression, Q
from django.db.models.expressions import RawSQL
from django.db.models.sql import UpdateQuery
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from django_quickworker.conf import conf
from django_quickworker.databases.indexes import PartialIndex
from django_quickworker.registry import registry
from django_quickworker.states import (
    FINISHED_STATUSES,
    STATUS_MATCHES_TIMESTAMPS,
    Status,
    cancelled_before_running,
    fence,
    released,
)


class Backoff(models.TextChoices):
    FIXED = "fixed"
    EXPONENTIAL = "exponential"


CLAIMABLE_INDEX = "quickworker_claimable"
PENDING_TAG_INDEX = "quickworker_pending_tag"


class WorkerJobQuerySet(models.QuerySet["WorkerJob"]):
    def scheduled(self) -> "WorkerJobQuerySet":
        """Jobs waiting to be claimed, due or not (QuickDapp's "pending")."""
        return self.filter(status=Status.SCHEDULED)

    def due(self, now: datetime | None = None) -> "WorkerJobQuerySet":
        return self.scheduled().filter(due__lte=now or timezone.now())

    def running(self) -> "WorkerJobQuerySet":
        return self.filter(status=Status.RUNNING)

    def finished(self) -> "WorkerJobQuerySet":
        return self.filter(status__in=FINISHED_STATUSES)

    def succeeded(self) -> "WorkerJobQuerySet":
        return self.filter(status=Status.SUCCEEDED)

    def failed(self) -> "WorkerJobQuerySet":
        return self.filter(status=Status.FAILED)

    def cancelled(self) -> "WorkerJobQuerySet":
        return self.filter(status=Status.CANCELLED)

    # The changes of state (see states.py) that the parent and workers make with the ORM.

    def fenced(self, job: "WorkerJob") -> "WorkerJobQuerySet":
        """``job``'s row while it is still running under the claim that ``job`` holds."""
        return self.filter(**fence(job))

    def lease_expired(self, before: datetime) -> "WorkerJobQuerySet":
        """Running jobs whose lease ran out before ``before``: their host stopped renewing."""
        return self.running().filter(lease_expires__lt=before)

    def renew(self, lease_expires: Expression) -> int:
        """Extend the leases of the running jobs among these; return how many."""
        return self.running().update(lease_expires=lease_expires, updated_at=timezone.now())

    def release(self) -> int:
        """Put the running jobs among these back in the queue, unfinished; return how many."""
        return self.running().update(**released(timezone.now()))

    def cancel(self, reason: str) -> int:
        """Cancel the scheduled jobs among these with ``reason``; return how many."""
        return self.scheduled().update(**cancelled_before_running(reason, timezone.now()))

    def cancel_statement(self, reason: str, now: datetime) -> tuple[str, tuple[object, ...]]:
        """The SQL and parameters of ``cancel`` at ``now``, for a database that sends it
        together with other statements."""
        # The status written into the SQL, not bound: PostgreSQL plans a statement it has
        # prepared once for any values (a generic plan), which can use the partial index of
        # scheduled tags only if the statement names the status itself. With it bound, the
        # cancel read the status index's every scheduled row, on every replace.
        scheduled = self.filter(RawSQL(f"status = '{Status.SCHEDULED}'", [], BooleanField()))
        query = cast(UpdateQuery, scheduled.query.chain(UpdateQuery))
        query.add_update_values(cancelled_before_running(reason, now))
        return query.get_compiler(self.db).as_sql()

    # What an operator may do to which jobs: the admin's actions change these rows, and a
    # job's page offers an action where the job is among them.

    def retryable(self) -> "WorkerJobQuerySet":
        """Jobs an operator may retry: those that failed or were cancelled."""
        return self.filter(status__in=[Status.FAILED, Status.CANCELLED])

    def cancellable(self) -> "WorkerJobQuerySet":
        """Jobs an operator may cancel: scheduled, or running and not yet asked to stop."""
        return self.filter(
            Q(status=Status.SCHEDULED) | Q(status=Status.RUNNING, cancel_requested__isnull=True)
        )

    def run_now(self) -> int:
        """Make the scheduled jobs among these that are not due yet due now, and wake their
        workers; return how many."""
        from django_quickworker.submit import wake_workers  # submit imports this module

        now = timezone.now()
        alias = router.db_for_write(self.model)
        with transaction.atomic(using=alias):
            later = self.scheduled().filter(due__gt=now)
            queues = set(later.values_list("queue", flat=True).distinct())
            moved = later.update(due=now, updated_at=now)
            wake_workers(queues, alias)
        return moved

    def retry(self, limit: int) -> "Retries":
        """Resubmit, due now, the retryable jobs among these (at most ``limit``, oldest
        first) that have no retry waiting or running and whose type is still registered.

        The jobs are locked first (in id order, so that overlapping retries cannot deadlock;
        SQLite's write lock is taken at BEGIN), so that when two operators retry a job at
        once, the second finds the first one's retry waiting and makes none.
        """
        from django_quickworker.submit import resubmit  # submit imports this module

        now = timezone.now()
        with transaction.atomic(using=router.db_for_write(self.model)):
            # No joins (the admin's list selects the user): PostgreSQL refuses to lock the
            # nullable side of an outer join.
            rows = self.retryable().select_related(None).select_for_update().order_by("pk")
            candidates = list(rows[:limit])
            pending = set(
                WorkerJob.objects.filter(
                    rescheduled_from__in=[job.pk for job in candidates],
                    status__in=[Status.SCHEDULED, Status.RUNNING],
                ).values_list("rescheduled_from", flat=True)
            )
            fresh = [job for job in candidates if job.pk not in pending]
            written = [resubmit(job, due=now) for job in fresh if job.type in registry]
        over_limit = self.retryable().count() - limit if len(candidates) == limit else 0
        return Retries(
            written=written,
            already_pending=len(pending),
            unregistered=len(fresh) - len(written),
            over_limit=over_limit,
        )

    def request_cancel(self, reason: str) -> tuple[int, int]:
        """Cancel the scheduled jobs among these with ``reason`` and ask the running ones to
        stop (their runworkers ends them); return how many of each."""
        now = timezone.now()
        rows = self.cancellable()
        with transaction.atomic(using=router.db_for_write(self.model)):
            cancelled = rows.cancel(reason)
            asked = rows.running().update(cancel_requested=now, updated_at=now)
        return cancelled, asked


class WorkerJob(models.Model):
    """A background job: what to run, when, and how it went."""

    tag = models.CharField(_("tag"), max_length=255)
    type = models.CharField(_("type"), max_length=100)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,  # a job outlives its user; null marks a system job
        related_name="worker_jobs",
    )
    data = models.JSONField(_("data"), default=dict, blank=True)
    queue = models.CharField(_("queue"), max_length=100, default="default")
    priority = models.IntegerField(_("priority"), default=0, help_text=_("Higher runs first."))
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.SCHEDULED
    )
    due = models.DateTimeField(_("due"))
    started = models.DateTimeField(_("started"), null=True, blank=True)
    finished = models.DateTimeField(_("finished"), null=True, blank=True)
    success = models.BooleanField(_("success"), null=True, blank=True)
    result = models.JSONField(_("result"), null=True, blank=True)
    error_traceback = models.TextField(_("error traceback"), blank=True, default="")
    progress = models.JSONField(_("progress"), null=True, blank=True)
    attempt = models.PositiveIntegerField(
        _("attempt"), default=0, help_text=_("How many times this job has been started.")
    )
    max_attempts = models.PositiveIntegerField(_("max attempts"), default=1)
    timeout = models.DurationField(_("timeout"), null=True, blank=True)
    worker = models.CharField(
        _("worker"), max_length=255, blank=True, default="", help_text=_("host:pid:token:slot")
    )
    lease_expires = models.DateTimeField(_("lease expires"), null=True, blank=True)
    cancel_requested = models.DateTimeField(
        _("cancel requested"),
        null=True,
        blank=True,
        help_text=_("When an operator asked this running job to stop."),
    )
    cron_schedule = models.CharField(_("cron schedule"), max_length=100, blank=True, default="")
    auto_reschedule_on_failure = models.BooleanField(_("reschedule on failure"), default=False)
    auto_reschedule_on_failure_delay = models.DurationField(
        _("reschedule delay"), default=timedelta
    )
    retry_backoff = models.CharField(
        _("retry backoff"),
        max_length=11,
        choices=Backoff.choices,
        default=Backoff.FIXED,
        help_text=_("Fixed: every retry waits the reschedule delay. Exponential: it doubles."),
    )
    rescheduled_from = models.ForeignKey(
        "self",
        verbose_name=_("rescheduled from"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="rescheduled_as",
    )
    persistent = models.BooleanField(
        _("persistent"), default=False, help_text=_("Kept forever: cleanup never removes it.")
    )
    remove_delay = models.DurationField(
        _("remove delay"),
        null=True,
        blank=True,
        help_text=_("How long to keep the row after it finishes; empty for the default."),
    )
    remove_at = models.DateTimeField(_("remove at"), null=True, blank=True)
    trace_context = models.JSONField(
        _("trace context"),
        null=True,
        blank=True,
        help_text=_("The OpenTelemetry trace it was submitted in (W3C traceparent)."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = WorkerJobQuerySet.as_manager()

    class Meta:
        verbose_name = _("worker job")
        verbose_name_plural = _("worker jobs")
        indexes = [
            # The claim query's order, over the few rows that can still be claimed.
            PartialIndex(
                fields=["-priority", "due", "id"],
                condition=Q(status=Status.SCHEDULED),
                name=CLAIMABLE_INDEX,
            ),
            PartialIndex(
                fields=["remove_at"],
                condition=Q(remove_at__isnull=False),
                name="quickworker_removable",
            ),
            PartialIndex(
                fields=["tag"], condition=Q(status=Status.SCHEDULED), name=PENDING_TAG_INDEX
            ),
            # Behind the admin's filters, search, date hierarchy and summary; measured on a
            # million rows, each keeps its page in milliseconds (about 20 µs more per job).
            models.Index(fields=["status", "finished"], name="quickworker_status"),
            models.Index(fields=["due"], name="quickworker_due"),
            models.Index(fields=["tag"], opclasses=["varchar_pattern_ops"], name="quickworker_tag"),
            models.Index(fields=["type", "id"], name="quickworker_type"),
            models.Index(fields=["queue", "id"], name="quickworker_queue"),
            # Behind the metrics view's jobs per queue and status: each count reads at most
            # 10,001 index entries (40 ms a scrape on a million rows instead of 250).
            models.Index(fields=["status", "queue"], name="quickworker_status_queue"),
            PartialIndex(fields=["id"], condition=~Q(cron_schedule=""), name="quickworker_cron"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=STATUS_MATCHES_TIMESTAMPS, name="quickworker_status_matches_timestamps"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.pk} ({self.tag})"

    def retry_chain(self, limit: int) -> "list[WorkerJob]":
        """The runs linked to this one by ``rescheduled_from``, oldest first, this one among
        them; at most ``limit`` each way."""
        earlier: list[WorkerJob] = []
        current = self
        while current.rescheduled_from_id is not None and len(earlier) < limit:
            previous = WorkerJob.objects.filter(pk=current.rescheduled_from_id).first()
            if previous is None:  # removed by cleanup
                break
            earlier.insert(0, previous)
            current = previous
        later: list[WorkerJob] = []
        current = self
        while len(later) < limit:
            retries = list(WorkerJob.objects.filter(rescheduled_from=current).order_by("pk")[:2])
            if not retries:
                break
            later.extend(retries)  # more than one only when an operator also retried it
            current = retries[-1]
        return [*earlier, self, *later]

    def replacement(self) -> "WorkerJob | None":
        """The first job written under this one's tag once it was cancelled, or None: the
        job that replaced it, when a newer submission or schedule took its tag."""
        if self.status != Status.CANCELLED or self.finished is None:
            return None
        later = WorkerJob.objects.filter(tag=self.tag, pk__gt=self.pk)
        return later.filter(created_at__gte=self.finished).order_by("pk").first()


class WorkerProcessQuerySet(models.QuerySet["WorkerProcess"]):
    def alive(self) -> "WorkerProcessQuerySet":
        """Processes that sent a heartbeat within the last lease, by the database's clock."""
        from django_quickworker.databases import database  # its modules import this one

        return self.filter(heartbeat__gte=alive_since(database(self.db).current_time()))


class WorkerProcess(models.Model):
    """A running ``runworkers`` parent, so operators can see who serves the queue."""

    name = models.CharField(_("name"), max_length=255, unique=True, help_text=_("host:pid:token"))
    workers = models.PositiveIntegerField(_("workers"))
    queues = models.CharField(_("queues"), max_length=1000, blank=True, help_text=_("Empty: all."))
    version = models.CharField(_("version"), max_length=50)
    started = models.DateTimeField(_("started"))
    heartbeat = models.DateTimeField(_("last heartbeat"))
    # What its code declares, so that hosts running different versions during a deploy
    # agree on which jobs somebody can run and which cron jobs still exist.
    types = models.JSONField(
        _("job types"), default=list, blank=True, help_text=_("The job types it runs.")
    )
    crons = models.JSONField(
        _("cron jobs"),
        default=dict,
        blank=True,
        help_text=_("The cron jobs its code declares: job type to schedule."),
    )

    objects = WorkerProcessQuerySet.as_manager()

    class Meta:
        verbose_name = _("worker process")
        verbose_name_plural = _("worker processes")

    def __str__(self) -> str:
        return self.name

    def is_alive(self, now: datetime) -> bool:
        """Whether this process sent a heartbeat within the last lease."""
        return self.heartbeat >= alive_since(now)


def alive_since(now: datetime) -> datetime:
    """The oldest heartbeat of a process still alive at ``now``: one lease ago."""
    return now - conf.lease


@dataclass(frozen=True)
class Retries:
    """What ``WorkerJobQuerySet.retry`` wrote, and how many jobs it passed over and why."""

    written: list[WorkerJob]
    already_pending: int  # had a retry waiting or running
    unregistered: int  # of a type no running code registers
    over_limit: int  # past the limit


class WorkerTagLock(models.Model):
    """A row per tag (hashed) that submissions lock to serialize on that tag, on databases
    whose own locks outlive the transaction (MySQL's GET_LOCK); unused elsewhere."""

    key = models.BigIntegerField(primary_key=True)

    class Meta:
        verbose_name = _("tag lock")
        verbose_name_plural = _("tag locks")

    def __str__(self) -> str:
        return str(self.key)
