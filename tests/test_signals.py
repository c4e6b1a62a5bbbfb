"""Lifecycle signals: job_submitted in the submitting process; job_started, job_finished and
job_retried where a real runworkers runs, ends and retries jobs."""

import json
import logging
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from django.dispatch import Signal

from django_quickworker import submit_job, submit_jobs
from django_quickworker.claim import claim_next
from django_quickworker.finish import Outcome, finish_job
from django_quickworker.models import Status, WorkerJob
from django_quickworker.signals import job_retried, job_submitted
from tests.conftest import StartRunworkers, wait_until

FAST_POLL = '{"POLL_INTERVAL": 0.1}'

Received = list[dict[str, Any]]


def listen(signal: Signal) -> Iterator[Received]:
    """Connect a receiver to ``signal`` for one test; yield the kwargs of each sending."""
    received: Received = []

    def receiver(sender: type, **kwargs: Any) -> None:
        assert sender is WorkerJob
        kwargs.pop("signal")
        received.append(kwargs)

    signal.connect(receiver)
    yield received
    signal.disconnect(receiver)


@pytest.fixture
def submitted() -> Iterator[Received]:
    yield from listen(job_submitted)


@pytest.fixture
def retried() -> Iterator[Received]:
    yield from listen(job_retried)


# In the submitting process


@pytest.mark.django_db
def test_job_submitted_is_sent_with_the_saved_row(submitted: Received) -> None:
    job = submit_job(tag="signal:one", type="demo.add", data={"a": 1, "b": 2})
    assert [kwargs["job"] for kwargs in submitted] == [job]
    assert submitted[0]["job"].pk is not None


@pytest.mark.django_db
def test_job_submitted_is_sent_once_per_row_of_a_bulk_submit(submitted: Received) -> None:
    jobs = submit_jobs([{"tag": f"signal:bulk:{i}", "type": "demo.add"} for i in range(3)])
    assert [kwargs["job"] for kwargs in submitted] == jobs
    assert all(kwargs["job"].pk is not None for kwargs in submitted)


@pytest.mark.django_db
def test_job_submitted_is_not_sent_for_a_skipped_submission(submitted: Received) -> None:
    first = submit_job(tag="signal:skip", type="demo.add")
    again = submit_jobs(
        [{"tag": "signal:skip", "type": "demo.add"}, {"tag": "signal:new", "type": "demo.add"}],
        on_duplicate_tag="skip",
    )
    assert again[0] == first
    assert [kwargs["job"] for kwargs in submitted] == [first, again[1]]


@pytest.mark.django_db(transaction=True)
def test_job_submitted_is_sent_inside_the_callers_transaction(submitted: Received) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        submit_job(tag="signal:rolled-back", type="demo.add")
        assert len(submitted) == 1  # sent before the commit...
        raise RuntimeError("roll back")
    assert not WorkerJob.objects.filter(tag="signal:rolled-back").exists()  # ...of nothing


@pytest.mark.django_db
def test_a_raising_receiver_is_logged_and_the_job_still_submitted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(sender: type, **kwargs: Any) -> None:
        raise ValueError("receiver bug")

    job_submitted.connect(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="django_quickworker.signals"):
            job = submit_job(tag="signal:broken", type="demo.add")
    finally:
        job_submitted.disconnect(broken)
    assert WorkerJob.objects.filter(pk=job.pk).exists()
    assert "receiver bug" in caplog.text


@pytest.mark.django_db
def test_job_retried_is_sent_with_the_failed_job_and_its_retry(
    retried: Received, submitted: Received
) -> None:
    submit_job(tag="signal:retry", type="demo.add", queue="signal-retry", max_attempts=2)
    job = claim_next("w", ["signal-retry"], timedelta(seconds=60))
    assert job is not None
    retry = finish_job(job, Outcome.failure("try again"))
    assert retry is not None
    assert retried == [{"job": job, "retry": retry}]
    assert retried[0]["job"].status == Status.FAILED
    assert len(submitted) == 1  # a retry is no new submission


@pytest.mark.django_db
def test_the_admins_retry_sends_job_retried(retried: Received) -> None:
    submit_job(tag="signal:manual", type="demo.add", queue="signal-manual")
    job = claim_next("w", ["signal-manual"], timedelta(seconds=60))
    assert job is not None
    finish_job(job, Outcome.failure("broken"))
    retries = WorkerJob.objects.filter(pk=job.pk).retry(limit=10)
    assert [kwargs["job"].pk for kwargs in retried] == [job.pk]
    assert [kwargs["retry"] for kwargs in retried] == retries.written


# In the processes of a real runworkers


def read_log(path: Path) -> Received:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def signals_of(log: Received, job_id: int) -> list[str]:
    return [entry["signal"] for entry in log if entry["job"]["id"] == job_id]


def test_workers_send_started_and_finished_with_the_outcome(
    start_runworkers: StartRunworkers, tmp_path: Path
) -> None:
    added = submit_job(tag="signal:add", type="demo.add", data={"a": 2, "b": 3})
    failed = submit_job(tag="signal:fail", type="demo.fail", data={"reason": "test"})
    log_file = tmp_path / "signals.jsonl"
    runner = start_runworkers("--burst", env={"DEMO_SIGNAL_LOG": str(log_file)})
    assert runner.wait() == 0, runner.output

    log = read_log(log_file)
    assert signals_of(log, added.pk) == ["job_started", "job_finished"]
    assert signals_of(log, failed.pk) == ["job_started", "job_finished"]
    started, finished = [entry for entry in log if entry["job"]["id"] == added.pk]
    assert started["job"] == {"id": added.pk, "status": "running", "attempt": 1}
    assert started["sender"] == "WorkerJob"
    assert finished["status"] == "succeeded"
    assert finished["result"] == {"sum": 5}
    assert finished["error"] is None
    failure = next(entry for entry in log if entry["job"]["id"] == failed.pk and "error" in entry)
    assert failure["status"] == "failed"
    assert failure["result"] is None
    assert failure["error"] == "demo.fail failed as asked: test"
    # Sent in the worker that ran the job, a child of runworkers: not in the parent or here.
    assert started["pid"] == finished["pid"]
    assert {entry["pid"] for entry in log}.isdisjoint({runner.process.pid, os.getpid()})


def test_workers_send_job_retried_for_an_automatic_retry(
    start_runworkers: StartRunworkers, tmp_path: Path
) -> None:
    job = submit_job(
        tag="signal:retries",
        type="demo.fail",
        max_attempts=2,
        auto_reschedule_on_failure_delay=0,
    )
    log_file = tmp_path / "signals.jsonl"
    runner = start_runworkers("--burst", env={"DEMO_SIGNAL_LOG": str(log_file)})
    assert runner.wait() == 0, runner.output

    retry = WorkerJob.objects.get(rescheduled_from=job)
    assert retry.status == Status.FAILED  # the second and last attempt ran too
    log = read_log(log_file)
    [retried] = [entry for entry in log if entry["signal"] == "job_retried"]
    assert retried["job"] == {"id": job.pk, "status": "failed", "attempt": 1}
    assert retried["retry"] == {"id": retry.pk, "status": "scheduled", "attempt": 1}
    assert signals_of(log, retry.pk) == ["job_started", "job_finished"]
    assert [entry["job"]["attempt"] for entry in log if entry["signal"] == "job_started"] == [1, 2]
    assert runner.process.pid not in {entry["pid"] for entry in log}


def test_runworkers_sends_job_finished_for_a_job_it_ends(
    start_runworkers: StartRunworkers, tmp_path: Path
) -> None:
    job = submit_job(tag="signal:slow", type="demo.record", data={"seconds": 60}, timeout=1)
    log_file = tmp_path / "signals.jsonl"
    runner = start_runworkers(
        "--workers", "1", env={"DEMO_SIGNAL_LOG": str(log_file), "QUICKWORKER": FAST_POLL}
    )
    wait_until(
        lambda: "job_finished" in signals_of(read_log(log_file), job.pk),
        timeout=20,
        what="the timeout's job_finished",
    )
    started, finished = [entry for entry in read_log(log_file) if entry["job"]["id"] == job.pk]
    assert started["signal"] == "job_started"
    assert finished["status"] == "failed"
    assert finished["error"] == "Job timed out after 1s."
    # The worker was killed mid-job: the parent recorded the timeout, and sent the signal.
    assert finished["pid"] == runner.process.pid
    assert started["pid"] != runner.process.pid
