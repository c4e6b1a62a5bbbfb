"""removeOldWorkerJobs: finished, non-persistent rows past their remove_at go, in batches;
everything else stays."""

import re
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone

from django_quickworker import submit_job
from django_quickworker.claim import claim_next
from django_quickworker.cron import ensure_cron_jobs
from django_quickworker.finish import finish_job
from django_quickworker.jobs import delete_removable_jobs, remove_old_worker_jobs
from django_quickworker.models import Status, WorkerJob
from django_quickworker.worker import execute

OLD_ROWS = 200_000
BATCH = 5_000
LEASE = timedelta(seconds=60)


def make_row(tag: str, status: str, *, remove_in: timedelta | None, **fields: Any) -> WorkerJob:
    """A row in ``status`` (timestamps to match), removable ``remove_in`` from now."""
    now = timezone.now()
    started = None if status in (Status.SCHEDULED, Status.CANCELLED) else now - timedelta(days=9)
    finished = None if status in (Status.SCHEDULED, Status.RUNNING) else now - timedelta(days=8)
    success = {Status.SUCCEEDED: True, Status.FAILED: False, Status.CANCELLED: False}.get(status)
    return WorkerJob.objects.create(
        tag=tag,
        type="demo.add",
        status=status,
        due=now - timedelta(days=10),
        started=started,
        finished=finished,
        success=success,
        result=None if success is None else {"sum": 3} if success else {"error": "old"},
        attempt=0 if started is None else 1,
        worker="" if started is None else "host:1:0",
        remove_at=None if remove_in is None else now + remove_in,
        **fields,
    )


def clone(template: WorkerJob, copies: int) -> None:
    """Insert ``copies`` copies of ``template`` with one INSERT … SELECT, cycling them through
    succeeded, failed and cancelled (each consistent with the table's CHECK constraint)."""
    table = connection.ops.quote_name(WorkerJob._meta.db_table)
    columns = [
        str(field.column) for field in WorkerJob._meta.concrete_fields if not field.primary_key
    ]
    # n % 4: 0 cancelled (never started), 1 failed, 2 and 3 succeeded like the template.
    computed = {
        "tag": "t.tag || '-' || CAST(s.n AS TEXT)",
        "status": "CASE s.n %% 4 WHEN 0 THEN 'cancelled' WHEN 1 THEN 'failed' ELSE t.status END",
        "success": "(s.n %% 4 > 1)",
        "started": "CASE WHEN s.n %% 4 = 0 THEN NULL ELSE t.started END",
    }
    names = ", ".join(connection.ops.quote_name(column) for column in columns)
    values = ", ".join(
        computed.get(column, f"t.{connection.ops.quote_name(column)}") for column in columns
    )
    select = f"SELECT {values} FROM {table} t CROSS JOIN series s WHERE t.id = %s"
    if connection.vendor == "postgresql":
        sql = (
            f"INSERT INTO {table} ({names}) "
            f"{select.replace('series s', 'generate_series(1, %s) AS s(n)')}"
        )
        params = [copies, template.pk]
    elif connection.vendor == "mysql":  # no ||, no CAST AS TEXT; the WITH follows the INSERT
        select = select.replace("t.tag || '-' || CAST(s.n AS TEXT)", "CONCAT(t.tag, '-', s.n)")
        sql = (
            f"INSERT INTO {table} ({names}) WITH RECURSIVE series(n) AS (SELECT 1 UNION ALL "
            f"SELECT n + 1 FROM series WHERE n < %s) {select}"
        )
        params = [copies, template.pk]
    else:
        sql = (
            "WITH RECURSIVE series(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM series "
            f"WHERE n < %s) INSERT INTO {table} ({names}) {select}"
        )
        params = [copies, template.pk]
    with connection.cursor() as cursor:
        if connection.vendor == "mysql":  # MariaDB stops recursive CTEs at 1,000 rows
            cursor.execute("SET SESSION max_recursive_iterations = %s", [copies])
        cursor.execute(sql, params)
        assert cursor.rowcount in (copies, -1)


def batch_sizes(queries: CaptureQueriesContext) -> list[int]:
    """How many ids each DELETE of worker jobs named."""
    table = WorkerJob._meta.db_table
    sizes = []
    for query in queries.captured_queries:
        sql = query["sql"]
        if sql.lstrip().upper().startswith("DELETE") and table in sql:
            ids = re.search(r"IN \(([^)]*)\)", sql)
            assert ids is not None, sql
            sizes.append(len(ids.group(1).split(",")))
    return sizes


@pytest.mark.heavy
@pytest.mark.django_db
def test_two_hundred_thousand_old_rows_are_deleted_in_batches_and_nothing_else() -> None:
    old = make_row("old", Status.SUCCEEDED, remove_in=-timedelta(days=1))
    clone(old, OLD_ROWS - 1)
    keep = {
        "newer": make_row("newer", Status.SUCCEEDED, remove_in=timedelta(minutes=1)),
        "newer-failed": make_row("newer-failed", Status.FAILED, remove_in=timedelta(days=6)),
        "never": make_row("never", Status.SUCCEEDED, remove_in=None),
        # Persistent rows stay even if a remove_at was left on them.
        "persistent": make_row(
            "persistent", Status.FAILED, remove_in=-timedelta(days=1), persistent=True
        ),
        # Unfinished rows stay whatever their remove_at says.
        "pending": make_row("pending", Status.SCHEDULED, remove_in=-timedelta(days=1)),
        "running": make_row("running", Status.RUNNING, remove_in=-timedelta(days=1)),
        "fresh": submit_job(tag="fresh", type="demo.add"),
    }
    removable = WorkerJob.objects.filter(tag__startswith="old")
    assert removable.count() == OLD_ROWS
    assert {
        status: removable.filter(status=status).count()
        for status in (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)
    } == {Status.SUCCEEDED: 100_001, Status.FAILED: 50_000, Status.CANCELLED: 49_999}
    started = time.monotonic()

    with CaptureQueriesContext(connection) as queries:
        deleted = delete_removable_jobs(batch_size=BATCH)

    elapsed = time.monotonic() - started
    assert deleted == OLD_ROWS
    assert not removable.exists()
    assert sorted(WorkerJob.objects.values_list("tag", flat=True)) == sorted(keep)
    sizes = batch_sizes(queries)
    assert sum(sizes) == OLD_ROWS  # every row by one DELETE, none twice
    assert len(sizes) >= OLD_ROWS / BATCH
    assert max(sizes) <= BATCH
    # One selection of ids per batch, plus the last that finds none.
    selections = [q for q in queries.captured_queries if f"LIMIT {BATCH}" in q["sql"]]
    assert len(selections) == OLD_ROWS // BATCH + 1
    print(f"deleted {deleted} rows in {elapsed:.1f}s with {len(queries)} queries")


@pytest.mark.django_db
def test_rows_rescheduled_from_a_deleted_row_survive_unlinked() -> None:
    first = make_row("chain", Status.FAILED, remove_in=-timedelta(hours=1))
    second = make_row("chain", Status.FAILED, remove_in=timedelta(days=3), rescheduled_from=first)
    third = submit_job(tag="chain", type="demo.add")
    WorkerJob.objects.filter(pk=third.pk).update(rescheduled_from=second)
    removable_retry = make_row(
        "chain-old-retry", Status.FAILED, remove_in=-timedelta(hours=1), rescheduled_from=first
    )

    assert delete_removable_jobs(batch_size=1) == 2

    assert not WorkerJob.objects.filter(pk__in=[first.pk, removable_retry.pk]).exists()
    second.refresh_from_db()
    third.refresh_from_db()
    assert second.rescheduled_from_id is None
    assert third.rescheduled_from_id == second.pk  # its own link is untouched


@pytest.mark.django_db
def test_a_row_is_removable_exactly_from_its_remove_at() -> None:
    due_now = make_row("boundary", Status.SUCCEEDED, remove_in=timedelta(0))
    later = make_row("later", Status.SUCCEEDED, remove_in=timedelta(seconds=30))

    assert delete_removable_jobs(batch_size=10) == 1

    assert not WorkerJob.objects.filter(pk=due_now.pk).exists()
    assert WorkerJob.objects.filter(pk=later.pk).exists()
    assert delete_removable_jobs(batch_size=10) == 0


@pytest.mark.django_db
def test_the_job_uses_the_configured_batch_size() -> None:
    for index in range(7):
        make_row(f"old{index}", Status.SUCCEEDED, remove_in=-timedelta(minutes=1))
    make_row("stays", Status.SUCCEEDED, remove_in=timedelta(minutes=1))

    with (
        override_settings(QUICKWORKER={"CLEANUP_BATCH_SIZE": 3}),
        CaptureQueriesContext(connection) as queries,
    ):
        result = remove_old_worker_jobs(None)

    assert result == {"deleted": 7}
    assert sorted(batch_sizes(queries)) == [1, 3, 3]
    assert list(WorkerJob.objects.values_list("tag", flat=True)) == ["stays"]


@pytest.mark.django_db
def test_the_cron_row_runs_the_cleanup_and_schedules_its_next_hour() -> None:
    old = make_row("old", Status.SUCCEEDED, remove_in=-timedelta(hours=2))
    clone(old, 99)
    ensure_cron_jobs()
    WorkerJob.objects.filter(tag="cron:removeOldWorkerJobs").update(
        due=timezone.now() - timedelta(seconds=1)
    )
    claimed = claim_next("host:1:0", None, LEASE)
    assert claimed is not None and claimed.type == "removeOldWorkerJobs"

    outcome = execute(claimed)
    finish_job(claimed, outcome)

    claimed.refresh_from_db()
    assert (claimed.status, claimed.result) == (Status.SUCCEEDED, {"deleted": 100})
    assert not WorkerJob.objects.filter(tag__startswith="old").exists()
    [following] = WorkerJob.objects.scheduled().filter(tag="cron:removeOldWorkerJobs")
    assert following.cron_schedule == "@hourly"
    assert following.due.minute == following.due.second == 0
    assert timezone.now() < following.due <= timezone.now() + timedelta(hours=1)
