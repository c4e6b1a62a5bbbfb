"""Retries: auto_reschedule_on_failure, max_attempts, fixed and exponential backoff, and
RetryJob, run in-process (claim, execute, finish) so that every row can be checked."""

import itertools
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test.utils import override_settings
from django.utils import timezone

from django_quickworker import job, submit_job
from django_quickworker.claim import claim_next
from django_quickworker.conf import conf
from django_quickworker.exceptions import RetryJob
from django_quickworker.finish import Outcome, backoff, finish_job
from django_quickworker.models import Backoff, Status, WorkerJob
from django_quickworker.registry import JobRegistry
from django_quickworker.worker import execute
from tests.conftest import StartRunworkers, wait_until

LEASE = timedelta(seconds=60)
SAMPLES = 2000


def always_fails(ctx: Any) -> None:
    raise RuntimeError(f"failed on attempt {ctx.attempt}")


def fails_until(ctx: Any) -> dict[str, int]:
    if ctx.attempt < ctx.data["succeed_on"]:
        raise RuntimeError(f"not yet ({ctx.attempt})")
    return {"attempt": ctx.attempt}


def asks_for_retry(ctx: Any) -> None:
    delay = ctx.data.get("delay")
    if "delay_minutes" in ctx.data:
        delay = timedelta(minutes=ctx.data["delay_minutes"])
    raise RetryJob(f"try again after attempt {ctx.attempt}", delay=delay)


@pytest.fixture
def types(job_registry: JobRegistry) -> None:
    job("test.fails")(always_fails)
    job("test.failsUntil")(fails_until)
    job("test.retry")(asks_for_retry)
    job(
        "test.policy",
        max_attempts=4,
        auto_reschedule_on_failure=True,
        auto_reschedule_on_failure_delay=30,
        retry_backoff="exponential",
    )(always_fails)


def run_next() -> WorkerJob | None:
    """Claim the next due job, run it as a worker would, and return its stored row."""
    claimed = claim_next("host:1:0", None, LEASE)
    if claimed is None:
        return None
    finish_job(claimed, execute(claimed))
    claimed.refresh_from_db()
    return claimed


def run_all() -> list[WorkerJob]:
    """Run due jobs until none is left (retries with no delay are due at once)."""
    runs = []
    while (run := run_next()) is not None:
        runs.append(run)
        assert len(runs) < 50, "runaway retries"
    return runs


def error_of(run: WorkerJob) -> str:
    assert isinstance(run.result, dict), run.result
    return str(run.result["error"])


def retry_of(run: WorkerJob) -> WorkerJob | None:
    return WorkerJob.objects.filter(rescheduled_from=run).first()


@pytest.mark.django_db
@pytest.mark.parametrize("max_attempts", [1, 2, 3, 5])
def test_a_failing_job_runs_max_attempts_times_then_stays_failed(
    types: None, max_attempts: int
) -> None:
    first = submit_job(
        tag="chain", type="test.fails", max_attempts=max_attempts, auto_reschedule_on_failure=True
    )

    runs = run_all()

    assert WorkerJob.objects.count() == len(runs) == max_attempts
    assert [run.attempt for run in runs] == list(range(1, max_attempts + 1))
    assert runs[0].pk == first.pk
    for previous, run in itertools.pairwise(runs):
        assert run.rescheduled_from_id == previous.pk
    for run in runs:
        assert run.status == Status.FAILED and run.success is False
        assert run.result == {
            "error": f"failed on attempt {run.attempt}",
            "exception": "RuntimeError",
        }
        assert "RuntimeError" in run.error_traceback
    assert retry_of(runs[-1]) is None
    assert not WorkerJob.objects.scheduled().exists()


@pytest.mark.django_db
def test_the_chain_stops_at_the_first_success(types: None) -> None:
    submit_job(tag="flaky", type="test.failsUntil", data={"succeed_on": 3}, max_attempts=5)

    runs = run_all()

    assert [(run.attempt, run.status) for run in runs] == [
        (1, Status.FAILED),
        (2, Status.FAILED),
        (3, Status.SUCCEEDED),
    ]
    assert runs[-1].result == {"attempt": 3}
    assert WorkerJob.objects.count() == 3


@pytest.mark.django_db
def test_without_a_retry_policy_a_failure_is_final(types: None) -> None:
    submit_job(tag="once", type="test.fails")

    runs = run_all()

    assert len(runs) == 1 and runs[0].status == Status.FAILED
    assert (runs[0].auto_reschedule_on_failure, runs[0].max_attempts) == (False, 1)


@pytest.mark.django_db
def test_a_retry_copies_every_field_and_links_to_the_failed_run(types: None) -> None:
    user = get_user_model().objects.create_user("retry-owner")
    submit_job(
        tag="copied",
        type="test.fails",
        user=user,
        data={"items": [1, 2, {"deep": True}]},
        queue="mail",
        priority=7,
        timeout=45,
        remove_delay=600,
        persistent=True,
        max_attempts=3,
        auto_reschedule_on_failure_delay=5,
        retry_backoff="fixed",
    )

    run = run_next()

    assert run is not None and run.status == Status.FAILED
    assert run.remove_at is None  # persistent: never cleaned up
    retry = retry_of(run)
    assert retry is not None
    assert retry.status == Status.SCHEDULED
    assert retry.rescheduled_from == run
    for field in (
        "tag",
        "type",
        "user_id",
        "data",
        "queue",
        "priority",
        "timeout",
        "remove_delay",
        "persistent",
        "max_attempts",
        "auto_reschedule_on_failure",
        "auto_reschedule_on_failure_delay",
        "retry_backoff",
        "attempt",
    ):
        assert getattr(retry, field) == getattr(run, field), field
    assert (retry.user_id, retry.persistent, retry.attempt) == (user.pk, True, 1)
    assert retry.cron_schedule == ""
    assert (retry.started, retry.finished, retry.success, retry.result) == (None, None, None, None)
    assert run.finished is not None
    assert retry.due == run.finished + timedelta(seconds=5)  # fixed: exactly the delay


@pytest.mark.django_db
def test_the_last_failure_of_a_non_persistent_chain_is_kept_for_the_failed_retention(
    types: None,
) -> None:
    with override_settings(QUICKWORKER={"RETAIN_FAILED": 120}):
        submit_job(tag="kept", type="test.fails", max_attempts=2)
        runs = run_all()

    for run in runs:
        assert run.finished is not None
        assert run.remove_at == run.finished + timedelta(seconds=120)


@pytest.mark.django_db
def test_registered_defaults_apply_and_submissions_override_them(types: None) -> None:
    default = submit_job(tag="default", type="test.policy")
    overridden = submit_job(
        tag="overridden",
        type="test.policy",
        max_attempts=2,
        auto_reschedule_on_failure_delay=0,
        retry_backoff="fixed",
    )
    turned_off = submit_job(tag="off", type="test.policy", auto_reschedule_on_failure=False)

    assert (
        default.max_attempts,
        default.auto_reschedule_on_failure,
        default.auto_reschedule_on_failure_delay,
        default.retry_backoff,
    ) == (4, True, timedelta(seconds=30), Backoff.EXPONENTIAL)
    assert (overridden.max_attempts, overridden.retry_backoff) == (2, Backoff.FIXED)
    assert (turned_off.auto_reschedule_on_failure, turned_off.max_attempts) == (False, 1)

    runs = run_all()  # everything due now runs once; "default"'s retries are 15-30 s away

    by_tag = {run.tag: run for run in runs}
    assert sorted(run.tag for run in runs) == ["default", "off", "overridden", "overridden"]
    default_retry = retry_of(by_tag["default"])
    assert default_retry is not None
    finished = by_tag["default"].finished
    assert finished is not None
    assert finished + timedelta(seconds=15) <= default_retry.due <= finished + timedelta(seconds=30)
    assert retry_of(by_tag["off"]) is None
    assert WorkerJob.objects.filter(tag="overridden").count() == 2


# Backoff


def failed_job(attempt: int, delay: float, backoff_kind: str) -> WorkerJob:
    return WorkerJob(
        attempt=attempt,
        auto_reschedule_on_failure_delay=timedelta(seconds=delay),
        retry_backoff=backoff_kind,
    )


@pytest.mark.parametrize("attempt", [1, 2, 7, 30])
@pytest.mark.parametrize("delay", [0, 2.5, 90])
def test_fixed_backoff_is_always_the_delay(attempt: int, delay: float) -> None:
    job_row = failed_job(attempt, delay, Backoff.FIXED)

    assert {backoff(job_row) for _ in range(100)} == {timedelta(seconds=delay)}


@pytest.mark.parametrize(
    ("delay", "attempt", "ceiling"),
    [
        (0, 1, 1),  # no delay: a base of 1 s
        (0, 4, 8),
        (10, 1, 10),
        (10, 2, 20),
        (10, 3, 40),
        (10, 4, 60),  # 80 s, capped
        (10, 9, 60),
        (1000, 1, 60),  # the cap applies from the first retry
    ],
)
def test_exponential_backoff_doubles_is_capped_and_jittered_down_by_up_to_half(
    delay: float, attempt: int, ceiling: float
) -> None:
    job_row = failed_job(attempt, delay, Backoff.EXPONENTIAL)

    with override_settings(QUICKWORKER={"RETRY_BACKOFF_MAX": 60}):
        samples = [backoff(job_row).total_seconds() for _ in range(SAMPLES)]

    assert all(ceiling / 2 <= sample <= ceiling for sample in samples)
    # Jittered: spread over the range, not one value.
    assert min(samples) < ceiling * 0.55 and max(samples) > ceiling * 0.95
    assert len(set(samples)) > SAMPLES / 2


def test_exponential_backoff_has_a_base_of_at_least_one_second() -> None:
    job_row = failed_job(1, 0.25, Backoff.EXPONENTIAL)

    samples = [backoff(job_row).total_seconds() for _ in range(SAMPLES)]

    assert all(0.5 <= sample <= 1.0 for sample in samples), (min(samples), max(samples))


@pytest.mark.parametrize(("attempt", "delay"), [(48, 1), (60, 1), (100, 3600), (1000, 0)])
def test_exponential_backoff_of_a_late_attempt_is_the_cap(attempt: int, delay: float) -> None:
    """max_attempts has no upper bound: a long retry chain must reach the cap, not overflow."""
    job_row = failed_job(attempt, delay, Backoff.EXPONENTIAL)

    samples = [backoff(job_row) for _ in range(100)]

    cap = conf.retry_backoff_max
    assert all(cap / 2 <= sample <= cap for sample in samples)


@pytest.mark.django_db
def test_a_long_exponential_chain_retries_within_the_cap(types: None) -> None:
    submit_job(
        tag="long",
        type="test.fails",
        max_attempts=80,
        auto_reschedule_on_failure_delay=60,
        retry_backoff="exponential",
    )
    WorkerJob.objects.filter(tag="long").update(attempt=59)  # far into its chain

    run = run_next()

    assert run is not None and run.attempt == 60 and run.status == Status.FAILED
    retry = retry_of(run)
    assert retry is not None and run.finished is not None
    assert retry.due - run.finished <= conf.retry_backoff_max


@pytest.mark.django_db
@pytest.mark.parametrize("delay", [0, 10])
def test_exponential_retries_wait_within_the_backoff_bounds(types: None, delay: int) -> None:
    submit_job(
        tag="exp",
        type="test.fails",
        max_attempts=5,
        auto_reschedule_on_failure_delay=delay,
        retry_backoff="exponential",
    )
    base = delay or 1

    for attempt in range(1, 5):
        run = run_next()
        assert run is not None and run.attempt == attempt
        retry = retry_of(run)
        assert retry is not None and run.finished is not None
        ceiling = timedelta(seconds=min(base * 2 ** (attempt - 1), 3600))
        assert ceiling / 2 <= retry.due - run.finished <= ceiling
        WorkerJob.objects.filter(pk=retry.pk).update(due=timezone.now())  # skip the wait

    last = run_next()
    assert last is not None and last.attempt == 5 and retry_of(last) is None
    assert WorkerJob.objects.filter(tag="exp").count() == 5


# RetryJob


@pytest.mark.django_db
@pytest.mark.parametrize("limit", [2, 3, 5])
def test_retry_job_without_a_policy_is_bounded_by_max_attempts_setting(
    types: None, limit: int
) -> None:
    with override_settings(QUICKWORKER={"MAX_ATTEMPTS": limit}):
        submit_job(tag="asks", type="test.retry", data={"delay": 0})
        runs = run_all()

    assert [run.attempt for run in runs] == list(range(1, limit + 1))
    assert WorkerJob.objects.count() == limit
    for run in runs:
        assert run.status == Status.FAILED
        assert run.result == {"error": f"try again after attempt {run.attempt}"}
        assert (run.auto_reschedule_on_failure, run.max_attempts) == (False, 1)
    assert retry_of(runs[-1]) is None


@pytest.mark.django_db
def test_retry_job_with_a_policy_is_bounded_by_the_jobs_max_attempts(types: None) -> None:
    with override_settings(QUICKWORKER={"MAX_ATTEMPTS": 6}):
        submit_job(tag="asks", type="test.retry", data={"delay": 0}, max_attempts=2)
        runs = run_all()

    assert [run.attempt for run in runs] == [1, 2]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"delay": 42}, timedelta(seconds=42)),
        ({"delay": 1.5}, timedelta(seconds=1.5)),
        ({"delay_minutes": 2}, timedelta(minutes=2)),
    ],
)
def test_retry_job_delay_overrides_the_backoff(
    types: None, data: dict[str, Any], expected: timedelta
) -> None:
    submit_job(
        tag="asks",
        type="test.retry",
        data=data,
        max_attempts=3,
        auto_reschedule_on_failure_delay=5,
        retry_backoff="exponential",
    )

    run = run_next()

    assert run is not None and run.finished is not None
    retry = retry_of(run)
    assert retry is not None
    assert retry.due - run.finished == expected


@pytest.mark.django_db
def test_retry_job_without_a_delay_uses_the_backoff(types: None) -> None:
    submit_job(tag="asks", type="test.retry", auto_reschedule_on_failure_delay=7, max_attempts=2)

    run = run_next()

    assert run is not None and run.finished is not None
    retry = retry_of(run)
    assert retry is not None and retry.due - run.finished == timedelta(seconds=7)


@pytest.mark.django_db
@pytest.mark.parametrize("delay", [-1, "soon", float("inf")], ids=["negative", "text", "inf"])
def test_retry_job_with_an_invalid_delay_fails_the_job_saying_why(types: None, delay: Any) -> None:
    job_row = submit_job(tag="asks", type="test.retry")
    claimed = claim_next("host:1:0", None, LEASE)
    assert claimed is not None and claimed.pk == job_row.pk
    claimed.data = {"delay": delay}  # not JSON-storable for inf, so set on the claimed row

    finish_job(claimed, execute(claimed))

    claimed.refresh_from_db()
    assert claimed.status == Status.FAILED
    assert "RetryJob delay" in error_of(claimed)
    assert repr(delay) in error_of(claimed)
    assert retry_of(claimed) is None


@pytest.mark.django_db
def test_a_failure_that_cannot_be_helped_is_not_retried(types: None) -> None:
    stray = submit_job(tag="stray", type="test.fails", max_attempts=3)
    WorkerJob.objects.filter(pk=stray.pk).update(type="removed.type")

    runs = run_all()

    assert len(runs) == 1 and runs[0].status == Status.FAILED
    assert error_of(runs[0]).startswith("Unknown job type 'removed.type'")
    assert retry_of(runs[0]) is None


@pytest.mark.django_db
def test_a_retry_lands_only_with_the_finish(types: None) -> None:
    """A finish refused by the fence (the job was rescued meanwhile) writes no retry."""
    submit_job(tag="fenced", type="test.fails", max_attempts=3)
    claimed = claim_next("host:1:0", None, LEASE)
    assert claimed is not None
    finish_job(claimed, Outcome.failure("rescued: worker gone"))
    assert WorkerJob.objects.count() == 2

    assert finish_job(claimed, Outcome.failure("the late worker's own finish")) is None

    assert WorkerJob.objects.count() == 2


def test_a_late_exponential_retry_does_not_stop_the_workers(
    start_runworkers: StartRunworkers,
) -> None:
    """End to end: the 60th failure of a job with a long exponential retry policy is
    recorded and retried within the cap, and the workers go on serving other jobs."""
    late = submit_job(
        tag="late",
        type="demo.fail",
        max_attempts=100,
        auto_reschedule_on_failure_delay=60,
        retry_backoff="exponential",
    )
    WorkerJob.objects.filter(pk=late.pk).update(attempt=59)
    after = submit_job(tag="after", type="demo.add", data={"a": 1, "b": 1}, priority=-1)
    runner = start_runworkers("--workers", "1", env={"QUICKWORKER": '{"POLL_INTERVAL": 0.1}'})

    def status(row: WorkerJob) -> str:
        row.refresh_from_db()
        return row.status

    try:
        wait_until(lambda: status(after) == Status.SUCCEEDED, what="the next job to run")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{runner.output}") from None
    assert status(late) == Status.FAILED and late.attempt == 60
    retry = retry_of(late)
    assert retry is not None and late.finished is not None
    assert retry.due - late.finished <= conf.retry_backoff_max
