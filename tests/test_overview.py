"""The queue summary (overview.py) and ``manage.py quickworker status``: text, JSON, exit codes."""

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection
from django.utils import timezone

from django_quickworker.cron import ensure_cron_jobs
from django_quickworker.models import Status, WorkerJob, WorkerProcess
from django_quickworker.overview import RowCount, count_rows, summarize
from django_quickworker.schedule import format_duration
from tests.conftest import MANAGE, database_url

pytestmark = pytest.mark.django_db


def make_row(
    status: str = Status.SCHEDULED, *, at: datetime | None = None, **fields: Any
) -> WorkerJob:
    """A job row in ``status``, with the timestamps that status needs (all at ``at``)."""
    at = at or timezone.now()
    values: dict[str, Any] = {"tag": f"row:{status}", "type": "demo.add", "due": at}
    values["data"] = {"a": 1, "b": 2}
    if status != Status.SCHEDULED:
        values.update(started=at, attempt=1, worker="host:1:0")
    if status == Status.RUNNING:
        values["lease_expires"] = at + timedelta(seconds=60)
    if status in (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED):
        values.update(finished=at + timedelta(seconds=2), success=status == Status.SUCCEEDED)
        values["result"] = {"sum": 3} if status == Status.SUCCEEDED else {"error": "boom"}
    if status == Status.CANCELLED:
        values.update(started=None, attempt=0, worker="")
    values.update(fields)
    return WorkerJob.objects.create(status=status, **values)


def live_process(name: str = "host:1", **fields: Any) -> WorkerProcess:
    now = timezone.now()
    values = {"workers": 2, "queues": "", "version": "0.1.0", "started": now, "heartbeat": now}
    process = WorkerProcess.objects.create(name=name, **{**values, **fields})
    ensure_cron_jobs()  # as a runworkers does when it starts (the cleanup job's row)
    return process


def run_status(*args: str) -> tuple[int, str]:
    """Run ``quickworker status`` in this process; return its exit code and output."""
    out = StringIO()
    try:
        call_command("quickworker", "status", *args, stdout=out)
    except SystemExit as exit:
        return int(exit.code or 0), out.getvalue()
    return 0, out.getvalue()


# --- counting ------------------------------------------------------------------------------


def test_counts_are_exact_up_to_the_limit() -> None:
    for _ in range(3):
        make_row()
    assert count_rows(WorkerJob.objects.all(), limit=3) == RowCount(3)
    assert str(RowCount(12345)) == "12,345"


@pytest.mark.sqlite
def test_past_the_limit_sqlite_says_more_than() -> None:
    for _ in range(4):
        make_row()
    count = count_rows(WorkerJob.objects.all(), limit=3)
    assert count == RowCount(4, is_exact=False)
    assert str(count) == "more than 3"


@pytest.mark.postgresql
@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)  # MySQL's ANALYZE TABLE commits
def test_past_the_limit_server_databases_estimate() -> None:
    for _ in range(4):
        make_row()
    with connection.cursor() as cursor:
        analyze = "ANALYZE TABLE" if connection.vendor == "mysql" else "ANALYZE"
        cursor.execute(f"{analyze} quickworker_workerjob")
    count = count_rows(WorkerJob.objects.all(), limit=3)
    assert not count.is_exact and count.is_estimate and count.value >= 4
    assert str(count).startswith("≈ ")


def test_count_reads_at_most_limit_plus_one_rows(
    django_assert_max_num_queries: Any,
) -> None:
    make_row()
    with django_assert_max_num_queries(1) as queries:
        count_rows(WorkerJob.objects.filter(status=Status.SCHEDULED), limit=50)
    assert "LIMIT 51" in queries.captured_queries[0]["sql"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.25, "250 ms"),
        (4.27, "4.2 s"),
        (42, "42 s"),
        (185, "3 min 5 s"),
        (3600, "1 h"),
        (7830, "2 h 10 min"),
        (3 * 86400 + 4 * 3600 + 5, "3 d 4 h"),
        (-1, "0 ms"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text


# --- the summary ---------------------------------------------------------------------------


def test_summary_of_an_empty_queue_without_workers() -> None:
    summary = summarize()
    assert {name: count.value for name, count in summary.counts.items()} == dict.fromkeys(
        Status.values, 0
    )
    assert summary.latency is None and summary.processes == []
    assert summary.problems == [
        "No runworkers process is alive (none sent a heartbeat in the last 1 min)."
    ]
    assert not summary.is_healthy


def test_summary_counts_latency_failures_and_processes() -> None:
    now = timezone.now()
    make_row(Status.SCHEDULED, at=now - timedelta(seconds=90))  # due, waiting 90 s
    make_row(Status.SCHEDULED, at=now - timedelta(seconds=10))
    make_row(Status.SCHEDULED, at=now + timedelta(hours=1))  # not due yet
    make_row(Status.RUNNING)
    make_row(Status.SUCCEEDED)
    make_row(Status.FAILED, at=now - timedelta(minutes=5))
    make_row(Status.FAILED, at=now - timedelta(hours=3))
    make_row(Status.CANCELLED)
    live_process("web1:10", queues="default,mail")
    live_process("old:1", heartbeat=now - timedelta(hours=1))  # dead: not listed

    summary = summarize(now=now)

    counts = {name: count.value for name, count in summary.counts.items()}
    assert counts == {
        "scheduled": 4,
        "running": 1,
        "succeeded": 1,
        "failed": 2,
        "cancelled": 1,
    }  # with the cleanup cron row
    assert summary.due.value == 2
    assert summary.latency == timedelta(seconds=90)
    assert summary.failed_recently.value == 1
    assert summary.expired_leases == RowCount(0)
    assert [(p.name, p.queues) for p in summary.processes] == [("web1:10", ["default", "mail"])]
    assert summary.is_healthy, summary.problems


def test_a_due_job_waiting_too_long_is_a_problem() -> None:
    live_process()
    make_row(Status.SCHEDULED, at=timezone.now() - timedelta(minutes=10))
    assert summarize().problems == ["The oldest due job has waited 10 min, longer than 5 min."]
    assert summarize(max_latency=timedelta(minutes=15)).is_healthy


def test_a_running_job_whose_lease_ran_out_unrescued_is_stuck() -> None:
    live_process()
    now = timezone.now()
    make_row(Status.RUNNING, lease_expires=now - timedelta(seconds=10))  # within slack
    assert summarize(now=now).is_healthy
    make_row(Status.RUNNING, lease_expires=now - timedelta(minutes=5))
    summary = summarize(now=now)
    assert summary.expired_leases == RowCount(1)
    assert summary.problems == [
        "1 running job(s) have an expired lease that no runworkers renewed or rescued."
    ]


def test_the_oldest_due_job_is_found_across_priorities() -> None:
    now = timezone.now()
    make_row(Status.SCHEDULED, at=now - timedelta(seconds=5), priority=10)
    make_row(Status.SCHEDULED, at=now - timedelta(seconds=50), priority=-3)
    assert summarize(now=now).latency == timedelta(seconds=50)


# --- the command ---------------------------------------------------------------------------


def test_status_text_when_healthy() -> None:
    live_process("web1:10", workers=4)
    make_row(Status.SUCCEEDED)
    make_row(Status.FAILED)
    code, output = run_status()
    assert code == 0, output
    lines = output.splitlines()
    assert lines[0].startswith("django-quickworker queue at ") and lines[0].endswith(": healthy")
    assert "  scheduled  1  (none due)" in lines
    assert "  succeeded  1" in lines
    assert "  failed     1  (1 in the last hour)" in lines
    assert "Workers: 1 runworkers process(es) alive" in lines
    assert any(
        line.startswith("  web1:10  4 worker(s), all queues, version 0.1.0, last heartbeat ")
        for line in lines
    )
    assert "Problems" not in output


def test_status_text_and_exit_code_when_unhealthy() -> None:
    make_row(Status.SCHEDULED, at=timezone.now() - timedelta(minutes=7))
    code, output = run_status()
    assert code == 1
    assert ": UNHEALTHY" in output.splitlines()[0]
    assert "  scheduled  1  (1 due, the oldest waiting 7 min)" in output
    assert "Problems\n  - No runworkers process is alive" in output
    assert "  - The oldest due job has waited 7 min, longer than 5 min." in output


def test_status_json() -> None:
    live_process("web1:10", queues="mail")
    make_row(Status.SCHEDULED, at=timezone.now() - timedelta(seconds=30))
    make_row(Status.FAILED)
    code, output = run_status("--json", "--max-latency", "20")
    assert code == 1
    report = json.loads(output)
    assert report["healthy"] is False
    assert report["problems"] == ["The oldest due job has waited 30 s, longer than 20 s."]
    assert report["counts"] == {
        "scheduled": 2,
        "running": 0,
        "succeeded": 0,
        "failed": 1,
        "cancelled": 0,
    }
    assert report["exact_counts"] is True
    assert report["due"] == 1 and report["failed_last_hour"] == 1
    assert 30 <= report["latency_seconds"] < 40
    assert report["max_latency_seconds"] == 20
    assert report["expired_leases"] == 0
    [process] = report["processes"]
    assert process["name"] == "web1:10" and process["queues"] == ["mail"]
    assert 0 <= process["heartbeat_age_seconds"] < 10
    datetime.fromisoformat(report["checked_at"])


def test_status_json_when_the_database_cannot_be_read(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(**options: Any) -> None:
        raise DatabaseError("connection refused")

    monkeypatch.setattr("django_quickworker.management.commands.quickworker.summarize", unreachable)
    code, output = run_status("--json")
    assert code == 2
    assert json.loads(output) == {
        "healthy": False,
        "problems": ["Cannot read the queue: connection refused"],
    }


@pytest.mark.parametrize("value", ["0", "-3", "soon", "nan"])
def test_max_latency_must_be_positive_seconds(value: str) -> None:
    with pytest.raises(CommandError, match=f"{value!r} is not a number of seconds above 0"):
        call_command("quickworker", "status", "--max-latency", value)


def test_a_subcommand_is_required() -> None:
    with pytest.raises(CommandError, match="SUBCOMMAND"):
        call_command("quickworker")


@pytest.mark.django_db(transaction=True)
def test_exit_codes_of_the_real_command() -> None:
    """As a health check runs it: a separate process, judged by its exit code."""
    environment = {**os.environ, "DATABASE_URL": database_url()}
    environment.pop("TEST_DATABASE_NAME", None)

    def check() -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(MANAGE), "quickworker", "status", "--json"]
        return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60)

    unhealthy = check()
    assert unhealthy.returncode == 1, unhealthy.stderr
    assert json.loads(unhealthy.stdout)["healthy"] is False
    live_process()
    healthy = check()
    assert healthy.returncode == 0, healthy.stderr
    assert json.loads(healthy.stdout)["healthy"] is True
