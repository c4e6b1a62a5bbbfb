"""The queue at a glance: what ``manage.py quickworker status`` prints and the admin shows
above the job list.

Every query here stays cheap on a table of millions of rows: counts stop at
``COUNT_LIMIT`` rows (past it, PostgreSQL's planner estimates the rest), and the rest reads
the few scheduled, running or recently failed rows through their indexes.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import router
from django.db.models import Count, Min, QuerySet

from django_quickworker.conf import conf
from django_quickworker.cron import missing_cron_jobs
from django_quickworker.databases import database
from django_quickworker.models import Status, WorkerJob, WorkerProcess
from django_quickworker.schedule import format_duration, wall_time

COUNT_LIMIT = 10_000  # rows counted exactly; past this, an estimate or a lower bound
MAX_LATENCY = timedelta(minutes=5)  # a due job waiting longer than this means trouble
RECENT_FAILURES = timedelta(hours=1)


@dataclass(frozen=True)
class RowCount:
    """How many rows a query matches: exact up to a limit; past it, PostgreSQL's estimate
    (``is_estimate``) or, on other databases, just "more than the limit"."""

    value: int
    is_exact: bool = True
    is_estimate: bool = False

    def __str__(self) -> str:
        if self.is_exact:
            return f"{self.value:,}"
        if self.is_estimate:
            return f"≈ {self.value:,}"
        return f"more than {self.value - 1:,}"


def count_rows(queryset: QuerySet[Any], limit: int = COUNT_LIMIT) -> RowCount:
    """Count ``queryset`` reading at most ``limit + 1`` rows, never the whole table."""
    counted = queryset.order_by()[: limit + 1].count()
    if counted <= limit:
        return RowCount(counted)
    estimate = database(queryset.db).estimate_rows(queryset)
    if estimate is None:
        return RowCount(limit + 1, is_exact=False)
    return RowCount(max(estimate, limit + 1), is_exact=False, is_estimate=True)


@dataclass(frozen=True)
class ProcessInfo:
    """A live ``runworkers`` parent."""

    name: str
    workers: int
    queues: list[str]  # empty: all queues
    version: str
    started: datetime
    heartbeat: datetime

    @classmethod
    def of(cls, process: WorkerProcess) -> "ProcessInfo":
        queues = [queue for queue in process.queues.split(",") if queue]
        return cls(
            process.name,
            process.workers,
            queues,
            process.version,
            process.started,
            process.heartbeat,
        )


@dataclass(frozen=True)
class Backlog:
    """Scheduled jobs of one type that no live runworkers runs (a rolling deploy, a typo)."""

    type: str
    count: int
    oldest_due: datetime


@dataclass(frozen=True)
class Summary:
    """What an operator checks first: is the queue moving, and is anyone serving it?"""

    checked_at: datetime
    counts: dict[str, RowCount]  # every status, in lifecycle order
    due: RowCount  # scheduled jobs whose due time has come
    oldest_due: datetime | None
    failed_recently: RowCount  # failed within RECENT_FAILURES
    expired_leases: RowCount  # running jobs whose lease nobody renewed or rescued
    processes: list[ProcessInfo]  # live runworkers parents
    max_latency: timedelta
    unknown_types: list[Backlog] = field(default_factory=list)  # jobs nobody alive can run
    missing_cron_jobs: list[str] = field(default_factory=list)  # declared, with no pending row

    @property
    def latency(self) -> timedelta | None:
        """How long the oldest due job has waited (queue latency)."""
        return None if self.oldest_due is None else max(self.checked_at - self.oldest_due, ZERO)

    @property
    def problems(self) -> list[str]:
        """Why the queue is unhealthy, one sentence each; empty when it is healthy."""
        problems = []
        if not self.processes:
            problems.append(
                f"No runworkers process is alive (none sent a heartbeat in the last "
                f"{format_duration(conf.lease)})."
            )
        if self.expired_leases.value:
            problems.append(
                f"{self.expired_leases} running job(s) have an expired lease that no "
                "runworkers renewed or rescued."
            )
        latency = self.latency
        if latency is not None and latency > self.max_latency:
            problems.append(
                f"The oldest due job has waited {format_duration(latency)}, longer than "
                f"{format_duration(self.max_latency)}."
            )
        for backlog in self.unknown_types:
            problems.append(
                f"{backlog.count} scheduled job(s) of type {backlog.type!r} (the oldest due "
                f"{_moment(backlog.oldest_due)}) wait for a runworkers that knows the type; "
                "no live one registers it."
            )
        for tag in self.missing_cron_jobs:
            problems.append(
                f"Cron job {tag} is declared in code but has no pending run; each runworkers "
                "schedules it again within a LEASE."
            )
        return problems

    @property
    def is_healthy(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data, for scripts and monitoring."""
        latency = self.latency
        return {
            "healthy": self.is_healthy,
            "problems": self.problems,
            "checked_at": self.checked_at.isoformat(),
            "counts": {status: count.value for status, count in self.counts.items()},
            "exact_counts": all(count.is_exact for count in self.counts.values()),
            "due": self.due.value,
            "oldest_due": None if self.oldest_due is None else self.oldest_due.isoformat(),
            "latency_seconds": None if latency is None else round(latency.total_seconds(), 3),
            "max_latency_seconds": self.max_latency.total_seconds(),
            "failed_last_hour": self.failed_recently.value,
            "expired_leases": self.expired_leases.value,
            "unknown_types": [
                {"type": b.type, "count": b.count, "oldest_due": b.oldest_due.isoformat()}
                for b in self.unknown_types
            ],
            "missing_cron_jobs": self.missing_cron_jobs,
            "processes": [
                {
                    "name": process.name,
                    "workers": process.workers,
                    "queues": process.queues,
                    "version": process.version,
                    "started": process.started.isoformat(),
                    "heartbeat": process.heartbeat.isoformat(),
                    "heartbeat_age_seconds": round(
                        (self.checked_at - process.heartbeat).total_seconds(), 3
                    ),
                }
                for process in self.processes
            ],
        }

    def as_text(self) -> str:
        """The summary as a few aligned lines for a terminal."""
        state = "healthy" if self.is_healthy else "UNHEALTHY"
        checked = _moment(self.checked_at)
        width = max(len(str(count)) for count in self.counts.values())
        lines = [f"django-quickworker queue at {checked}: {state}", "", "Jobs"]
        for status, count in self.counts.items():
            lines.append(f"  {status:<10} {count!s:>{width}}{self._detail(status)}")
        lines += ["", f"Workers: {len(self.processes)} runworkers process(es) alive"]
        for process in self.processes:
            age = format_duration(self.checked_at - process.heartbeat)
            queues = ", ".join(process.queues) or "all queues"
            lines.append(
                f"  {process.name}  {process.workers} worker(s), {queues}, "
                f"version {process.version}, last heartbeat {age} ago"
            )
        if self.problems:
            lines += ["", "Problems"] + [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)

    def _detail(self, status: str) -> str:
        if status == Status.SCHEDULED:
            latency = self.latency
            if latency is None:
                return "  (none due)"
            return f"  ({self.due} due, the oldest waiting {format_duration(latency)})"
        if status == Status.RUNNING and self.expired_leases.value:
            return f"  ({self.expired_leases} with an expired lease)"
        if status == Status.FAILED:
            return f"  ({self.failed_recently} in the last hour)"
        return ""


ZERO = timedelta(0)


def _moment(moment: datetime) -> str:
    """A time for people, in the current time zone (naive times already are: USE_TZ off)."""
    return wall_time(moment).strftime("%Y-%m-%d %H:%M:%S %Z").rstrip()


def summarize(*, max_latency: timedelta = MAX_LATENCY, now: datetime | None = None) -> Summary:
    """Read the queue's health: counts, latency, recent failures, stuck jobs, live workers."""
    alias = router.db_for_read(WorkerJob)
    now = now or database(alias).current_time()  # leases run on the database's clock
    jobs = WorkerJob.objects.using(alias)
    due = jobs.due(now)
    # A lease renewed by a live worker never runs out, and every runworkers rescues expired
    # ones each quarter lease: one that ran out half a lease ago was left behind.
    expired = jobs.running().filter(lease_expires__lt=now - conf.lease / 2)
    alive = WorkerProcess.objects.using(jobs.db).alive().order_by("name")
    return Summary(
        checked_at=now,
        counts={status: count_rows(jobs.filter(status=status)) for status in Status.values},
        due=count_rows(due),
        oldest_due=oldest_due(due),
        failed_recently=count_rows(jobs.failed().filter(finished__gte=now - RECENT_FAILURES)),
        expired_leases=count_rows(expired),
        processes=[ProcessInfo.of(process) for process in alive],
        max_latency=max_latency,
        unknown_types=unknown_types(jobs, list(alive)),
        # With no runworkers alive, nothing could have scheduled them: that problem says it.
        missing_cron_jobs=missing_cron_jobs() if alive else [],
    )


def unknown_types(jobs: QuerySet[WorkerJob], alive: list[WorkerProcess]) -> list[Backlog]:
    """Scheduled jobs, by type, that none of the ``alive`` runworkers registers."""
    # A runworkers that lists no types predates the column: it may run anything.
    if not alive or not all(process.types for process in alive):
        return []
    known = {name for process in alive for name in process.types}
    waiting = jobs.filter(status=Status.SCHEDULED).exclude(type__in=known)
    rows = waiting.order_by("type").values("type").annotate(count=Count("id"), oldest=Min("due"))
    return [Backlog(row["type"], row["count"], row["oldest"]) for row in rows]


def oldest_due(due: QuerySet[WorkerJob]) -> datetime | None:
    """The earliest due time among ``due`` jobs.

    Grouped by priority, so PostgreSQL reads it from the claim index: a plain MIN(due)
    tempts the planner to walk a due index from its oldest, long finished, rows.
    """
    per_priority = due.order_by().values("priority").annotate(oldest=Min("due"))
    return min((row["oldest"] for row in per_priority), default=None)
