"""Many hosts on one database: no runworkers ever acts on another one's rows.

Every runworkers of these tests runs on this machine, so all of them share one hostname, as
containers with host networking do; what tells them apart is the token each draws at start.
A twin with the same host *and* PID cannot be started, so it is forged: a running row under
the name that a worker with the PID of one of ours would have carried without the token.
"""

import json
import os
import signal
import socket
from datetime import timedelta

import pytest
from django.utils import timezone

from demo.models import Execution
from django_quickworker import processes, submit_job
from django_quickworker.models import Status, WorkerJob, WorkerProcess
from django_quickworker.processes import worker_id
from tests.conftest import Runworkers, StartRunworkers, wait_until

pytestmark = pytest.mark.heavy  # several runworkers, outages: see conftest

LEASE = 3.0  # seconds: rescue and renewal within a few seconds
SETTINGS = {"QUICKWORKER": json.dumps({"LEASE": LEASE, "POLL_INTERVAL": 0.1})}


def test_names_carry_the_token_of_their_runworkers_start() -> None:
    host = socket.gethostname()
    assert worker_id(2, "c0ffee42", 4711) == f"{host}:4711:c0ffee42:2"
    assert processes.process_name() == f"{host}:{os.getpid()}:{processes.START_TOKEN}"
    assert len(processes.START_TOKEN) == 8


def running_job(queue: str, seconds: float) -> WorkerJob:
    data = {"seconds": seconds}
    job = submit_job(tag=f"hosts:{queue}", type="demo.record", queue=queue, data=data)
    return reached(job, Status.RUNNING)


def reached(job: WorkerJob, status: str, timeout: float = 30.0) -> WorkerJob:
    """``job``, refreshed once it has ``status``; fail after ``timeout`` seconds."""

    def has_status() -> bool:
        job.refresh_from_db()
        return job.status == status

    wait_until(has_status, timeout=timeout, what=f"job {job.pk} to be {status}")
    return job


def token_of(runner: Runworkers) -> str:
    """The start token of ``runner``, from its WorkerProcess row (host:pid:token)."""
    name = wait_until(
        lambda: (
            WorkerProcess.objects.filter(name__contains=f":{runner.process.pid}:")
            .values_list("name", flat=True)
            .first()
        ),
        what="the runworkers row",
    )
    return name.rsplit(":", 1)[1]


def test_two_runworkers_with_one_hostname_act_only_on_their_own_rows(
    start_runworkers: StartRunworkers,
) -> None:
    first = start_runworkers("--workers", "1", "--queues", "first", env=SETTINGS)
    second = start_runworkers("--workers", "1", "--queues", "second", env=SETTINGS)
    first_job, second_job = running_job("first", 30), running_job("second", 2 * LEASE)
    second_worker = second_job.worker
    assert first_job.worker.split(":")[0] == second_job.worker.split(":")[0]  # one hostname
    assert token_of(first) != token_of(second)
    assert first_job.worker.split(":")[2] == token_of(first)

    # Cancelling the first host's job ends its worker, and nothing on the second host.
    second_pids = [child.pid for child in second.children()]
    WorkerJob.objects.filter(pk=first_job.pk).request_cancel("test")
    reached(first_job, Status.CANCELLED)
    # The second job outlives its lease twice over: only its own host's renewals keep it.
    finished = reached(second_job, Status.SUCCEEDED, 60)
    assert finished.attempt == 1 and finished.worker == second_worker
    assert Execution.objects.filter(job_id=second_job.pk).count() == 1
    assert [child.pid for child in second.children()] == second_pids


def test_a_twin_with_the_same_host_and_pid_is_neither_renewed_nor_ended_by_us(
    start_runworkers: StartRunworkers,
) -> None:
    runner = start_runworkers("--workers", "1", "--queues", "ours", env=SETTINGS)
    ours = running_job("ours", 2 * LEASE)
    pid = int(ours.worker.split(":")[1])
    host = socket.gethostname()
    # The rows of dead twins: the same host and PID, without a token or with another one.
    twins = [f"{host}:{pid}:0", worker_id(0, "deadbeef", pid)]
    now = timezone.now()
    forged = [
        WorkerJob.objects.create(
            tag=f"twin:{name}",
            type="demo.record",
            queue="elsewhere",
            status=Status.RUNNING,
            worker=name,
            attempt=1,
            due=now,
            started=now,
            lease_expires=now + timedelta(seconds=1),
            # An operator cancelled a twin's job: not ours to end.
            cancel_requested=now if cancelled else None,
        )
        for name, cancelled in zip(twins, [True, False], strict=True)
    ]
    # Rescued when their leases ran out, as a dead host's jobs.
    cancelled_twin, failed_twin = forged
    assert reached(cancelled_twin, Status.CANCELLED, LEASE + 10).worker == twins[0]
    assert "stopped renewing" in str(reached(failed_twin, Status.FAILED, LEASE + 10).result)
    finished = reached(ours, Status.SUCCEEDED, 60)
    assert finished.attempt == 1
    # The twins' cancels ended no worker of ours.
    assert [child.pid for child in runner.children()] == [pid]


def test_a_killed_worker_ends_only_its_own_job(start_runworkers: StartRunworkers) -> None:
    start_runworkers("--workers", "1", "--queues", "first", env=SETTINGS)
    start_runworkers("--workers", "1", "--queues", "second", env=SETTINGS)
    first_job, second_job = running_job("first", 30), running_job("second", 2 * LEASE)
    second_worker = second_job.worker
    os.kill(int(first_job.worker.split(":")[1]), signal.SIGKILL)
    ended = reached(first_job, Status.FAILED)
    assert "SIGKILL" in str(ended.result)
    finished = reached(second_job, Status.SUCCEEDED, 60)
    assert finished.attempt == 1 and finished.worker == second_worker
