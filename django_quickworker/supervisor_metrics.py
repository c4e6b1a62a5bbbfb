"""What the ``runworkers`` parent counts, for Prometheus: every job start and finish its
workers report over IPC, the workers' states, restarts and relay drops.

Nothing here reads the database: the parent already hears all of it. Needs
``prometheus_client`` (``django-quickworker[metrics]``).
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from django_quickworker.protocol import JobStarted

if TYPE_CHECKING:
    from django_quickworker.supervisor import Supervisor

# Jobs run from milliseconds to hours; queue waits too, when a backlog builds up.
SECONDS_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, float("inf"))

#: How one attempt of a job ended, as the ``outcome`` label says it.
OUTCOMES = ("succeeded", "failed", "timed_out", "cancelled", "lease_lost", "crashed")


@dataclass
class RunningJob:
    type: str
    queue: str
    started_at: float  # time.monotonic()
    ended_as: str = "crashed"  # the outcome if its worker exits before finishing it


class SupervisorMetrics:
    """The parent's counters and histograms, fed by the supervisor as messages arrive."""

    def __init__(self, supervisor: "Supervisor") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.running: dict[int, RunningJob] = {}  # by worker slot
        labels = ["type", "queue"]
        self.started = Counter(
            "quickworker_jobs_started",
            "Job attempts started, by type and queue.",
            labels,
            registry=self.registry,
        )
        self.retried = Counter(
            "quickworker_jobs_retried",
            "Job attempts started after the first (retries), by type and queue.",
            labels,
            registry=self.registry,
        )
        self.finished = Counter(
            "quickworker_jobs",
            "Job attempts ended, by type, queue and outcome "
            "(succeeded, failed, timed_out, cancelled, lease_lost, crashed).",
            [*labels, "outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "quickworker_job_duration_seconds",
            "How long job attempts ran, by type.",
            ["type"],
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.wait = Histogram(
            "quickworker_job_queue_wait_seconds",
            "How long jobs waited from their due time until a worker started them, by type.",
            ["type"],
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.restarts = Counter(
            "quickworker_worker_restarts",
            "Worker processes started again after one exited, by reason "
            "(crashed, ended: the parent ended it for a timeout or a cancel, exited).",
            ["reason"],
            registry=self.registry,
        )
        self.rescued = Counter(
            "quickworker_jobs_rescued",
            "Running jobs of dead hosts (expired leases) that this parent rescued.",
            registry=self.registry,
        )
        self.registry.register(SupervisorStateCollector(supervisor))
        ProcessCollector(registry=self.registry)

    def job_started(self, slot: int, started: JobStarted) -> None:
        job_type, queue = started.type, started.queue
        self.running[slot] = RunningJob(job_type, queue, time.monotonic())
        self.started.labels(job_type, queue).inc()
        if started.attempt > 1:
            self.retried.labels(job_type, queue).inc()
        self.wait.labels(job_type).observe(max(started.wait, 0.0))

    def job_finished(self, slot: int, success: bool) -> None:
        self._end(slot, "succeeded" if success else "failed")

    def job_ending(self, slot: int, outcome: str) -> None:
        """The parent is ending the job of ``slot`` (``timed_out``, ``cancelled``,
        ``lease_lost``)."""
        if slot in self.running:
            self.running[slot].ended_as = outcome

    def worker_exited(self, slot: int) -> None:
        """The worker of ``slot`` is gone: whatever job it was running ended with it."""
        if slot in self.running:
            self._end(slot, self.running[slot].ended_as)

    def worker_restarting(self, end_reason: str | None, code: int) -> None:
        reason = "ended" if end_reason else "crashed" if code != 0 else "exited"
        self.restarts.labels(reason).inc()

    def _end(self, slot: int, outcome: str) -> None:
        job = self.running.pop(slot, None)
        if job is None:
            return
        self.finished.labels(job.type, job.queue, outcome).inc()
        self.duration.labels(job.type).observe(time.monotonic() - job.started_at)


class SupervisorStateCollector(Collector):
    """Gauges read from the supervisor at scrape time: its workers and its relay."""

    def __init__(self, supervisor: "Supervisor") -> None:
        self.supervisor = supervisor

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        supervisor = self.supervisor
        children = list(supervisor.children.values())
        workers = GaugeMetricFamily(
            "quickworker_workers",
            "Worker processes of this parent, by state (busy, idle, restarting).",
            labels=["state"],
        )
        busy = sum(child.job_id is not None for child in children)
        workers.add_metric(["busy"], busy)
        workers.add_metric(["idle"], len(children) - busy)
        workers.add_metric(["restarting"], len(supervisor.restart_at))
        yield workers
        relay = supervisor.relay
        dropped = CounterMetricFamily(
            "quickworker_relay_dropped_messages",
            "Live messages the relay dropped: its queue was full, or the channel layer failed.",
            labels=["reason"],
        )
        dropped.add_metric(["queue_full"], relay.dropped)
        dropped.add_metric(["send_failed"], relay.failures)
        yield dropped
        queued = GaugeMetricFamily(
            "quickworker_relay_queued_messages",
            "Live messages waiting in the relay for the channel layer.",
        )
        queued.add_metric([], relay.queue.qsize())
        yield queued
