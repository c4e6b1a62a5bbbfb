"""Wake-ups: an idle pool starts jobs when they arrive or fall due, not when it polls.

Every test runs the workers with POLL_INTERVAL at 30 s, so that only a wake-up (the
database's watch for new jobs, or the parent's look at the next due time) can explain a job
started within a few seconds.
"""

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from django_quickworker import submit_job
from django_quickworker.databases import database
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


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
def test_mariadbs_watch_slows_down_while_no_jobs_arrive_and_speeds_up_after_one() -> None:
    """An idle host asks for the highest job id a few times a second, not eight; once a job
    arrives, it looks again soon."""
    db = database(connection.alias)
    looks: list[float] = []
    woken: list[float] = []
    thread = ThreadPoolExecutor(1)  # as the supervisor's database thread: its own connection

    async def in_db(function: Callable[[], Any]) -> Any:
        looks.append(time.monotonic())
        return await asyncio.get_running_loop().run_in_executor(thread, function)

    async def watch() -> None:
        task = asyncio.create_task(
            db.watch_for_jobs(lambda _: woken.append(time.monotonic()), in_db)
        )
        await asyncio.sleep(2.5)
        idle_looks = len(looks)
        await asyncio.get_running_loop().run_in_executor(
            thread, lambda: submit_job(tag="watched", type="demo.add")
        )
        while not woken and time.monotonic() - looks[0] < 10:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        task.cancel()
        assert idle_looks <= 10, looks  # at 120 ms, 21

    try:
        asyncio.run(watch())
    finally:
        thread.submit(lambda: connection.close()).result()
        thread.shutdown()
    assert len(woken) == 1
    found = max(n for n, at in enumerate(looks) if at <= woken[0])
    before, after = looks[found] - looks[found - 1], looks[found + 1] - looks[found]
    assert after < before, looks
