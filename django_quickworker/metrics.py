"""The queue as Prometheus gauges, read from the database at scrape time: jobs per status
and queue, how long the oldest due job of each queue has waited, running jobs whose lease
nobody renewed, the live ``runworkers`` parents, and jobs of types none of them runs.

Serve them with :func:`view` (``path("metrics/", metrics.view)``), or register
:class:`QueueCollector` with django-prometheus's registry. Needs ``prometheus_client``
(``django-quickworker[metrics]``).

Every query stays cheap on millions of rows: the queues are found by skipping through the
queue index, one seek per queue; counts stop at ``status.COUNT_LIMIT`` rows (past it,
PostgreSQL's planner estimates the rest, and other databases report the limit + 1 as a
lower bound); the oldest due job is read from the claim index.
"""

from collections.abc import Iterator
from datetime import datetime

from django.db import router
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from django_quickworker.conf import conf
from django_quickworker.models import Status, WorkerJob, WorkerJobQuerySet, WorkerProcess
from django_quickworker.overview import count_rows, oldest_due, unknown_types

MAX_QUEUES = 100  # queues reported; past this many, the rest are left out


class QueueCollector(Collector):
    """Collects the queue's gauges from the database each time it is scraped."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = timezone.now()
        jobs = WorkerJob.objects.using(router.db_for_read(WorkerJob))
        queues = queue_names(jobs)
        yield jobs_per_status(jobs, queues)
        yield oldest_due_age(jobs, queues, now)
        expired = GaugeMetricFamily(
            "quickworker_expired_lease_jobs",
            "Running jobs whose lease expired over half a lease ago: no runworkers renewed "
            "or rescued them.",
        )
        # As in status.summarize: a live parent renews or rescues each quarter lease.
        stale = jobs.running().filter(lease_expires__lt=now - conf.lease / 2)
        expired.add_metric([], count_rows(stale).value)
        yield expired
        alive = list(WorkerProcess.objects.using(jobs.db).alive().order_by("name"))
        yield from runworkers_gauges(alive)
        unknown = GaugeMetricFamily(
            "quickworker_unknown_type_jobs",
            "Scheduled jobs of a type that no live runworkers registers, by type.",
            labels=["type"],
        )
        for backlog in unknown_types(jobs, alive):
            unknown.add_metric([backlog.type], backlog.count)
        yield unknown


def queue_names(jobs: WorkerJobQuerySet) -> list[str]:
    """The queues that have rows, in order: one index seek each (a loose index scan)."""
    names: list[str] = []
    ordered = jobs.order_by("queue").values_list("queue", flat=True)
    name = ordered.first()
    while name is not None and len(names) < MAX_QUEUES:
        names.append(name)
        name = ordered.filter(queue__gt=name).first()
    return names


def jobs_per_status(jobs: WorkerJobQuerySet, queues: list[str]) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(
        "quickworker_queue_jobs",
        "Jobs per queue and status; past 10,000 an estimate (PostgreSQL) or 10,001.",
        labels=["queue", "status"],
    )
    for queue in queues:
        for status in Status.values:
            count = count_rows(jobs.filter(queue=queue, status=status))
            gauge.add_metric([queue, status], count.value)
    return gauge


def oldest_due_age(jobs: WorkerJobQuerySet, queues: list[str], now: datetime) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(
        "quickworker_queue_oldest_due_age_seconds",
        "How long the oldest due job of each queue has waited since its due time (0: none due).",
        labels=["queue"],
    )
    for queue in queues:
        oldest = oldest_due(jobs.due(now).filter(queue=queue))
        age = 0.0 if oldest is None else max((now - oldest).total_seconds(), 0.0)
        gauge.add_metric([queue], age)
    return gauge


def runworkers_gauges(alive: list[WorkerProcess]) -> Iterator[GaugeMetricFamily]:
    count = GaugeMetricFamily(
        "quickworker_runworkers_alive",
        "runworkers parents that sent a heartbeat within the last lease.",
    )
    count.add_metric([], len(alive))
    yield count
    heartbeat = GaugeMetricFamily(
        "quickworker_runworkers_heartbeat_timestamp_seconds",
        "When each live runworkers parent (by name) last sent a heartbeat, as a Unix time.",
        labels=["runworkers"],
    )
    for process in alive:
        heartbeat.add_metric([process.name], process.heartbeat.timestamp())
    yield heartbeat


def view(request: HttpRequest) -> HttpResponse:
    """Serve the queue's gauges in Prometheus's text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
