"""``@task`` functions run by real ``runworkers`` processes, read back with get_result."""

import signal
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from demo import tasks
from django_quickworker import submit_job
from django_quickworker.models import WorkerJob
from django_quickworker.tasks.framework import TaskError, TaskResult, TaskResultStatus, task
from django_quickworker.tasks.results import TaskInterrupted
from tests.conftest import CLAIM_IN_FLIGHT, STARTUP_WAIT, StartRunworkers, wait_until

FAST = {"QUICKWORKER": '{"POLL_INTERVAL": 0.1}'}

pytestmark = pytest.mark.django_db(transaction=True)


@task
def undiscovered() -> None:
    """A task no worker imports: its module is neither an app's tasks.py nor in MODULES."""


def finished(result: TaskResult, timeout: float = STARTUP_WAIT) -> TaskResult:
    """``result``, refreshed until it has finished."""

    def refreshed() -> bool:
        result.refresh()
        return result.is_finished

    wait_until(refreshed, timeout, f"task result {result.id} to finish")
    return result


def failed_with(result: TaskResult) -> TaskError:
    """The one error of ``result``, once it has finished, as it must: FAILED."""
    finished(result)
    assert result.status == TaskResultStatus.FAILED
    (error,) = result.errors
    return error


def test_sync_and_async_tasks_succeed_with_their_return_values(
    start_runworkers: StartRunworkers,
) -> None:
    added = tasks.add.enqueue(2, 3)
    awaited = tasks.async_add.enqueue(a=4, b=5)
    echoed = tasks.echo.enqueue((1, 2), key="value")
    runner = start_runworkers("--workers", "2", "--burst")
    assert runner.wait() == 0, runner.output
    expected: list[tuple[TaskResult, Any]] = [
        (added, 5),
        (awaited, 9),
        (echoed, {"args": [[1, 2]], "kwargs": {"key": "value"}}),
    ]
    for result, value in expected:
        fetched = tasks.add.get_backend().get_result(result.id)
        assert (fetched.status, fetched.return_value) == (TaskResultStatus.SUCCESSFUL, value)
        assert fetched.attempts == 1
        assert fetched.worker_ids == [WorkerJob.objects.get(pk=result.id).worker]
        assert fetched.enqueued_at and fetched.started_at and fetched.finished_at
        assert fetched.enqueued_at <= fetched.started_at <= fetched.finished_at
        assert fetched.last_attempted_at == fetched.started_at
        assert fetched.errors == []


def test_a_failing_task_reads_failed_with_its_exception_and_traceback(
    start_runworkers: StartRunworkers,
) -> None:
    result = tasks.fail.enqueue("on purpose")
    start_runworkers("--workers", "1", env=FAST)
    error = failed_with(result)
    assert error.exception_class is ValueError
    assert "demo fail: on purpose" in error.traceback
    assert 'tasks.py", line' in error.traceback
    with pytest.raises(ValueError, match="failed"):
        result.return_value  # noqa: B018


def test_statuses_go_ready_running_successful(start_runworkers: StartRunworkers) -> None:
    result = tasks.count_to.enqueue(40)  # about two seconds
    assert result.status == TaskResultStatus.READY
    start_runworkers("--workers", "1", env=FAST)

    def running() -> bool:
        result.refresh()
        return result.status == TaskResultStatus.RUNNING

    wait_until(running, STARTUP_WAIT, "the task to start")
    assert result.started_at is not None and result.finished_at is None
    assert finished(result).status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 40


def test_progress_is_stored_on_the_row(start_runworkers: StartRunworkers) -> None:
    result = tasks.count_to.enqueue(3)
    start_runworkers("--workers", "1", env=FAST)
    finished(result)
    progress = WorkerJob.objects.get(pk=result.id).progress
    assert progress == {"current": 3, "total": 3, "message": "step 3 of 3"}


def test_higher_priority_runs_first(start_runworkers: StartRunworkers) -> None:
    results = [tasks.add.using(priority=priority).enqueue(priority, 0) for priority in (-5, 50, 0)]
    runner = start_runworkers("--workers", "1", "--burst")
    assert runner.wait() == 0, runner.output
    rows = WorkerJob.objects.filter(pk__in=[result.id for result in results]).order_by("started")
    assert [row.priority for row in rows] == [50, 0, -5]


def test_run_after_defers_the_run(start_runworkers: StartRunworkers) -> None:
    # The worker has run a task before this one is enqueued: it would run at once, undeferred.
    start_runworkers("--workers", "1", env=FAST)
    finished(tasks.add.enqueue(0, 0))
    run_after = timezone.now() + timedelta(seconds=2)
    result = tasks.add.using(run_after=run_after).enqueue(1, 1)
    started = finished(result).started_at
    assert started is not None and started >= run_after - CLAIM_IN_FLIGHT


def test_workers_run_only_the_queues_they_serve(start_runworkers: StartRunworkers) -> None:
    default = tasks.add.enqueue(1, 2)
    other = tasks.echo.enqueue("elsewhere")  # queue "other"
    runner = start_runworkers("--workers", "1", "--burst", "--queues", "default")
    assert runner.wait() == 0, runner.output
    default.refresh()
    other.refresh()
    assert (default.status, other.status) == (TaskResultStatus.SUCCESSFUL, TaskResultStatus.READY)


def test_retries_keep_one_result_and_the_context_counts_attempts(
    start_runworkers: StartRunworkers,
) -> None:
    result = tasks.fail_until.enqueue(3)  # alias "retrying": MAX_ATTEMPTS 3, no delay
    start_runworkers("--workers", "1", env=FAST)
    wait_until(
        lambda: WorkerJob.objects.filter(status="succeeded").exists(), STARTUP_WAIT, "the 3rd run"
    )
    finished(result)
    assert (result.status, result.return_value, result.attempts) == ("SUCCESSFUL", 3, 3)
    assert [error.exception_class for error in result.errors] == [RuntimeError, RuntimeError]
    assert "not yet: attempt 1" in result.errors[0].traceback
    assert len(result.worker_ids) == 3
    assert result.started_at is not None and result.last_attempted_at is not None
    assert result.started_at < result.last_attempted_at


def test_a_pending_retry_reads_ready_with_the_earlier_error(
    start_runworkers: StartRunworkers,
) -> None:
    result = tasks.fail_once_then_wait.enqueue("first try")  # alias "patient": retry in 1 h
    start_runworkers("--workers", "1", env=FAST)
    wait_until(lambda: WorkerJob.objects.filter(rescheduled_from=result.id).exists(), STARTUP_WAIT)
    result.refresh()
    assert result.status == TaskResultStatus.READY
    assert [error.exception_class for error in result.errors] == [RuntimeError]
    assert result.attempts == 1 and result.finished_at is None


def test_the_context_gives_the_result_id_and_attempt(start_runworkers: StartRunworkers) -> None:
    result = tasks.whoami.enqueue()
    start_runworkers("--workers", "1", env=FAST)
    assert finished(result).return_value == {"id": result.id, "attempt": 1}


def test_a_timed_out_task_fails_as_interrupted(start_runworkers: StartRunworkers) -> None:
    result = tasks.sleep.enqueue(30)  # alias "limited": TIMEOUT 1
    start_runworkers("--workers", "1", env=FAST)
    error = failed_with(result)
    assert error.exception_class is TaskInterrupted
    assert "timed out after 1s" in error.traceback


def test_tasks_and_jobs_share_one_pool(start_runworkers: StartRunworkers) -> None:
    job = submit_job(tag="job", type="demo.add", data={"a": 1, "b": 2})
    result = tasks.add.enqueue(1, 2)
    runner = start_runworkers("--workers", "1", "--burst")
    assert runner.wait() == 0, runner.output
    job.refresh_from_db()
    result.refresh()
    assert (job.result, result.return_value) == ({"sum": 3}, 3)
    assert "demo.tasks.add" in runner.output  # the banner lists the task among the job types


def test_signals_are_sent_in_the_worker_with_the_frameworks_logging(
    start_runworkers: StartRunworkers,
) -> None:
    ok = tasks.add.enqueue(1, 2)
    bad = tasks.fail.enqueue("logged")
    runner = start_runworkers("--workers", "1", "--burst", env={"TASKS_LOG_LEVEL": "INFO"})
    assert runner.wait() == 0, runner.output
    for line in [
        f"Task id={ok.id} path=demo.tasks.add state=RUNNING",
        f"Task id={ok.id} path=demo.tasks.add state=SUCCESSFUL",
        f"Task id={bad.id} path=demo.tasks.fail state=FAILED",
    ]:
        assert line in runner.output
    assert "ValueError: demo fail: logged" in runner.output  # logged with its exception


def test_a_task_no_worker_knows_waits_while_the_rest_run(start_runworkers: StartRunworkers) -> None:
    waiting = undiscovered.enqueue()
    known = tasks.add.enqueue(1, 2)
    runner = start_runworkers("--workers", "1", "--burst")
    assert runner.wait() == 0, runner.output
    waiting.refresh()
    known.refresh()
    assert (waiting.status, known.status) == (TaskResultStatus.READY, TaskResultStatus.SUCCESSFUL)


def test_a_task_whose_worker_dies_fails_as_interrupted(start_runworkers: StartRunworkers) -> None:
    result = tasks.count_to.enqueue(200)  # about ten seconds
    runner = start_runworkers("--workers", "1", env=FAST)

    def running() -> bool:
        result.refresh()
        return result.status == TaskResultStatus.RUNNING

    wait_until(running, STARTUP_WAIT, "the task to start")
    (child,) = wait_until(runner.children, STARTUP_WAIT, "the worker process")
    child.send_signal(signal.SIGKILL)
    error = failed_with(result)
    assert error.exception_class is TaskInterrupted
    assert "SIGKILL" in error.traceback, error.traceback
