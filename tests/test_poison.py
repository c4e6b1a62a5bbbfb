"""No poison job: whatever breaks while a job's outcome is computed or written fails that job,
and neither the worker nor the supervisor's loops stop (real runworkers processes).

The poison used here is a row whose remove_delay was stored before values were bounded
(10,000 years): finishing it computes a removal time past the year 9999 (OverflowError).
"""

import asyncio
from datetime import timedelta

import pytest
from django.utils import timezone

from demo.models import Execution
from django_quickworker import submit_job
from django_quickworker import supervisor as supervisor_module
from django_quickworker.models import Status, WorkerJob, WorkerProcess
from django_quickworker.supervisor import Supervisor, keep_running
from tests.conftest import StartRunworkers, wait_until

POISON = timedelta(days=365 * 10_000)
SHORT_LEASE = {"QUICKWORKER": '{"POLL_INTERVAL": 0.1, "LEASE": 1}'}
OVERFLOW = "Recording the job's outcome failed: OverflowError"


def poisoned(tag: str, **options: object) -> WorkerJob:
    job = submit_job(tag=tag, type="demo.record", **options)  # type: ignore[arg-type]
    WorkerJob.objects.filter(pk=job.pk).update(remove_delay=POISON)
    return job


def stored(job: WorkerJob) -> WorkerJob:
    return WorkerJob.objects.get(pk=job.pk)


def error_of(job: WorkerJob) -> str:
    result = stored(job).result
    assert isinstance(result, dict), result
    return str(result["error"])


def expire(job: WorkerJob, worker: str) -> None:
    past = timezone.now() - timedelta(minutes=5)
    WorkerJob.objects.filter(pk=job.pk).update(
        status=Status.RUNNING, started=past, worker=worker, attempt=1, lease_expires=past
    )


def test_a_job_whose_finish_raises_fails_and_its_worker_takes_the_next(
    start_runworkers: StartRunworkers,
) -> None:
    poison = poisoned("poison", priority=1)
    good = submit_job(tag="good", type="demo.record")
    runner = start_runworkers("--workers", "1", "--burst")
    assert runner.wait() == 0, runner.output
    assert stored(poison).status == Status.FAILED
    assert error_of(poison).startswith(OVERFLOW)
    assert "OverflowError" in stored(poison).error_traceback
    assert stored(good).status == Status.SUCCEEDED
    workers = set(Execution.objects.values_list("worker", flat=True))
    assert len(workers) == 1, "the same worker ran both jobs"
    assert "failing it instead" in runner.output


def test_a_job_whose_worker_died_and_whose_failure_raises_still_ends_failed(
    start_runworkers: StartRunworkers,
) -> None:
    dying = submit_job(tag="dying", type="demo.record", data={"exit": 3}, priority=1)
    WorkerJob.objects.filter(pk=dying.pk).update(remove_delay=POISON)
    runner = start_runworkers("--workers", "1", env=SHORT_LEASE)
    wait_until(lambda: stored(dying).status == Status.FAILED, what="the dead worker's job")
    assert error_of(dying).startswith(OVERFLOW)
    later = submit_job(tag="later", type="demo.add", data={"a": 1, "b": 2})
    wait_until(lambda: stored(later).status == Status.SUCCEEDED, what="the restarted slot")
    assert runner.process.poll() is None


def test_a_rescue_that_raises_fails_that_row_and_the_lease_loop_goes_on(
    start_runworkers: StartRunworkers,
) -> None:
    poison = poisoned("poison-rescue")
    expire(poison, "gone:1:0")
    other = submit_job(tag="other", type="demo.record")
    expire(other, "gone:2:0")
    runner = start_runworkers("--workers", "1", env=SHORT_LEASE)
    wait_until(lambda: stored(poison).status == Status.FAILED, what="the poison row's end")
    assert error_of(poison).startswith(OVERFLOW)
    wait_until(lambda: stored(other).status == Status.FAILED, what="the other rescue")
    assert "stopped renewing its lease" in error_of(other)
    # The loop lives on: it keeps sending heartbeats and rescues a row expired later.
    first = WorkerProcess.objects.get().heartbeat
    wait_until(lambda: WorkerProcess.objects.get().heartbeat > first, what="a later heartbeat")
    late = submit_job(tag="late", type="demo.record")
    expire(late, "gone:3:0")
    wait_until(lambda: stored(late).status == Status.FAILED, what="a later rescue")
    assert runner.process.poll() is None


@pytest.fixture
def quick_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor_module, "TASK_RESTART_DELAY", 0.01)


async def start_supervisor() -> Supervisor:
    supervisor = Supervisor(workers=0)
    supervisor.loop = asyncio.get_running_loop()
    supervisor.done = asyncio.Event()
    supervisor.exits_in_progress = 0
    return supervisor


def test_a_supervisor_task_that_raises_is_restarted(
    quick_restarts: None, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    async def flaky() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise ValueError("boom")
        await asyncio.sleep(3600)

    async def main() -> Supervisor:
        supervisor = await start_supervisor()
        task = asyncio.get_running_loop().create_task(keep_running(supervisor, "flaky", flaky))
        await asyncio.sleep(0.3)
        assert not task.done()
        task.cancel()
        return supervisor

    supervisor = asyncio.run(main())
    assert len(calls) == 3
    assert supervisor.exit_code == 0
    errors = [record for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 2 and errors[0].exc_info is not None
    assert "supervisor task flaky failed; restarting it" in errors[0].getMessage()


def test_a_supervisor_task_that_keeps_failing_stops_runworkers_with_status_1(
    quick_restarts: None, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> None:
        raise RuntimeError("cannot go on")

    async def main() -> Supervisor:
        supervisor = await start_supervisor()
        await asyncio.wait_for(keep_running(supervisor, "broken", broken), timeout=5)
        assert supervisor.done.is_set()
        return supervisor

    supervisor = asyncio.run(main())
    assert supervisor.exit_code == 1
    assert supervisor.stopping_now
    assert any(record.levelname == "CRITICAL" for record in caplog.records)
