"""End to end: real ``manage.py runworkers`` processes on the test database."""

import os
import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from demo.models import Execution
from django_quickworker import submit_job, submit_jobs
from django_quickworker.models import Status, WorkerJob
from tests.conftest import StartRunworkers, database_url, wait_until

FAST_POLL = {"QUICKWORKER": '{"POLL_INTERVAL": 0.1}'}


def status_of(job: WorkerJob) -> str:
    job.refresh_from_db()
    return job.status


def error_of(job: WorkerJob) -> str:
    assert isinstance(job.result, dict), job.result
    return str(job.result["error"])


def running_pid(job: WorkerJob) -> int:
    """The pid of the worker running ``job``, from its host:pid:slot name."""
    wait_until(lambda: status_of(job) == Status.RUNNING, what=f"job {job.pk} to start")
    return int(job.worker.split(":")[1])


@pytest.mark.heavy
def test_every_job_runs_exactly_once(start_runworkers: StartRunworkers) -> None:
    jobs = submit_jobs([{"tag": f"once:{i}", "type": "demo.record"} for i in range(1000)])
    runner = start_runworkers("--workers", "4", "--burst")
    assert runner.wait(timeout=180) == 0, runner.output
    assert WorkerJob.objects.succeeded().count() == 1000
    executed = list(Execution.objects.values_list("job_id", flat=True))
    assert sorted(executed) == sorted(job.pk for job in jobs)
    workers = set(WorkerJob.objects.values_list("worker", flat=True))
    assert len(workers) >= 2, "the jobs were not shared between workers"


def test_banner_and_burst_exit(start_runworkers: StartRunworkers) -> None:
    runner = start_runworkers("--workers", "2", "--burst", "--queues", "default,mail")
    assert runner.wait() == 0, runner.output
    banner = runner.output
    assert "django-quickworker" in banner
    assert "workers:       2" in banner
    assert "queues:        default, mail" in banner
    types_line = next(line for line in banner.splitlines() if "job types:" in line)
    demo_types = [
        "add",
        "asyncSleep",
        "countdown",
        "fail",
        "firstLine",
        "misbehave",
        "noop",
        "record",
    ]
    # The test project's @task functions are job types too, named after their module path.
    task_names = ["add", "async_add", "count_to", "echo", "fail", "fail_once_then_wait"]
    task_names += ["fail_until", "noop", "sleep", "whoami"]
    expected = [f"demo.{name}" for name in demo_types]
    expected += [f"demo.tasks.{name}" for name in task_names] + ["removeOldWorkerJobs"]
    assert types_line.split(":", 1)[1].strip().split(", ") == expected
    assert "channel layer:" in banner


def test_only_the_given_queues_are_served(start_runworkers: StartRunworkers) -> None:
    mail = submit_job(tag="q:mail", type="demo.add", data={"a": 1, "b": 1}, queue="mail")
    other = submit_job(tag="q:other", type="demo.add", data={"a": 1, "b": 1}, queue="other")
    runner = start_runworkers("--burst", "--queues", "mail")
    assert runner.wait() == 0, runner.output
    assert status_of(mail) == Status.SUCCEEDED
    assert status_of(other) == Status.SCHEDULED


def test_an_idle_pool_picks_up_new_jobs(start_runworkers: StartRunworkers) -> None:
    runner = start_runworkers("--workers", "2", env=FAST_POLL)
    wait_until(lambda: "worker" in runner.output or runner.children(), what="workers")
    job = submit_job(tag="late", type="demo.add", data={"a": 2, "b": 3})
    wait_until(lambda: status_of(job) == Status.SUCCEEDED, what="the new job to run")
    assert job.result == {"sum": 5}


def test_a_killed_child_fails_its_job_and_is_replaced(start_runworkers: StartRunworkers) -> None:
    job = submit_job(tag="victim", type="demo.record", data={"seconds": 60})
    runner = start_runworkers("--workers", "1", env=FAST_POLL)
    pid = running_pid(job)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: status_of(job) == Status.FAILED, what="the job to fail")
    assert "SIGKILL" in error_of(job)
    # A new child takes over and serves the next job.
    follow_up = submit_job(tag="next", type="demo.add", data={"a": 1, "b": 2})
    wait_until(lambda: status_of(follow_up) == Status.SUCCEEDED, what="the replacement to serve")
    assert int(follow_up.worker.split(":")[1]) != pid
    assert runner.process.poll() is None


def test_a_killed_child_job_is_retried_by_its_policy(start_runworkers: StartRunworkers) -> None:
    job = submit_job(tag="retry-me", type="demo.record", data={"seconds": 60}, max_attempts=2)
    start_runworkers("--workers", "1", env=FAST_POLL)
    os.kill(running_pid(job), signal.SIGKILL)
    wait_until(lambda: status_of(job) == Status.FAILED, what="the job to fail")
    retry = wait_until(lambda: WorkerJob.objects.filter(rescheduled_from=job).first(), what="retry")
    assert (retry.tag, retry.data, retry.attempt, retry.max_attempts) == (
        "retry-me",
        job.data,
        1,
        2,
    )
    wait_until(lambda: status_of(retry) == Status.RUNNING, what="the retry to run")
    assert retry.attempt == 2


def test_a_job_that_exits_the_worker_cleanly_is_failed_at_once(
    start_runworkers: StartRunworkers,
) -> None:
    job = submit_job(tag="quitter", type="demo.record", data={"exit": 0})
    start_runworkers("--workers", "1", env=FAST_POLL)
    wait_until(lambda: status_of(job) == Status.FAILED, what="the job to fail")
    assert "exited (code 0)" in error_of(job)
    follow_up = submit_job(tag="after-quit", type="demo.add", data={"a": 1, "b": 2})
    wait_until(lambda: status_of(follow_up) == Status.SUCCEEDED, what="a new worker to serve")


def test_a_job_over_its_timeout_is_ended_and_failed(start_runworkers: StartRunworkers) -> None:
    job = submit_job(tag="slow", type="demo.record", data={"seconds": 60}, timeout=1)
    runner = start_runworkers("--workers", "1", env=FAST_POLL)
    wait_until(lambda: status_of(job) == Status.FAILED, timeout=20, what="the timeout")
    assert error_of(job) == "Job timed out after 1s."
    follow_up = submit_job(tag="after", type="demo.add", data={"a": 1, "b": 2})
    wait_until(lambda: status_of(follow_up) == Status.SUCCEEDED, what="the worker to keep serving")
    assert "timed out" in runner.output


def test_sigterm_lets_running_jobs_finish(start_runworkers: StartRunworkers) -> None:
    jobs = [submit_job(tag=f"drain:{i}", type="demo.record", data={"seconds": 2}) for i in range(2)]
    runner = start_runworkers("--workers", "2", env=FAST_POLL)
    for job in jobs:
        running_pid(job)
    runner.send(signal.SIGTERM)
    assert runner.wait(timeout=30) == 0, runner.output
    assert [status_of(job) for job in jobs] == [Status.SUCCEEDED, Status.SUCCEEDED]


def test_sigterm_to_the_whole_process_group_still_drains(start_runworkers: StartRunworkers) -> None:
    # systemd (KillMode=control-group) and terminals signal every process of the service.
    jobs = [submit_job(tag=f"group:{i}", type="demo.record", data={"seconds": 2}) for i in range(2)]
    runner = start_runworkers("--workers", "2", env=FAST_POLL)
    for job in jobs:
        running_pid(job)
    os.killpg(runner.process.pid, signal.SIGTERM)
    assert runner.wait(timeout=30) == 0, runner.output
    assert [status_of(job) for job in jobs] == [Status.SUCCEEDED, Status.SUCCEEDED]


def test_a_second_signal_puts_running_jobs_back(start_runworkers: StartRunworkers) -> None:
    job = submit_job(tag="interrupted", type="demo.record", data={"seconds": 60})
    runner = start_runworkers("--workers", "1", env=FAST_POLL)
    running_pid(job)
    runner.send(signal.SIGTERM)
    wait_until(lambda: "send it again" in runner.output, what="the drain message")
    runner.send(signal.SIGINT)
    assert runner.wait(timeout=30) == 0, runner.output
    assert status_of(job) == Status.SCHEDULED
    assert (job.started, job.worker, job.attempt) == (None, "", 0)  # the run does not count


def test_children_leave_when_the_parent_is_killed(start_runworkers: StartRunworkers) -> None:
    job = submit_job(tag="orphan", type="demo.record", data={"seconds": 60})
    runner = start_runworkers("--workers", "2", env=FAST_POLL)
    running_pid(job)
    children = runner.children()
    assert len(children) == 2
    runner.process.kill()
    runner.process.wait()
    wait_until(
        lambda: (
            not any(
                child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in children
            )
        ),
        timeout=10,
        what="the children to exit",
    )
    assert status_of(job) == Status.SCHEDULED  # released by its worker on the way out
    assert job.attempt == 0  # without using up an attempt


def test_jobs_of_a_dead_host_are_rescued_when_their_lease_expires(
    start_runworkers: StartRunworkers,
) -> None:
    past = timezone.now() - timedelta(minutes=5)
    dead = submit_job(tag="dead-host", type="demo.record", max_attempts=2)
    alive = submit_job(tag="other-host", type="demo.record")
    WorkerJob.objects.filter(pk=dead.pk).update(
        status=Status.RUNNING, started=past, worker="gone:1:0", attempt=1, lease_expires=past
    )
    WorkerJob.objects.filter(pk=alive.pk).update(
        status=Status.RUNNING,
        started=past,
        worker="busy:1:0",
        attempt=1,
        lease_expires=timezone.now() + timedelta(hours=1),
    )
    start_runworkers("--workers", "1", env=FAST_POLL)
    wait_until(lambda: status_of(dead) == Status.FAILED, what="the rescue")
    assert "stopped renewing its lease" in error_of(dead)
    retry = wait_until(
        lambda: WorkerJob.objects.filter(rescheduled_from=dead).first(), what="retry"
    )
    wait_until(lambda: status_of(retry) == Status.SUCCEEDED, what="the retry to run")
    assert status_of(alive) == Status.RUNNING


def test_worker_count_zero_runs_nothing_and_exits_0(start_runworkers: StartRunworkers) -> None:
    job = submit_job(tag="zero", type="demo.add", data={"a": 1, "b": 1})
    runner = start_runworkers(env={"WORKER_COUNT": "0", "WORKER_LOG_LEVEL": "warn"})
    assert runner.wait(timeout=30) == 0, runner.output
    assert "no workers to run here" in runner.output
    assert status_of(job) == Status.SCHEDULED


def test_workers_option_overrides_worker_count_zero(start_runworkers: StartRunworkers) -> None:
    job = submit_job(tag="zero", type="demo.add", data={"a": 1, "b": 1})
    runner = start_runworkers("--workers", "1", "--burst", env={"WORKER_COUNT": "0"})
    assert runner.wait() == 0, runner.output
    assert status_of(job) == Status.SUCCEEDED


def test_trace_log_level_is_debug(start_runworkers: StartRunworkers) -> None:
    runner = start_runworkers("--burst", env={"WORKER_LOG_LEVEL": "trace"})
    assert runner.wait() == 0, runner.output
    assert "started worker" in runner.output, runner.output  # a DEBUG line


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--workers", "abc"], "abc"),
        (["--workers", "0"], "'0'"),
        (["--queues", "a,b c"], "b c"),
        (["--shutdown-timeout", "-1"], "-1"),
        (["--log-level", "loud"], "loud"),
    ],
)
def test_bad_arguments_are_refused_naming_the_value(args: list[str], named: str) -> None:
    with pytest.raises(CommandError, match=named):
        call_command("runworkers", *args)


def test_a_retry_delay_out_of_bounds_fails_the_job_and_the_worker_goes_on(
    start_runworkers: StartRunworkers,
) -> None:
    asks = submit_job(tag="asks", type="demo.misbehave", data={"retry_delay": 10**12})
    good = submit_job(tag="good", type="demo.add", data={"a": 1, "b": 1}, priority=-1)
    runner = start_runworkers("--burst")
    assert runner.wait() == 0, runner.output
    assert status_of(asks) == Status.FAILED
    assert error_of(asks) == (
        "RetryJob delay=1000000000000 is longer than the longest duration allowed, "
        "36525 days (100 years)."
    )
    assert not WorkerJob.objects.filter(rescheduled_from=asks).exists()
    assert status_of(good) == Status.SUCCEEDED


@pytest.mark.parametrize("returns", ["huge int", "nan", "lone surrogate", "deep"])
def test_a_result_that_cannot_be_stored_fails_the_job_without_retry(
    start_runworkers: StartRunworkers, returns: str
) -> None:
    job = submit_job(
        tag="unstorable", type="demo.misbehave", data={"returns": returns}, max_attempts=3
    )
    good = submit_job(tag="good", type="demo.add", data={"a": 1, "b": 1}, priority=-1)
    runner = start_runworkers("--burst")
    assert runner.wait() == 0, runner.output
    assert status_of(job) == Status.FAILED
    assert error_of(job).startswith("The job ran to completion but its result cannot be stored")
    assert "It is not retried" in error_of(job)
    assert not WorkerJob.objects.filter(rescheduled_from=job).exists()
    assert Execution.objects.filter(job_id=job.pk).count() == 1
    assert status_of(good) == Status.SUCCEEDED


def test_a_cancel_meant_for_another_job_does_not_end_the_running_one(
    start_runworkers: StartRunworkers,
) -> None:
    """The parent decides on what it last heard: a cancel it finds for job A while the
    worker runs job B (A finished meanwhile, and its row still says so) must spare B."""
    running = submit_job(tag="running", type="demo.record", data={"seconds": 3})
    runner = start_runworkers("--workers", "1", env=FAST_POLL)
    pid = running_pid(running)
    stale = submit_job(tag="stale", type="demo.add", data={"a": 1, "b": 1}, delay=3600)
    WorkerJob.objects.filter(pk=stale.pk).update(
        status=Status.RUNNING,
        started=timezone.now(),
        worker=running.worker,
        attempt=1,
        lease_expires=timezone.now() + timedelta(hours=1),
        cancel_requested=timezone.now(),
    )
    wait_until(lambda: status_of(running) == Status.SUCCEEDED, what="the running job to finish")
    assert [child.pid for child in runner.children()] == [pid]


def test_a_cancel_of_the_running_job_ends_it(start_runworkers: StartRunworkers) -> None:
    running = submit_job(tag="running", type="demo.record", data={"seconds": 60})
    start_runworkers("--workers", "1", env=FAST_POLL)
    running_pid(running)
    WorkerJob.objects.filter(pk=running.pk).update(cancel_requested=timezone.now())
    wait_until(lambda: status_of(running) == Status.CANCELLED, what="the cancelled job to end")
    assert error_of(running) == "Cancelled by an operator while running."


def test_a_job_put_back_keeps_all_its_attempts(start_runworkers: StartRunworkers) -> None:
    """max_attempts=2: had the interrupted run counted, its failure could not be retried."""
    job = submit_job(tag="put-back", type="demo.record", data={"seconds": 60}, max_attempts=2)
    runner = start_runworkers("--workers", "1", env=FAST_POLL)
    running_pid(job)
    runner.send(signal.SIGTERM)
    wait_until(lambda: "send it again" in runner.output, what="the drain message")
    runner.send(signal.SIGTERM)
    assert runner.wait(timeout=30) == 0, runner.output
    WorkerJob.objects.filter(pk=job.pk).update(data={"exit": 3})  # its next run dies
    runner = start_runworkers("--workers", "1", env=FAST_POLL)
    wait_until(lambda: status_of(job) == Status.FAILED, what="the second run to fail")
    assert job.attempt == 1
    retry = wait_until(lambda: WorkerJob.objects.filter(rescheduled_from=job).first(), what="retry")
    assert retry.attempt == 1  # its own claim makes it 2 of 2


@pytest.fixture
def empty_database(tmp_path: Path) -> Iterator[str]:
    """The DATABASE_URL of a database without any table, on the tests' database server."""
    if connection.vendor == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    name = f"{connection.settings_dict['NAME']}_empty"
    quoted = connection.ops.quote_name(name)
    # PostgreSQL refuses to drop a database runworkers may still be connected to, unless forced.
    force = " WITH (FORCE)" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {quoted}")
        cursor.execute(f"CREATE DATABASE {quoted}")
    yield database_url({**connection.settings_dict, "NAME": name})
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {quoted}{force}")


def test_runworkers_before_migrate_says_to_migrate(
    start_runworkers: StartRunworkers, empty_database: str
) -> None:
    runner = start_runworkers(env={"DATABASE_URL": empty_database})
    assert runner.wait(timeout=30) != 0, runner.output
    assert "lacks migrations that runworkers needs (" in runner.output, runner.output
    assert "quickworker.0001_initial" in runner.output
    assert "Run `manage.py migrate` first." in runner.output
    assert "database unavailable" not in runner.output
