"""USE_TZ = False end to end: real runworkers processes and the tests both store naive times,
in a TIME_ZONE that is not UTC (half an hour off it, so that no mix-up of local and UTC
times can pass), and delayed jobs, cron chains and delayed retries run when they are due."""

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connections
from django.test.utils import override_settings
from django.utils import timezone

from demo.models import Execution
from django_quickworker import submit_job
from django_quickworker.models import Status, WorkerJob
from tests.conftest import DATABASE_CLOCK_STEP, Runworkers, StartRunworkers, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

ZONE = "Asia/Kolkata"  # UTC+05:30 all year: no daylight saving time to step over
# A claim's ``started`` is the host's time read just before the claim statement, in which
# the database compares ``due`` with its own (later) time.
CLAIM_READ = timedelta(seconds=0.1)
NAIVE = {"USE_TZ": "False", "TIME_ZONE": ZONE, "QUICKWORKER": '{"POLL_INTERVAL": 0.1}'}


@pytest.fixture(autouse=True)
def naive_time(transactional_db: None) -> Iterator[None]:
    """USE_TZ off in the test process too; the connection reopens with the new settings."""
    connections.close_all()
    with override_settings(USE_TZ=False, TIME_ZONE=ZONE):
        yield
        connections.close_all()
    connections.close_all()


def local_now() -> datetime:
    """The wall-clock time in ZONE, naive: what every datetime column should hold."""
    return datetime.now(ZoneInfo(ZONE)).replace(tzinfo=None)


def start(start_runworkers: StartRunworkers) -> Runworkers:
    return start_runworkers("--workers", "1", env=NAIVE)


def finished(job: WorkerJob) -> bool:
    job.refresh_from_db()
    return job.finished is not None


def wait_finished(job: WorkerJob, runner: Runworkers, timeout: float = 30) -> WorkerJob:
    try:
        wait_until(lambda: finished(job), timeout, f"job {job.pk} to finish")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{runner.output}") from None
    return job


def test_a_delayed_job_runs_once_due_and_not_before(start_runworkers: StartRunworkers) -> None:
    # The pool is up before the job is submitted, so it is watching while the job is not due.
    runner = start(start_runworkers)
    wait_until(runner.children, 30, "a worker to start")
    job = submit_job(tag="later", type="demo.record", delay=3)
    assert timezone.is_naive(job.due)
    assert abs(job.due - timedelta(seconds=3) - local_now()) < timedelta(seconds=2)

    done = wait_finished(job, runner)

    assert done.status == Status.SUCCEEDED, runner.output
    [execution] = Execution.objects.filter(job_id=job.pk)
    assert (
        timezone.is_naive(execution.started) and execution.started >= job.due - DATABASE_CLOCK_STEP
    )
    assert abs(execution.started - local_now()) < timedelta(seconds=30)


def test_a_cron_job_fires_once_per_tick_and_its_chain_goes_on(
    start_runworkers: StartRunworkers,
) -> None:
    submit_job(tag="tick", type="demo.record", cron="*/2 * * * * *")
    runner = start(start_runworkers)

    def runs() -> list[WorkerJob]:
        return list(WorkerJob.objects.filter(tag="tick", status=Status.SUCCEEDED).order_by("due"))

    try:
        wait_until(lambda: len(runs()) >= 3, 60, "three runs of the cron job")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{runner.output}") from None

    done = runs()
    dues = [run.due for run in done]
    assert all(timezone.is_naive(due) for due in dues)
    assert all(due.second % 2 == 0 and due.microsecond == 0 for due in dues), dues
    assert len(set(dues)) == len(dues), f"a tick ran twice: {dues}"
    for run in done:
        [execution] = Execution.objects.filter(job_id=run.pk)
        assert execution.started >= run.due - DATABASE_CLOCK_STEP, (execution.started, run.due)
    [following] = WorkerJob.objects.filter(tag="tick", status=Status.SCHEDULED)
    assert following.due > dues[-1] and following.cron_schedule == "*/2 * * * * *"


@pytest.mark.parametrize(
    ("type_name", "data", "options"),
    [
        ("demo.fail", {}, {"max_attempts": 2, "auto_reschedule_on_failure_delay": 2}),
        ("demo.misbehave", {"retry_delay": 2}, {}),
    ],
    ids=["retry policy", "RetryJob(delay=)"],
)
def test_a_retry_with_a_delay_comes_back_when_due(
    start_runworkers: StartRunworkers, type_name: str, data: Any, options: Any
) -> None:
    first = submit_job(tag="again", type=type_name, data=data, **options)
    runner = start(start_runworkers)
    wait_finished(first, runner)

    retry = wait_until(
        lambda: WorkerJob.objects.filter(rescheduled_from=first).first(), what="the retry row"
    )
    assert first.status == Status.FAILED and first.finished is not None
    assert timezone.is_naive(retry.due)
    assert retry.due - first.finished == timedelta(seconds=2)
    wait_finished(retry, runner)
    assert retry.started is not None and retry.started >= retry.due - CLAIM_READ
    assert retry.attempt == first.attempt + 1 == 2
    assert abs(retry.finished - local_now()) < timedelta(seconds=30)
