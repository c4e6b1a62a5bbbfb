"""finish_job and friends: outcomes, retention, fencing, release, retries, leases and rescue."""

import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.utils import timezone

from django_quickworker import finish, submit_job
from django_quickworker.claim import claim_next
from django_quickworker.finish import Outcome, finish_job
from django_quickworker.leases import (
    end_jobs_of,
    release_job,
    release_jobs_of,
    renew_leases,
    rescue_expired_jobs,
)
from django_quickworker.models import Status, WorkerJob
from django_quickworker.states import removal_time
from tests.conftest import DATABASE_CLOCK_STEP

pytestmark = pytest.mark.django_db

LEASE = timedelta(seconds=60)
RETENTION = {"RETAIN_SUCCEEDED": 120, "RETAIN_FAILED": 600}


def run(tag: str, worker: str = "w", **options: Any) -> WorkerJob:
    """Submit a job in a queue of its own (named after its tag) and claim it as ``worker``."""
    options.setdefault("data", {"a": 1, "b": 2})
    submitted = submit_job(tag=tag, type="demo.add", queue=tag, **options)
    claimed = claim_next(worker, [tag], LEASE)
    assert claimed is not None and claimed.pk == submitted.pk
    return claimed


def reclaim(job: WorkerJob, worker: str = "w") -> WorkerJob:
    """Claim ``job`` (a scheduled row, a release or a retry) now, whatever its due time."""
    WorkerJob.objects.filter(pk=job.pk).update(due=timezone.now())
    claimed = claim_next(worker, [job.queue], LEASE)
    assert claimed is not None and claimed.pk == job.pk
    return claimed


def stored(job: WorkerJob) -> WorkerJob:
    return WorkerJob.objects.get(pk=job.pk)


def finished_at(job: WorkerJob) -> datetime:
    assert job.finished is not None
    return job.finished


def between(moment: datetime | None, before: datetime, after: datetime) -> bool:
    # Due times come from the database's clock.
    return moment is not None and before <= moment <= after + DATABASE_CLOCK_STEP


# Success and failure


@override_settings(QUICKWORKER=RETENTION)
def test_a_success_is_recorded() -> None:
    job = run("ok", worker="host:1:0")
    before = timezone.now()

    assert finish_job(job, Outcome(True, {"sum": 3})) is None

    after = timezone.now()
    row = stored(job)
    assert row.status == Status.SUCCEEDED
    assert row.success is True
    assert row.result == {"sum": 3}
    assert between(row.finished, before, after)
    assert row.lease_expires is None
    assert row.error_traceback == ""
    assert row.remove_at == finished_at(row) + timedelta(seconds=120)
    assert (row.worker, row.attempt, row.started) == ("host:1:0", 1, job.started)
    # The caller's object says the same.
    assert (job.status, job.success, job.finished, job.remove_at) == (
        row.status,
        True,
        row.finished,
        row.remove_at,
    )


@override_settings(QUICKWORKER=RETENTION)
def test_a_success_with_no_result_stores_null() -> None:
    job = run("none")

    finish_job(job, Outcome(True))

    row = stored(job)
    assert (row.status, row.success, row.result) == (Status.SUCCEEDED, True, None)


@override_settings(QUICKWORKER=RETENTION)
def test_a_failure_is_recorded_with_its_traceback() -> None:
    job = run("broken")
    trace = "Traceback (most recent call last):\n  ...\nValueError: it broke\n"
    before = timezone.now()

    assert finish_job(job, Outcome.failure("it broke", trace)) is None

    after = timezone.now()
    row = stored(job)
    assert row.status == Status.FAILED
    assert row.success is False
    assert row.result == {"error": "it broke"}
    assert row.error_traceback == trace
    assert between(row.finished, before, after)
    assert row.lease_expires is None
    assert row.remove_at == finished_at(row) + timedelta(seconds=600)


@override_settings(QUICKWORKER=RETENTION)
@pytest.mark.parametrize(
    ("options", "kept"),
    [
        ({}, {True: timedelta(seconds=120), False: timedelta(seconds=600)}),
        ({"remove_delay": 30}, {True: timedelta(seconds=30), False: timedelta(seconds=30)}),
        ({"remove_delay": 0}, {True: timedelta(0), False: timedelta(0)}),
        ({"persistent": True}, {True: None, False: None}),
        ({"persistent": True, "remove_delay": 30}, {True: None, False: None}),
    ],
)
def test_remove_at_is_counted_from_the_finish(
    options: dict[str, Any], kept: dict[bool, timedelta | None]
) -> None:
    succeeded = run("succeeded", **options)
    failed = run("failed", **options)

    finish_job(succeeded, Outcome(True, 1))
    finish_job(failed, Outcome.failure("no"))

    for job, success in ((succeeded, True), (failed, False)):
        row = stored(job)
        assert row.success is success
        delay = kept[success]
        assert row.remove_at == (None if delay is None else finished_at(row) + delay)


@override_settings(QUICKWORKER={"RETAIN_SUCCEEDED": 5, "RETAIN_FAILED": 50})
def test_removal_time() -> None:
    finished = timezone.now()
    second = timedelta(seconds=1)

    def removal(status: str, **fields: Any) -> datetime | None:
        return removal_time(WorkerJob(**fields), status, finished)

    assert removal(status=Status.SUCCEEDED) == finished + 5 * second
    assert removal(status=Status.FAILED) == finished + 50 * second
    assert removal(status=Status.CANCELLED) == finished + 50 * second
    assert removal(status=Status.FAILED, remove_delay=7 * second) == finished + 7 * second
    assert removal(status=Status.SUCCEEDED, persistent=True) is None
    assert removal(status=Status.FAILED, persistent=True, remove_delay=second) is None


# Fencing


def test_a_finish_by_another_worker_records_nothing() -> None:
    job = run("fenced", worker="w1", auto_reschedule_on_failure=True, max_attempts=3)
    impostor = stored(job)
    impostor.worker = "w2"

    assert finish_job(impostor, Outcome(True, "stolen")) is None
    assert finish_job(impostor, Outcome.failure("stolen")) is None

    row = stored(job)
    assert (row.status, row.worker, row.finished, row.success, row.result) == (
        Status.RUNNING,
        "w1",
        None,
        None,
        None,
    )
    assert row.lease_expires is not None
    assert WorkerJob.objects.count() == 1  # the fenced failure scheduled no retry

    finish_job(job, Outcome(True, "mine"))
    assert (stored(job).status, stored(job).result) == (Status.SUCCEEDED, "mine")


def test_a_finish_of_an_older_run_records_nothing() -> None:
    old = run("rerun", auto_reschedule_on_failure=True, max_attempts=5)
    assert release_job(old)
    new = reclaim(old)  # the same worker name and, since a release gives it back, attempt
    assert (old.attempt, new.attempt) == (1, 1)
    assert old.started != new.started

    assert finish_job(old, Outcome.failure("late")) is None

    row = stored(new)
    assert (row.status, row.attempt, row.result) == (Status.RUNNING, 1, None)
    assert WorkerJob.objects.count() == 1

    finish_job(new, Outcome(True, "second run"))
    assert (stored(new).status, stored(new).result) == (Status.SUCCEEDED, "second run")


def test_a_finished_job_cannot_be_finished_again() -> None:
    job = run("twice")
    finish_job(job, Outcome(True, "first"))
    again = stored(job)

    assert finish_job(again, Outcome.failure("second")) is None

    row = stored(job)
    assert (row.status, row.result) == (Status.SUCCEEDED, "first")


def test_an_ignored_finish_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    job = run("ignored")
    job.worker = "someone-else"

    with caplog.at_level(logging.WARNING, logger="django_quickworker.finish"):
        finish_job(job, Outcome(True))

    assert f"finish ignored id={job.pk} worker=someone-else" in caplog.text


# Release


def test_release_puts_the_job_back_unfinished() -> None:
    job = run("released", worker="w1")

    assert release_job(job) is True

    row = stored(job)
    assert row.status == Status.SCHEDULED
    assert (row.started, row.finished, row.success, row.lease_expires) == (None, None, None, None)
    assert row.worker == ""
    assert row.attempt == 0  # a run put back does not use up an attempt
    assert release_job(job) is False  # no longer leased to w1


def test_after_a_release_the_old_run_cannot_finish_but_a_new_claim_can() -> None:
    job = run("released", worker="w1")
    release_job(job)

    assert finish_job(job, Outcome(True, "old run")) is None
    row = stored(job)
    assert (row.status, row.result, row.finished) == (Status.SCHEDULED, None, None)

    again = reclaim(job, worker="w2")
    assert (again.worker, again.attempt) == ("w2", 1)
    finish_job(again, Outcome(True, "new run"))

    row = stored(job)
    assert (row.status, row.result, row.worker) == (Status.SUCCEEDED, "new run", "w2")


def test_release_jobs_of_releases_only_that_workers_running_jobs() -> None:
    mine = [run("mine1", worker="dead"), run("mine2", worker="dead")]
    done = run("done", worker="dead")
    finish_job(done, Outcome(True))
    other = run("other", worker="alive")

    assert release_jobs_of("dead") == 2

    assert {stored(job).status for job in mine} == {Status.SCHEDULED}
    assert stored(done).status == Status.SUCCEEDED
    assert (stored(other).status, stored(other).worker) == (Status.RUNNING, "alive")
    assert release_jobs_of("dead") == 0


# Retries


def test_a_retryable_failure_is_rescheduled_as_a_copy() -> None:
    user = get_user_model().objects.create_user(username="retry")
    job = run(
        "retried",
        user=user,
        data={"x": [1, 2]},
        priority=4,
        timeout=90,
        remove_delay=30,
        persistent=True,
        auto_reschedule_on_failure=True,
        auto_reschedule_on_failure_delay=45,
        max_attempts=3,
    )
    before = timezone.now()

    retry = finish_job(job, Outcome.failure("try again", "trace"))

    after = timezone.now()
    assert retry is not None
    assert stored(job).status == Status.FAILED
    row = stored(retry)
    assert row.rescheduled_from_id == job.pk
    assert row.status == Status.SCHEDULED
    copied = (
        "tag",
        "type",
        "user_id",
        "data",
        "queue",
        "priority",
        "timeout",
        "persistent",
        "remove_delay",
        "max_attempts",
        "auto_reschedule_on_failure",
        "auto_reschedule_on_failure_delay",
    )
    assert {name: getattr(row, name) for name in copied} == {
        name: getattr(job, name) for name in copied
    }
    assert (row.user_id, row.data, row.queue, row.priority) == (
        user.pk,
        {"x": [1, 2]},
        "retried",
        4,
    )
    assert (row.timeout, row.remove_delay, row.persistent) == (
        timedelta(seconds=90),
        timedelta(seconds=30),
        True,
    )
    assert row.attempt == 1  # carried; the next claim makes it 2
    assert between(row.due, before + timedelta(seconds=45), after + timedelta(seconds=45))
    assert (row.started, row.finished, row.success, row.result) == (None, None, None, None)
    assert (row.worker, row.lease_expires, row.error_traceback, row.progress) == (
        "",
        None,
        "",
        None,
    )
    assert claim_next("w", ["retried"], LEASE) is None  # not due yet

    assert reclaim(row).attempt == 2


def test_a_retry_with_no_delay_is_due_at_once() -> None:
    job = run("quick", auto_reschedule_on_failure=True, max_attempts=2)

    retry = finish_job(job, Outcome.failure("again"))

    assert retry is not None
    claimed = claim_next("w", ["quick"], LEASE)
    assert claimed is not None and claimed.pk == retry.pk and claimed.attempt == 2


def test_retries_stop_after_max_attempts() -> None:
    job = run("limited", auto_reschedule_on_failure=True, max_attempts=3)
    runs = [job]
    while (
        retry := finish_job(runs[-1], Outcome.failure(f"attempt {runs[-1].attempt}"))
    ) is not None:
        runs.append(reclaim(retry))
        assert len(runs) <= 3

    assert [each.attempt for each in runs] == [1, 2, 3]
    rows = WorkerJob.objects.order_by("pk")
    assert [row.status for row in rows] == [Status.FAILED] * 3
    assert [row.rescheduled_from_id for row in rows] == [None, runs[0].pk, runs[1].pk]
    assert not WorkerJob.objects.scheduled().exists()


def test_the_last_attempt_gets_no_retry() -> None:
    job = run("last", auto_reschedule_on_failure=True, max_attempts=2)
    WorkerJob.objects.filter(pk=job.pk).update(attempt=2)
    job.attempt = 2

    assert finish_job(job, Outcome.failure("final")) is None

    assert stored(job).status == Status.FAILED
    assert WorkerJob.objects.count() == 1


@pytest.mark.parametrize(
    "outcome",
    [Outcome.failure("Unknown job type", retryable=False), Outcome(True, "done")],
    ids=["not-retryable", "success"],
)
def test_no_retry_for_a_success_or_a_non_retryable_failure(outcome: Outcome) -> None:
    job = run("final", auto_reschedule_on_failure=True, max_attempts=5)

    assert finish_job(job, outcome) is None

    assert stored(job).success is outcome.success
    assert WorkerJob.objects.count() == 1


def test_no_retry_without_a_retry_policy() -> None:
    job = run("once")

    assert finish_job(job, Outcome.failure("boom")) is None

    assert stored(job).status == Status.FAILED
    assert WorkerJob.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_failure_and_its_retry_land_together(monkeypatch: pytest.MonkeyPatch) -> None:
    job = run("atomic", auto_reschedule_on_failure=True, max_attempts=3)

    def broken_resubmit(*args: Any, **kwargs: Any) -> WorkerJob:
        raise RuntimeError("the retry could not be written")

    monkeypatch.setattr(finish, "resubmit", broken_resubmit)

    with pytest.raises(RuntimeError, match="could not be written"):
        finish_job(job, Outcome.failure("boom"))

    row = stored(job)  # the failure was rolled back with the retry: the run can finish again
    assert (row.status, row.finished, row.result) == (Status.RUNNING, None, None)
    monkeypatch.undo()
    assert finish_job(job, Outcome.failure("boom")) is not None
    assert stored(job).status == Status.FAILED


# Leases


def test_renew_leases_extends_only_the_given_workers_running_jobs() -> None:
    a, b, c = run("a", worker="A"), run("b", worker="B"), run("c", worker="C")
    done = run("done", worker="A")
    finish_job(done, Outcome(True))
    waiting = submit_job(tag="waiting", type="demo.add", queue="waiting")
    before = timezone.now() - timedelta(
        milliseconds=1
    )  # by the database's clock: SQLite's counts ms

    assert renew_leases(["A", "B"], {a.pk, b.pk}, timedelta(minutes=10)) == set()

    after = timezone.now()
    for job in (a, b):
        row = stored(job)
        assert row.status == Status.RUNNING
        assert between(
            row.lease_expires, before + timedelta(minutes=10), after + timedelta(minutes=10)
        )
    assert stored(c).lease_expires == c.lease_expires
    assert (stored(done).status, stored(done).lease_expires) == (Status.SUCCEEDED, None)
    assert (stored(waiting).status, stored(waiting).lease_expires) == (Status.SCHEDULED, None)
    assert renew_leases([], set(), timedelta(minutes=10)) == set()
    assert renew_leases(["nobody"], set(), timedelta(minutes=10)) == set()


def test_renew_leases_names_the_known_runs_no_longer_leased_to_their_workers() -> None:
    kept, rescued = run("kept", worker="A"), run("rescued", worker="B")
    WorkerJob.objects.filter(pk=rescued.pk).update(worker="elsewhere")  # its row moved on

    assert renew_leases(["A", "B"], {kept.pk, rescued.pk}, LEASE) == {rescued.pk}
    assert stored(rescued).lease_expires == rescued.lease_expires  # not renewed for B


def expire(job: WorkerJob) -> None:
    WorkerJob.objects.filter(pk=job.pk).update(lease_expires=timezone.now() - timedelta(seconds=1))


def test_rescue_fails_jobs_whose_lease_expired_and_retries_them() -> None:
    retried = run("retried", worker="gone:1:0", auto_reschedule_on_failure=True, max_attempts=2)
    final = run("final", worker="gone:1:1")
    alive = run("alive", worker="here:2:0")
    expire(retried)
    expire(final)

    assert rescue_expired_jobs() == 2

    for job in (retried, final):
        row = stored(job)
        assert (row.status, row.success) == (Status.FAILED, False)
        error = (row.result or {}).get("error", "")
        assert job.worker in error
        assert "lease" in error
    retry = WorkerJob.objects.get(rescheduled_from=retried)
    assert (retry.status, retry.attempt, retry.tag) == (Status.SCHEDULED, 1, "retried")
    assert not WorkerJob.objects.filter(rescheduled_from=final).exists()
    assert stored(alive).status == Status.RUNNING
    assert rescue_expired_jobs() == 0


def test_rescue_spares_a_job_whose_lease_was_renewed_meanwhile() -> None:
    """A renewal that lands after rescue read the expired row must still save the job.

    The renewal is made from a log handler on the rescue's own warning, i.e. exactly between
    the rescue's read and its write.
    """
    job = run("slow-host", worker="slow:1:0")
    expire(job)

    renewals: list[int] = []  # how many rows each renewal extended

    class RenewOnRescue(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if not renewals:
                renewals.append(len(renew_leases(["slow:1:0"], {job.pk}, LEASE)))

    handler = RenewOnRescue(logging.WARNING)
    leases_logger = logging.getLogger("django_quickworker.leases")
    leases_logger.addHandler(handler)
    try:
        rescue_expired_jobs()
    finally:
        leases_logger.removeHandler(handler)

    assert renewals, "the rescue logged no warning to make the renewal from"
    row = stored(job)
    if renewals == [0]:  # the renewal lost nothing, found the job running: its host is alive
        assert row.status == Status.RUNNING, "a job whose lease had just been renewed was failed"
        assert row.lease_expires is not None and row.lease_expires > timezone.now()
    else:  # the rescue had already landed; the late renewal changed nothing
        assert row.status == Status.FAILED


# Dead workers


def test_end_jobs_of_fails_only_that_workers_running_jobs() -> None:
    retried = run("retried", worker="dead", auto_reschedule_on_failure=True, max_attempts=2)
    final = run("final", worker="dead")
    done = run("done", worker="dead")
    finish_job(done, Outcome(True, "kept"))
    alive = run("alive", worker="alive")
    reason = "Worker exited with signal SIGKILL."

    assert end_jobs_of("dead", reason) == 2

    for job in (retried, final):
        row = stored(job)
        assert (row.status, row.success, row.result) == (Status.FAILED, False, {"error": reason})
    assert WorkerJob.objects.get(rescheduled_from=retried).status == Status.SCHEDULED
    assert not WorkerJob.objects.filter(rescheduled_from=final).exists()
    assert (stored(done).status, stored(done).result) == (Status.SUCCEEDED, "kept")
    assert stored(alive).status == Status.RUNNING
    assert end_jobs_of("dead", reason) == 0


# Finishing and claiming the next job in one go


def test_finish_and_claim_next_finishes_then_claims() -> None:
    job = run("pair", worker="w")
    following = submit_job(tag="pair:next", type="demo.add", queue="pair")
    claimed = finish.finish_and_claim_next(job, Outcome(True, {"sum": 3}), ["pair"], LEASE)
    assert claimed is not None and claimed.pk == following.pk
    assert (claimed.status, claimed.worker, claimed.attempt) == (Status.RUNNING, "w", 1)
    row = stored(job)
    assert (row.status, row.success, row.result) == (Status.SUCCEEDED, True, {"sum": 3})
    assert (job.status, job.result) == (Status.SUCCEEDED, {"sum": 3})
    assert finish.finish_and_claim_next(claimed, Outcome(True), ["pair"], LEASE) is None
    assert stored(claimed).status == Status.SUCCEEDED


def test_finish_and_claim_next_respects_the_fence() -> None:
    job = run("pair-fence", worker="w")
    following = submit_job(tag="pair-fence:next", type="demo.add", queue="pair-fence")
    impostor = stored(job)
    impostor.worker = "intruder"
    claimed = finish.finish_and_claim_next(impostor, Outcome(True, "x"), ["pair-fence"], LEASE)
    assert stored(job).status == Status.RUNNING  # not finished by someone else's word
    assert claimed is not None and claimed.pk == following.pk
    assert impostor.status == Status.RUNNING


def test_finish_and_claim_next_applies_retries() -> None:
    job = run("pair-retry", worker="w", auto_reschedule_on_failure=True, max_attempts=2)
    finish.finish_and_claim_next(job, Outcome.failure("boom"), ["pair-retry"], LEASE)
    assert stored(job).status == Status.FAILED
    retry = WorkerJob.objects.get(rescheduled_from=job)
    assert retry.status in (Status.SCHEDULED, Status.RUNNING)  # due now: may be claimed at once
