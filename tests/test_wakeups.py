"""Wake-ups: an idle pool starts jobs when they arrive or fall due, not when it polls.

Every test runs the workers with POLL_INTERVAL at 30 s, so that only a wake-up (the
database's watch for new jobs, or the parent's look at the next due time) can explain a job
started within a few seconds.
"""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from django_quickworker import submit_job
from django_quickworker.models import Status, WorkerJob
from tests.conftest import Runworkers, StartRunworkers, wait_until

SLOW_POLL = {"QUICKWORKER": '{"POLL_INTERVAL": 30}'}


def idle_pool(start_runworkers: StartRunworkers, workers: int = 2) -> Runworkers:
    runner = start_runworkers("--workers", str(workers), "--log-level", "debug", env=SLOW_POLL)
    # Up, not just spawned: Django's start-up in a child may take seconds on a busy machine,
    # and a job found by a worker's first claim proves nothing.
    wait_until(lambda: runner.output.count(" ready") == workers, 60, f"{workers} workers ready")
    time.sleep(1)  # every worker idle, waiting on its parent
    return runner


def succeeded(job: WorkerJob) -> bool:
    return WorkerJob.objects.get(pk=job.pk).status == Status.SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_an_idle_pool_starts_a_job_submitted_from_another_process_at_once(
    start_runworkers: StartRunworkers,
) -> None:
    runner = idle_pool(start_runworkers)
    job = submit_job(tag="woken", type="demo.add", data={"a": 1, "b": 2})
    submitted = time.monotonic()

    wait_until(lambda: succeeded(job), 20, "the job")
    assert time.monotonic() - submitted < 5, runner.output


@pytest.mark.django_db(transaction=True)
def test_an_idle_pool_starts_a_job_when_it_falls_due(start_runworkers: StartRunworkers) -> None:
    runner = idle_pool(start_runworkers)
    due = timezone.now() + timedelta(seconds=2)
    job = submit_job(tag="later", type="demo.add", data={"a": 1, "b": 2}, due=due)

    wait_until(lambda: succeeded(job), 20, "the job")
    started = WorkerJob.objects.get(pk=job.pk).started
    assert started is not None and started >= due - timedelta(milliseconds=2)
    assert started - due < timedelta(seconds=3), runner.output


@pytest.mark.django_db(transaction=True)
def test_a_retry_starts_when_its_backoff_ends(start_runworkers: StartRunworkers) -> None:
    runner = idle_pool(start_runworkers, workers=1)
    first = submit_job(
        tag="flaky",
        type="demo.fail",
        auto_reschedule_on_failure=True,
        auto_reschedule_on_failure_delay=2,
        retry_backoff="fixed",
        max_attempts=2,
    )

    retry = wait_until(
        lambda: WorkerJob.objects.filter(rescheduled_from=first, started__isnull=False).first(),
        20,
        "the retry to start",
    )
    assert retry.started is not None
    assert retry.started - retry.due < timedelta(seconds=3), runner.output
