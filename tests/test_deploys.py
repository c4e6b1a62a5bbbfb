"""Cron jobs and job types across hosts and deploys: what each runworkers declares (its
WorkerProcess row) decides which cron rows exist and on which schedule, so that old and new
code running side by side never fight; cron schedules that cannot run; USE_TZ = False;
cancelling one occurrence; reserved cron tags; and what the summary says about all this."""

import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test.utils import override_settings
from django.utils import timezone

from django_quickworker import job, processes, submit_job
from django_quickworker.claim import claim_next
from django_quickworker.cron import (
    REMOVED_FROM_CODE,
    ensure_cron_jobs,
    pending_cron_rows,
)
from django_quickworker.exceptions import InvalidCronSchedule, InvalidOption
from django_quickworker.finish import Outcome, finish_job
from django_quickworker.models import Status, WorkerJob, WorkerProcess
from django_quickworker.overview import summarize
from django_quickworker.registry import JobRegistry, JobType
from tests.conftest import StartRunworkers, wait_until

LEASE = timedelta(seconds=60)
CLEANUP_TAG = "cron:removeOldWorkerJobs"


def cron_job(ctx: Any) -> None: ...


def host(name: str, started: datetime, crons: dict[str, str], **fields: Any) -> WorkerProcess:
    now = timezone.now()
    values = {"workers": 1, "version": "0.1.0", "started": started, "heartbeat": now}
    return WorkerProcess.objects.create(name=name, crons=crons, **{**values, **fields})


def as_host(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Run what follows as the runworkers called ``name`` (its identity only)."""
    monkeypatch.setattr(processes, "process_name", lambda: name)


def pending(tag: str) -> list[WorkerJob]:
    return list(pending_cron_rows([tag]).order_by("pk"))


# --- point 4: declarations on WorkerProcess rows ------------------------------------------


@pytest.mark.django_db
def test_a_changed_schedule_takes_effect_without_a_fight_between_old_and_new_hosts(
    job_registry: JobRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = timezone.now()
    host("old:1", now - timedelta(hours=1), {"test.report": "0 3 * * *"})
    host("new:2", now, {"test.report": "*/10 * * * *"})
    job("test.report", cron="0 3 * * *")(cron_job)  # this process runs the old code

    for name in ["old:1", "new:2", "old:1", "new:2", "old:1"]:  # they take turns, as hosts do
        as_host(monkeypatch, name)
        ensure_cron_jobs()

    rows = WorkerJob.objects.filter(tag="cron:test.report")
    assert [(row.status, row.cron_schedule) for row in rows] == [
        (Status.SCHEDULED, "*/10 * * * *")  # the newest host's, written once, never replaced
    ]


@pytest.mark.django_db
def test_a_cron_job_removed_from_the_new_code_stops_once_no_old_host_is_alive(
    job_registry: JobRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = timezone.now()
    old = host("old:1", now - timedelta(hours=1), {"test.legacy": "*/5 * * * *"})
    host("new:2", now, {})
    job("test.legacy", cron="*/5 * * * *")(cron_job)
    as_host(monkeypatch, "old:1")
    ensure_cron_jobs()
    [row] = pending("cron:test.legacy")
    del job_registry._types["test.legacy"]  # the new code no longer has it

    as_host(monkeypatch, "new:2")
    ensure_cron_jobs()
    assert pending("cron:test.legacy") == [row]  # the old host still declares it

    WorkerProcess.objects.filter(pk=old.pk).update(heartbeat=now - timedelta(hours=1))
    ensure_cron_jobs()
    row.refresh_from_db()
    assert (row.status, row.result) == (Status.CANCELLED, {"error": REMOVED_FROM_CODE})


@pytest.mark.django_db(transaction=True)
def test_runworkers_records_its_types_and_cron_jobs(start_runworkers: StartRunworkers) -> None:
    runner = start_runworkers("--workers", "1")
    process = wait_until(lambda: WorkerProcess.objects.first(), what="the WorkerProcess row")
    assert "demo.add" in process.types and "removeOldWorkerJobs" in process.types
    assert process.crons == {"removeOldWorkerJobs": "@hourly"}
    assert runner.process.poll() is None


@pytest.mark.django_db
def test_the_summary_reports_jobs_of_types_no_live_runworkers_knows() -> None:
    now = timezone.now()
    host("web:1", now, {"removeOldWorkerJobs": "@hourly"}, types=["demo.add"])
    ensure_cron_jobs()
    first = submit_job(tag="a", type="demo.fail", due=now - timedelta(minutes=2))
    submit_job(tag="b", type="demo.fail", on_duplicate_tag="allow")
    submit_job(tag="c", type="demo.add")

    summary = summarize()

    assert [(b.type, b.count, b.oldest_due) for b in summary.unknown_types] == [
        ("demo.fail", 2, first.due),
        ("removeOldWorkerJobs", 1, pending(CLEANUP_TAG)[0].due),
    ]
    assert not summary.is_healthy
    assert any(p.startswith("2 scheduled job(s) of type 'demo.fail'") for p in summary.problems), (
        summary.problems
    )
    report = summary.as_dict()["unknown_types"]
    assert report[0] == {"type": "demo.fail", "count": 2, "oldest_due": first.due.isoformat()}


# --- point 5: cron schedules that cannot run, USE_TZ = False, cancelling an occurrence ------


def test_a_cron_schedule_that_never_fires_is_refused_at_registration(
    job_registry: JobRegistry,
) -> None:
    with pytest.raises(ImproperlyConfigured) as error:
        job("test.never", cron="0 0 30 2 *")(cron_job)

    assert str(error.value) == (
        "@job('test.never', cron='0 0 30 2 *'): cron='0 0 30 2 *' never fires: no date "
        "matches all of its fields."
    )
    assert "test.never" not in job_registry


@pytest.mark.django_db
def test_submit_job_refuses_a_cron_schedule_that_never_fires_with_its_own_error() -> None:
    with pytest.raises(InvalidCronSchedule, match="never fires"):
        submit_job(tag="never", type="demo.add", cron="0 0 31 4 *")  # April has 30 days
    assert not WorkerJob.objects.exists()


@pytest.mark.django_db
def test_one_cron_job_that_cannot_be_scheduled_does_not_stop_the_others(
    job_registry: JobRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    # Registered past @job's checks, as an older version of the code could have.
    job_registry.register(JobType("test.broken", cron_job, cron="0 0 30 2 *"))
    job("test.fine", cron="*/5 * * * *")(cron_job)

    ensure_cron_jobs()

    assert len(pending("cron:test.fine")) == 1
    assert len(pending(CLEANUP_TAG)) == 1
    assert pending("cron:test.broken") == []
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "cron:test.broken" in error.getMessage() and error.exc_info is not None


@pytest.mark.django_db
def test_cron_and_due_times_work_with_use_tz_off(job_registry: JobRegistry) -> None:
    job("test.naive", cron="*/5 * * * *")(cron_job)
    with override_settings(USE_TZ=False):
        ensure_cron_jobs()
        [row] = pending("cron:test.naive")
        assert timezone.is_naive(row.due) and row.due.minute % 5 == 0
        WorkerJob.objects.filter(pk=row.pk).update(due=timezone.now())
        claimed = claim_next("w", None, LEASE)
        assert claimed is not None and claimed.pk == row.pk
        finish_job(claimed, Outcome(True))
        [following] = pending("cron:test.naive")
        assert timezone.is_naive(following.due) and following.due > timezone.now()
        later = submit_job(tag="later", type="demo.add", due=datetime(2031, 1, 2, 3, 4))
        assert WorkerJob.objects.get(pk=later.pk).due == datetime(2031, 1, 2, 3, 4)
        assert summarize().as_text().startswith("django-quickworker queue at ")


@pytest.mark.django_db
def test_cancelling_a_running_occurrence_of_a_declared_cron_job_skips_only_it() -> None:
    ensure_cron_jobs()
    [row] = pending(CLEANUP_TAG)
    WorkerJob.objects.filter(pk=row.pk).update(due=timezone.now())
    claimed = claim_next("w", None, LEASE)
    assert claimed is not None and claimed.pk == row.pk

    finish_job(claimed, Outcome(False, {"error": "stopped"}, cancelled=True))

    assert WorkerJob.objects.get(pk=row.pk).status == Status.CANCELLED
    [following] = pending(CLEANUP_TAG)
    assert following.due > timezone.now()


@pytest.mark.django_db
def test_a_cancelled_pending_occurrence_is_followed_by_the_next_at_the_next_check() -> None:
    ensure_cron_jobs()
    [row] = pending(CLEANUP_TAG)
    WorkerJob.objects.filter(pk=row.pk).cancel("an operator skipped it")

    ensure_cron_jobs()  # each runworkers does so once per LEASE

    [following] = pending(CLEANUP_TAG)
    assert following.pk != row.pk and following.due >= row.due


@pytest.mark.django_db(transaction=True)
def test_runworkers_gives_a_cancelled_cron_occurrence_its_successor(
    start_runworkers: StartRunworkers,
) -> None:
    runner = start_runworkers("--workers", "1", env={"QUICKWORKER": '{"LEASE": 2}'})
    [row] = wait_until(lambda: pending(CLEANUP_TAG), what="the cleanup's pending row")
    WorkerJob.objects.filter(pk=row.pk).cancel("an operator skipped it")
    [following] = wait_until(lambda: pending(CLEANUP_TAG), what="its successor")
    assert following.pk != row.pk
    assert runner.process.poll() is None


# --- point 10: reserved tags ---------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("type_name", ["removeOldWorkerJobs", "demo.add"])
def test_the_tag_of_a_declared_cron_job_is_reserved(type_name: str) -> None:
    ensure_cron_jobs()
    [row] = pending(CLEANUP_TAG)

    with pytest.raises(InvalidOption) as error:
        submit_job(tag=CLEANUP_TAG, type=type_name)

    assert str(error.value) == (
        "tag='cron:removeOldWorkerJobs' is reserved for the cron job declared in code by "
        "@job('removeOldWorkerJobs', cron='@hourly'); use another tag."
    )
    assert pending(CLEANUP_TAG) == [row]  # not cancelled by a "replace"
    assert WorkerJob.objects.count() == 1


@pytest.mark.django_db
def test_a_declared_cron_job_without_a_pending_row_is_a_problem(admin_client: Any) -> None:
    host("web:1", timezone.now(), {"removeOldWorkerJobs": "@hourly"})
    ensure_cron_jobs()
    assert summarize().is_healthy, summarize().problems
    WorkerJob.objects.filter(tag=CLEANUP_TAG).cancel("gone")

    summary = summarize()

    problem = (
        "Cron job cron:removeOldWorkerJobs is declared in code but has no pending run; each "
        "runworkers schedules it again within a LEASE."
    )
    assert summary.problems == [problem]
    assert summary.as_dict()["missing_cron_jobs"] == [CLEANUP_TAG]
    page = admin_client.get("/admin/quickworker/workerjob/").content.decode()
    assert problem in page
