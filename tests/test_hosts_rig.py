"""The multi-host rig, whole hosts at a time: several runworkers against one database, each a
host of its own (its own start token), run a batch exactly once; a host killed outright loses
its jobs to the others' rescue within a lease and a few seconds, and nothing else; a rolling
restart keeps exactly one pending row per cron job."""

import os
import signal
import threading
import time
from collections import Counter

import pytest
from django.db import connection

from demo.models import Execution
from django_quickworker import submit_job, submit_jobs
from django_quickworker.models import Status, WorkerJob
from tests.conftest import StartRunworkers, wait_until
from tests.rig import ready
from tests.test_hosts import LEASE, SETTINGS, reached, running_job

pytestmark = [pytest.mark.postgresql, pytest.mark.mysql, pytest.mark.heavy]

JOBS = 3000


def test_three_hosts_of_two_workers_run_every_job_exactly_once(
    start_runworkers: StartRunworkers,
) -> None:
    jobs = submit_jobs([{"tag": f"rig:{i}", "type": "demo.record"} for i in range(JOBS)])
    hosts = [start_runworkers("--workers", "2", env=SETTINGS) for _ in range(3)]
    ids = [job.pk for job in jobs]
    wait_until(
        lambda: WorkerJob.objects.filter(pk__in=ids, status=Status.SUCCEEDED).count() == JOBS,
        timeout=240,
        what=f"{JOBS} jobs to succeed",
    )
    runs = Counter(Execution.objects.filter(job_id__in=ids).values_list("job_id", flat=True))
    assert set(runs) == set(ids) and set(runs.values()) == {1}
    assert WorkerJob.objects.filter(pk__in=ids).exclude(attempt=1).count() == 0
    tokens = {
        worker.split(":")[2] for worker in set(Execution.objects.values_list("worker", flat=True))
    }
    assert len(tokens) == len(hosts)  # each host ran some


def test_a_host_killed_outright_loses_its_jobs_to_the_others_within_a_lease(
    start_runworkers: StartRunworkers,
) -> None:
    doomed = start_runworkers("--workers", "2", "--queues", "work", env=SETTINGS)
    ready(doomed)
    victims = [
        submit_job(
            tag=f"victim:{i}",
            type="demo.record",
            queue="work",
            data={"seconds": 30},
            auto_reschedule_on_failure=True,
            max_attempts=2,
        )
        for i in range(2)
    ]
    for job in victims:
        reached(job, Status.RUNNING)
    survivor = start_runworkers("--workers", "3", "--queues", "work,own", env=SETTINGS)
    ready(survivor)
    own = running_job("own", 2 * LEASE)
    own_worker = own.worker

    os.killpg(doomed.process.pid, signal.SIGKILL)  # the parent and its children, at once
    killed = time.monotonic()
    for job in victims:
        rescued = reached(job, Status.FAILED, LEASE + 5)
        assert "stopped renewing its lease" in str(rescued.result)
    assert time.monotonic() - killed < LEASE + 5
    retrying = WorkerJob.objects.filter(rescheduled_from__in=victims, status=Status.RUNNING)
    wait_until(lambda: retrying.count() == len(victims), what="the retries to run elsewhere")
    retries = list(retrying)
    assert {retry.worker.split(":")[2] for retry in retries} == {own_worker.split(":")[2]}
    reached(own, Status.SUCCEEDED, 30)
    assert (own.attempt, own.worker) == (1, own_worker)


CRON_TAG = "cron:removeOldWorkerJobs"  # the built-in cron job, declared by every host


def test_a_rolling_restart_of_five_hosts_keeps_one_pending_row_per_cron_job(
    start_runworkers: StartRunworkers,
) -> None:
    hosts = [start_runworkers("--workers", "1", env=SETTINGS) for _ in range(5)]
    for host in hosts:
        ready(host)
    pending = WorkerJob.objects.scheduled().filter(tag=CRON_TAG)
    wait_until(pending.exists, what="the cron job's row")
    counts: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        try:
            while not stop.is_set():
                counts.append(pending.count())
                time.sleep(0.02)
        finally:
            connection.close()

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for index, host in enumerate(hosts):  # one at a time, as a deploy does
            host.send(signal.SIGTERM)
            assert host.wait() == 0
            hosts[index] = start_runworkers("--workers", "1", env=SETTINGS)
            ready(hosts[index])
    finally:
        stop.set()
        sampler.join()
    assert len(counts) > 100 and set(counts) == {1}, Counter(counts)
