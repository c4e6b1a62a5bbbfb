"""execute() and the JobContext a job sees; retry_on_db_error.

Jobs are registered per test (job_registry), submitted, claimed and run in-process.
"""

import asyncio
import ctypes
import logging
import multiprocessing
import re
import signal
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import InterfaceError, OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_quickworker import job, outages, submit_job, worker
from django_quickworker.claim import claim_next
from django_quickworker.context import JobContext
from django_quickworker.exceptions import InvalidJobData
from django_quickworker.finish import Outcome, finish_job
from django_quickworker.leases import release_job
from django_quickworker.models import Status, WorkerJob
from django_quickworker.outages import retry_on_db_error
from django_quickworker.payload import is_storable_text, validate_payload
from django_quickworker.registry import JobRegistry
from django_quickworker.worker import execute

LEASE = timedelta(seconds=60)


class JobFailed(Exception):
    """An exception class of the project's own, not a builtin."""


def start(type_name: str, **options: Any) -> WorkerJob:
    """Submit a job of ``type_name`` and claim it, as a worker would before running it."""
    submitted = submit_job(tag=f"tag-{type_name}", type=type_name, **options)
    claimed = claim_next("host:1:0", None, LEASE)
    assert claimed is not None and claimed.pk == submitted.pk
    return claimed


def register(name: str, function: Callable[..., Any]) -> str:
    job(name)(function)
    return name


def run(job_registry: JobRegistry, function: Callable[..., Any], **options: Any) -> Outcome:
    """Register ``function`` as a job type, submit it, claim it and execute it."""
    return execute(start(register("tests.job", function), **options))


# execute: what the job returns


@pytest.mark.django_db
def test_a_sync_jobs_return_value_is_its_result(job_registry: JobRegistry) -> None:
    def add(ctx: JobContext) -> dict[str, int]:
        return {"sum": ctx.data["a"] + ctx.data["b"]}

    outcome = run(job_registry, add, data={"a": 2, "b": 3})

    assert outcome == Outcome(True, {"sum": 5})


@pytest.mark.django_db
def test_an_async_job_runs_and_returns(job_registry: JobRegistry) -> None:
    async def wait(ctx: JobContext) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"async": True, "n": ctx.data["n"]}

    outcome = run(job_registry, wait, data={"n": 7})

    assert outcome == Outcome(True, {"async": True, "n": 7})


@pytest.mark.django_db
def test_a_job_that_returns_nothing_succeeds(job_registry: JobRegistry) -> None:
    def nothing(ctx: JobContext) -> None:
        return None

    assert run(job_registry, nothing) == Outcome(True, None)


@pytest.mark.django_db
def test_the_job_sees_its_data_user_attempt_and_row(job_registry: JobRegistry) -> None:
    user = get_user_model().objects.create_user(username="ctx")
    seen: dict[str, Any] = {}

    def look(ctx: JobContext) -> str:
        seen.update(
            data=ctx.data,
            user_id=ctx.user_id,
            attempt=ctx.attempt,
            job=ctx.job,
            status=ctx.job.status,
            worker=ctx.job.worker,
        )
        return "looked"

    name = register("tests.look", look)
    submitted = submit_job(tag="look", type=name, user=user, data={"k": ["v"]})
    WorkerJob.objects.filter(pk=submitted.pk).update(attempt=2)  # two runs before this one
    claimed = claim_next("host:1:0", None, LEASE)
    assert claimed is not None

    assert execute(claimed).success is True

    assert seen == {
        "data": {"k": ["v"]},
        "user_id": user.pk,
        "attempt": 3,
        "job": claimed,
        "status": Status.RUNNING,
        "worker": "host:1:0",
    }
    assert seen["job"] is claimed


@pytest.mark.django_db
def test_a_system_job_has_no_user(job_registry: JobRegistry) -> None:
    def whose(ctx: JobContext) -> Any:
        return ctx.user_id

    assert run(job_registry, whose) == Outcome(True, None)


# execute: failures


@pytest.mark.django_db
def test_a_raising_job_fails_with_its_message_exception_and_traceback(
    job_registry: JobRegistry,
) -> None:
    def broken(ctx: JobContext) -> None:
        raise ValueError(f"bad input {ctx.data['n']}")

    outcome = run(job_registry, broken, data={"n": 7})

    assert outcome.success is False
    assert outcome.result == {"error": "bad input 7", "exception": "ValueError"}
    assert outcome.retryable is True
    assert "Traceback (most recent call last)" in outcome.traceback
    assert "raise ValueError(f\"bad input {ctx.data['n']}\")" in outcome.traceback
    assert "ValueError: bad input 7" in outcome.traceback


@pytest.mark.django_db
def test_a_raising_async_job_fails_too(job_registry: JobRegistry) -> None:
    async def broken(ctx: JobContext) -> None:
        await asyncio.sleep(0)
        raise JobFailed("async trouble")

    outcome = run(job_registry, broken)

    assert outcome.result == {"error": "async trouble", "exception": f"{__name__}.JobFailed"}
    assert 'raise JobFailed("async trouble")' in outcome.traceback


@pytest.mark.django_db
def test_a_project_exception_is_named_with_its_module(job_registry: JobRegistry) -> None:
    def broken(ctx: JobContext) -> None:
        raise JobFailed("no luck")

    outcome = run(job_registry, broken)

    assert outcome.result == {"error": "no luck", "exception": "tests.test_worker.JobFailed"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("error", "name"),
    [
        (RuntimeError(), "RuntimeError"),
        (JobFailed(), "JobFailed"),
        (RuntimeError(""), "RuntimeError"),
    ],
)
def test_an_exception_without_a_message_is_named_by_its_class(
    job_registry: JobRegistry, error: Exception, name: str
) -> None:
    def broken(ctx: JobContext) -> None:
        raise error

    outcome = run(job_registry, broken)

    assert outcome.success is False
    assert outcome.result["error"] == name


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("value", "named"),
    [
        ({1, 2}, "result is set"),
        (datetime(2024, 1, 1), "result is datetime"),
        ({"when": timezone.now()}, "result['when'] is datetime"),
        ([1, float("nan")], "result[1] is nan"),
    ],
    ids=["set", "datetime", "nested-datetime", "nan"],
)
def test_a_result_json_cannot_carry_fails_the_job(
    job_registry: JobRegistry, value: Any, named: str
) -> None:
    def returns(ctx: JobContext) -> Any:
        return value

    outcome = run(job_registry, returns)

    assert outcome.success is False
    assert outcome.retryable is False  # the function ran: another run repeats its effects
    assert outcome.result["error"].startswith(
        f"The job ran to completion but its result cannot be stored: {named}"
    )
    assert outcome.result["error"].endswith(
        "It is not retried, since running it again would repeat its effects."
    )
    assert outcome.result["exception"] == "django_quickworker.exceptions.InvalidJobData"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "message", ["bad \x00 byte", "cannot open /data/\udcff.csv"], ids=["nul", "lone-surrogate"]
)
def test_a_failure_whose_message_the_database_cannot_store_is_still_recorded(
    job_registry: JobRegistry, message: str
) -> None:
    """PostgreSQL refuses NUL characters, and neither database takes lone surrogates (which
    undecodable file names bring); the failure must still be recorded, not crash the worker."""

    def broken(ctx: JobContext) -> None:
        raise ValueError(message)

    claimed = start(register("tests.unstorable", broken))

    outcome = execute(claimed)

    assert outcome.success is False
    validate_payload(outcome.result, "result")  # storable as it is
    assert is_storable_text(outcome.traceback)
    finish_job(claimed, outcome)
    row = WorkerJob.objects.get(pk=claimed.pk)
    assert row.status == Status.FAILED
    assert row.result["error"].startswith(message[:4])


@pytest.mark.django_db
def test_an_unregistered_type_fails_without_retry(job_registry: JobRegistry) -> None:
    ghost = WorkerJob.objects.create(
        tag="ghost",
        type="tests.removedType",
        due=timezone.now(),
        auto_reschedule_on_failure=True,
        max_attempts=3,
    )
    claimed = claim_next("host:1:0", None, LEASE)
    assert claimed is not None and claimed.pk == ghost.pk

    outcome = execute(claimed)

    assert outcome.success is False
    assert outcome.retryable is False
    assert outcome.result["error"].startswith("Unknown job type 'tests.removedType'")
    assert finish_job(claimed, outcome) is None  # retrying cannot help
    assert WorkerJob.objects.get(pk=ghost.pk).status == Status.FAILED
    assert WorkerJob.objects.count() == 1


@pytest.mark.django_db
def test_a_job_can_submit_another_job(job_registry: JobRegistry) -> None:
    def parent(ctx: JobContext) -> dict[str, int]:
        child = ctx.submit_job(tag="child", type="demo.add", data={"a": 1, "b": 1}, delay=5)
        return {"child": child.pk}

    outcome = run(job_registry, parent)

    assert outcome.success is True
    child = WorkerJob.objects.get(pk=outcome.result["child"])
    assert (child.type, child.tag, child.status, child.data) == (
        "demo.add",
        "child",
        Status.SCHEDULED,
        {"a": 1, "b": 1},
    )


# The job context: progress and log


@pytest.mark.django_db
def test_progress_is_stored_on_the_row(job_registry: JobRegistry) -> None:
    ctx = JobContext(start("demo.add"))

    ctx.progress(1, 3, "rendering")

    stored = WorkerJob.objects.get(pk=ctx.job.pk)
    assert stored.progress == {"current": 1, "total": 3, "message": "rendering"}
    assert ctx.job.progress == stored.progress


@pytest.mark.django_db
def test_a_job_reports_progress_while_it_runs(job_registry: JobRegistry) -> None:
    def steps(ctx: JobContext) -> str:
        ctx.progress(2, 2, "done")
        return "ok"

    claimed = start(register("tests.steps", steps))

    assert execute(claimed) == Outcome(True, "ok")
    progress = WorkerJob.objects.get(pk=claimed.pk).progress
    assert progress == {"current": 2, "total": 2, "message": "done"}


# An async job runs on an event loop, where Django refuses synchronous queries; the context's
# writes must still work there. transaction=True: a fix may write from another connection.


@pytest.mark.django_db(transaction=True)
def test_an_async_job_can_report_progress(job_registry: JobRegistry) -> None:
    async def steps(ctx: JobContext) -> str:
        await asyncio.sleep(0)
        ctx.progress(1, 1, "async done")
        return "ok"

    claimed = start(register("tests.asyncSteps", steps))

    outcome = execute(claimed)

    assert outcome == Outcome(True, "ok"), outcome.result
    progress = WorkerJob.objects.get(pk=claimed.pk).progress
    assert progress == {"current": 1, "total": 1, "message": "async done"}


@pytest.mark.django_db(transaction=True)
def test_an_async_job_can_submit_a_job(job_registry: JobRegistry) -> None:
    async def parent(ctx: JobContext) -> int:
        await asyncio.sleep(0)
        return ctx.submit_job(tag="async-child", type="demo.add", delay=5).pk

    outcome = execute(start(register("tests.asyncParent", parent)))

    assert outcome.success is True, outcome.result
    assert WorkerJob.objects.get(pk=outcome.result).tag == "async-child"


@pytest.mark.django_db
def test_a_burst_of_progress_writes_the_row_only_a_couple_of_times() -> None:
    ctx = JobContext(start("demo.add"))

    with CaptureQueriesContext(connection) as queries:
        for step in range(1, 201):
            ctx.progress(step, 200, f"step {step}")

    updates = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    assert 2 <= len(updates) <= 3, updates  # the first call, then the final one
    stored = WorkerJob.objects.get(pk=ctx.job.pk)
    assert stored.progress == {"current": 200, "total": 200, "message": "step 200"}
    assert ctx.job.progress == stored.progress


@pytest.mark.django_db
def test_progress_without_a_total_is_throttled_too() -> None:
    ctx = JobContext(start("demo.add"))

    with CaptureQueriesContext(connection) as queries:
        for step in range(100):
            ctx.progress(step)

    assert len(queries) == 1
    assert WorkerJob.objects.get(pk=ctx.job.pk).progress == {
        "current": 0,
        "total": None,
        "message": "",
    }
    assert ctx.job.progress == {"current": 99, "total": None, "message": ""}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("current", "message"),
    [(float("nan"), "step"), (1, "nul\x00byte"), (1, {"not": {1, 2}})],
    ids=["nan", "nul", "set"],
)
def test_progress_json_cannot_carry_is_refused(current: Any, message: Any) -> None:
    ctx = JobContext(start("demo.add"))

    with pytest.raises(InvalidJobData, match=r"progress\["):
        ctx.progress(current, 2, message)

    assert WorkerJob.objects.get(pk=ctx.job.pk).progress is None


@pytest.mark.django_db
def test_progress_of_a_released_run_is_not_written() -> None:
    claimed = start("demo.add")
    ctx = JobContext(claimed)
    release_job(claimed)

    ctx.progress(1, 1, "too late")

    assert WorkerJob.objects.get(pk=claimed.pk).progress is None


@pytest.mark.django_db
def test_the_log_names_the_job(job_registry: JobRegistry, caplog: pytest.LogCaptureFixture) -> None:
    def chatty(ctx: JobContext) -> None:
        ctx.log.info("sending to %s", ctx.data["email"])
        ctx.log.warning("second line")

    claimed = start(register("tests.chatty", chatty), data={"email": "a@example.com"})

    with caplog.at_level(logging.INFO, logger="django_quickworker.jobs"):
        execute(claimed)

    lines = [r.getMessage() for r in caplog.records if r.name == "django_quickworker.jobs"]
    assert lines == [
        f"[tests.chatty id={claimed.pk}] sending to a@example.com",
        f"[tests.chatty id={claimed.pk}] second line",
    ]


# retry_on_db_error


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays retry_on_db_error sleeps, recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr(outages.time, "sleep", slept.append)
    return slept


@pytest.mark.parametrize("error", [OperationalError, InterfaceError])
def test_retry_on_db_error_retries_until_the_database_answers(
    sleeps: list[float], error: type[Exception]
) -> None:
    calls: list[int] = []

    def operation() -> str:
        calls.append(len(calls))
        if len(calls) <= 2:
            raise error("server closed the connection unexpectedly")
        return "answered"

    assert retry_on_db_error(operation, "test") == "answered"
    assert len(calls) == 3
    assert sum(sleeps) == pytest.approx(0.3)  # backing off: 0.1 s, then 0.2 s
    assert max(sleeps) <= outages.STOP_CHECK_INTERVAL  # in steps, looking for a stop


def test_retry_on_db_error_gives_up_once_asked_to_stop(sleeps: list[float]) -> None:
    calls: list[int] = []
    stop = False

    def operation() -> None:
        calls.append(1)
        raise OperationalError("the server is down")

    def should_stop() -> bool:
        return stop

    def stop_soon(seconds: float) -> None:
        nonlocal stop
        sleeps.append(seconds)
        stop = len(sleeps) >= 3  # a signal came while it was waiting

    worker.time.sleep = stop_soon  # type: ignore[assignment]  # restored by the fixture
    with pytest.raises(OperationalError, match="the server is down"):
        retry_on_db_error(operation, "test", should_stop)
    assert len(calls) == 3  # it stopped waiting at once, and did not try again


def test_retry_on_db_error_returns_at_once_when_nothing_fails(sleeps: list[float]) -> None:
    assert retry_on_db_error(lambda: 42, "test") == 42
    assert sleeps == []


def test_retry_on_db_error_lets_other_errors_through(sleeps: list[float]) -> None:
    calls: list[int] = []

    def operation() -> None:
        calls.append(1)
        raise ValueError("not a database problem")

    with pytest.raises(ValueError, match="not a database problem"):
        retry_on_db_error(operation, "test")
    assert len(calls) == 1
    assert sleeps == []


def test_retry_on_db_error_backs_off_to_a_cap(
    sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def operation() -> str:
        calls.append(1)
        if len(calls) <= 12:
            raise OperationalError("the database is restarting")
        return "back"

    assert retry_on_db_error(operation, "test") == "back"
    delays = [float(d) for d in re.findall(r"retrying in ([\d.]+)s", caplog.text)]
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert max(delays) == outages.MAX_DB_RETRY_DELAY
    assert delays == sorted(delays)
    assert sum(sleeps) == pytest.approx(sum(delays))


# --- ending a job on the parent's request ----------------------------------------------------


@pytest.mark.parametrize(("running", "wanted"), [(None, 7), (8, 7)], ids=["between", "next-job"])
def test_a_request_to_end_another_job_is_ignored(running: int | None, wanted: int) -> None:
    pipe, _ = multiprocessing.Pipe()
    end_request = ctypes.c_longlong(wanted)
    worker_ = worker.Worker(0, None, pipe, False, end_request, "token")
    worker_.running_job_id = running

    worker_.on_sigusr1(signal.SIGUSR1, None)  # returns: nothing to unwind


def test_a_request_to_end_the_running_job_unwinds_it() -> None:
    pipe, _ = multiprocessing.Pipe()
    worker_ = worker.Worker(0, None, pipe, False, ctypes.c_longlong(7), "token")
    worker_.running_job_id = 7

    with pytest.raises(SystemExit, match="told to end job id=7"):
        worker_.on_sigusr1(signal.SIGUSR1, None)
