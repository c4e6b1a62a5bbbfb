"""Hosts whose clocks are off by ten minutes, made with Debian's faketime (libfaketime).

Leases and due times are compared with the database server's clock, so a runworkers whose
own clock is fast neither rescues the live jobs of others nor runs delayed jobs early, and one
whose clock is slow still runs due jobs on time and keeps its jobs' leases. On SQLite the
database's clock is the host's own (it runs in the process), so these run on server databases.
"""

import time
from datetime import timedelta
from itertools import pairwise

import pytest
from django.utils import timezone

from demo.models import Execution
from django_quickworker import submit_job
from django_quickworker.models import Status, WorkerJob
from tests.conftest import StartRunworkers, wait_until
from tests.rig import ready, skewed
from tests.test_hosts import LEASE, SETTINGS, reached, running_job

pytestmark = [pytest.mark.postgresql, pytest.mark.mysql, pytest.mark.heavy]

SKEW = 600  # seconds


def host_clock_offset(job: WorkerJob) -> float:
    """How far the clock of the host that ran ``job`` was off: it wrote ``started`` by its
    own clock, within seconds of ``due`` by the true one (the tests check that too)."""
    assert job.started is not None
    return (job.started - job.due).total_seconds()


def test_a_fast_host_rescues_no_live_job_and_runs_no_delayed_job_early(
    start_runworkers: StartRunworkers,
) -> None:
    start_runworkers("--workers", "1", "--queues", "true", env=SETTINGS)
    fast = start_runworkers("--workers", "1", "--queues", "fast", env={**SETTINGS, **skewed(SKEW)})
    ready(fast)
    live = running_job("true", 2 * LEASE)  # outlives its lease twice: renewed by its host
    live_worker = live.worker
    delay = 3.0
    delayed = submit_job(tag="delayed", type="demo.record", queue="fast", delay=delay)

    while timezone.now() < delayed.due - timedelta(seconds=0.3):
        delayed.refresh_from_db()
        assert delayed.status == Status.SCHEDULED, "the fast host ran a delayed job early"
        time.sleep(0.05)
    reached(delayed, Status.SUCCEEDED, delay + 10)
    assert host_clock_offset(delayed) > SKEW - 60  # the fast host did run it, 10 minutes fast

    reached(live, Status.SUCCEEDED, 60)
    assert (live.attempt, live.worker) == (1, live_worker)
    assert Execution.objects.filter(job_id=live.pk).count() == 1
    assert "rescued" not in fast.output


def test_a_slow_host_runs_due_jobs_on_time_and_keeps_its_leases(
    start_runworkers: StartRunworkers,
) -> None:
    start_runworkers("--workers", "1", "--queues", "true", env=SETTINGS)
    slow = start_runworkers("--workers", "2", "--queues", "slow", env={**SETTINGS, **skewed(-SKEW)})
    ready(slow)
    submitted = time.monotonic()
    due_now = submit_job(tag="now", type="demo.record", queue="slow", data={"seconds": 2 * LEASE})
    # On time means seconds, not the 10 minutes the slow clock would make it; the bound is
    # generous because the machine running the suite may be busy.
    on_time = SKEW / 10
    reached(due_now, Status.RUNNING, on_time)
    assert time.monotonic() - submitted < on_time
    assert host_clock_offset(due_now) < -(SKEW - 60)  # the slow host runs it, 10 minutes slow

    delayed = submit_job(tag="soon", type="demo.record", queue="slow", delay=2)
    reached(delayed, Status.SUCCEEDED, on_time)
    assert timezone.now() - delayed.due < timedelta(seconds=on_time)  # by the true clock
    # Its lease, on the database's clock, is renewed by the slow host and not rescued by the
    # true one, however far in the past the slow host's own clock puts it.
    reached(due_now, Status.SUCCEEDED, 60)
    assert due_now.attempt == 1
    assert Execution.objects.filter(job_id=due_now.pk).count() == 1


def test_hosts_ten_minutes_fast_and_slow_run_each_tick_of_a_cron_job_once(
    start_runworkers: StartRunworkers,
) -> None:
    hosts = [
        start_runworkers("--workers", "1", "--queues", "ticks", env={**SETTINGS, **skewed(seconds)})
        for seconds in (SKEW, -SKEW)
    ]
    for host in hosts:
        ready(host)
    submit_job(tag="ticks", type="demo.record", queue="ticks", cron="*/1 * * * * *")
    runs = WorkerJob.objects.filter(tag="ticks").exclude(status=Status.SCHEDULED)
    wait_until(lambda: runs.count() >= 6, timeout=30, what="six ticks")
    started = time.monotonic()
    time.sleep(4)
    window = time.monotonic() - started
    ticks = sorted(runs.values_list("due", flat=True))
    assert len(ticks) == len(set(ticks))  # no tick ran twice
    # About one run a second: neither a burst (the next tick counted from a slow clock) nor
    # a stall (from a fast one).
    assert all(later - earlier >= timedelta(seconds=1) for earlier, later in pairwise(ticks))
    assert len(ticks) >= 6 + window - 3
    workers = {worker.split(":")[2] for worker in runs.values_list("worker", flat=True)}
    assert len(workers) == 2  # both hosts took ticks
