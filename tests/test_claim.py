"""claim_next: which job is claimed, what the claim writes, and exactly-once under concurrency."""

import functools
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries
from pytest_django.fixtures import Settings

from django_quickworker import submit_job, submit_jobs
from django_quickworker.claim import claim_next, next_due
from django_quickworker.finish import Outcome, finish_job
from django_quickworker.models import CLAIMABLE_INDEX, Status, WorkerJob
from tests.conftest import StartRunworkers, plan_nodes, run_together

LEASE = timedelta(seconds=60)
TYPES = ["demo.add", "demo.noop"]  # what a worker claims: the types it knows


def make_job(tag: str, **options: Any) -> WorkerJob:
    return submit_job(tag=tag, type="demo.add", data={"a": 1, "b": 2}, **options)


def claimed_tags(worker: str = "w", queues: list[str] | None = None) -> list[str]:
    """Claim until nothing is left; the tags in claim order."""
    tags = []
    while (job := claim_next(worker, queues, LEASE)) is not None:
        tags.append(job.tag)
    return tags


@pytest.mark.django_db
def test_an_empty_queue_gives_none() -> None:
    assert claim_next("w", None, LEASE) is None
    assert claim_next("w", ["default"], LEASE) is None


@pytest.mark.django_db
def test_higher_priority_is_claimed_first() -> None:
    make_job("low", priority=-1)
    make_job("normal", priority=0)
    make_job("high", priority=5)
    make_job("higher", priority=10)

    assert claimed_tags() == ["higher", "high", "normal", "low"]


@pytest.mark.django_db
def test_within_a_priority_the_earliest_due_is_claimed_first() -> None:
    now = timezone.now()
    # Inserted latest-due first, so the ids run against the due order.
    make_job("due-1s", due=now - timedelta(seconds=1))
    make_job("due-1m", due=now - timedelta(minutes=1))
    make_job("due-1h", due=now - timedelta(hours=1))
    make_job("urgent-but-recent", due=now - timedelta(seconds=1), priority=1)

    assert claimed_tags() == ["urgent-but-recent", "due-1h", "due-1m", "due-1s"]


@pytest.mark.django_db
def test_same_priority_and_due_are_claimed_by_id() -> None:
    due = timezone.now() - timedelta(seconds=5)
    jobs = [make_job(f"job{index}", due=due) for index in range(5)]

    assert claimed_tags() == [job.tag for job in sorted(jobs, key=lambda job: job.pk)]


@pytest.mark.django_db
def test_a_job_due_in_the_future_is_never_claimed() -> None:
    make_job("later", delay=timedelta(minutes=5))
    make_job("much-later", due=timezone.now() + timedelta(days=1), priority=100)

    assert claim_next("w", None, LEASE) is None

    make_job("now")
    assert claimed_tags() == ["now"]
    assert WorkerJob.objects.scheduled().count() == 2


@pytest.mark.django_db
def test_only_the_given_queues_are_claimed() -> None:
    make_job("in-a", queue="a", priority=3)
    make_job("in-b", queue="b", priority=2)
    make_job("in-default", priority=1)

    assert claimed_tags(queues=["b"]) == ["in-b"]
    assert claimed_tags(queues=["missing"]) == []
    assert claimed_tags(queues=["default", "a"]) == ["in-a", "in-default"]


@pytest.mark.django_db
def test_queue_names_are_matched_as_written() -> None:
    # Names that submit_job refuses (written in afterwards), holding what the text of an
    # SQL array would read as syntax.
    odd = ['q"uote', "back\\slash", "com,ma", "{braces}", "NULL", " spaced "]
    for name in odd:
        WorkerJob.objects.filter(pk=make_job(f"in-{name}").pk).update(queue=name)
    make_job("in-null", queue="null")

    assert claimed_tags(queues=odd[:3]) == [f"in-{name}" for name in odd[:3]]
    assert claimed_tags(queues=odd[3:]) == [f"in-{name}" for name in odd[3:]]
    assert claimed_tags(queues=["null"]) == ["in-null"]


@pytest.mark.django_db
def test_no_queues_means_every_queue() -> None:
    make_job("in-a", queue="a", priority=2)
    make_job("in-default", priority=1)

    assert claimed_tags(queues=None) == ["in-a", "in-default"]


@pytest.mark.django_db
def test_a_claim_marks_the_row_running_under_the_worker_with_a_lease() -> None:
    job = make_job("job")
    lease = timedelta(seconds=42)
    before = timezone.now()

    claimed = claim_next("host:123:0", None, lease)

    after = timezone.now()
    assert claimed is not None and claimed.pk == job.pk
    stored = WorkerJob.objects.get(pk=job.pk)
    for row in (claimed, stored):
        assert row.status == Status.RUNNING
        assert row.worker == "host:123:0"
        assert row.attempt == 1
        assert row.started is not None and timezone.is_aware(row.started)
        assert before <= row.started <= after
        # By the database's clock, here this machine's (SQLite's counts milliseconds).
        assert row.lease_expires is not None
        tick = timedelta(milliseconds=1)
        assert before + lease - tick <= row.lease_expires <= after + lease + tick
        assert row.finished is None and row.success is None
        assert row.data == {"a": 1, "b": 2}
    assert stored.updated_at >= before


@pytest.mark.django_db
def test_a_claimed_row_reads_as_the_orm_reads_it() -> None:
    make_job("job", remove_delay=timedelta(days=2))

    claimed = claim_next("w", None, LEASE)

    assert claimed is not None
    stored = WorkerJob.objects.get(pk=claimed.pk)
    for field in WorkerJob._meta.concrete_fields:
        mine, theirs = getattr(claimed, field.attname), getattr(stored, field.attname)
        assert mine == theirs, field.name
        if isinstance(theirs, datetime):  # in the same zone too (or none, naive)
            assert isinstance(mine, datetime) and mine.tzinfo is theirs.tzinfo, field.name


@pytest.mark.django_db
def test_a_claimed_row_reads_as_the_orm_reads_it_after_use_tz_changes(settings: Settings) -> None:
    """The queue's reused cursor (PostgreSQL's) reads datetimes in the zone of the settings
    now, not of those it was made under."""
    make_job("before")
    assert claim_next("w", None, LEASE) is not None
    settings.USE_TZ = False
    make_job("after")
    claimed = claim_next("w", None, LEASE)
    assert claimed is not None
    stored = WorkerJob.objects.get(pk=claimed.pk)
    assert claimed.started is not None and timezone.is_naive(claimed.started)
    assert (claimed.due, claimed.started) == (stored.due, stored.started)


@pytest.mark.django_db
def test_a_claim_adds_one_to_the_attempt() -> None:
    job = make_job("job")
    WorkerJob.objects.filter(pk=job.pk).update(attempt=3)

    claimed = claim_next("w", None, LEASE)

    assert claimed is not None and claimed.attempt == 4
    assert WorkerJob.objects.get(pk=job.pk).attempt == 4


@pytest.mark.django_db
def test_a_claimed_job_is_not_claimed_again() -> None:
    make_job("job")

    first = claim_next("w1", None, LEASE)

    assert first is not None
    assert claim_next("w2", None, LEASE) is None
    assert WorkerJob.objects.get(pk=first.pk).worker == "w1"


@pytest.mark.django_db
def test_finished_and_cancelled_jobs_are_never_claimed() -> None:
    succeeded = make_job("succeeded")
    claimed = claim_next("w", None, LEASE)
    assert claimed is not None and claimed.pk == succeeded.pk
    finish_job(claimed, Outcome(True, {"ok": True}))
    failed = make_job("failed")
    claimed = claim_next("w", None, LEASE)
    assert claimed is not None and claimed.pk == failed.pk
    finish_job(claimed, Outcome.failure("boom", retryable=False))
    cancelled = make_job("cancelled")
    make_job("cancelled")  # replaces (cancels) the first one
    WorkerJob.objects.scheduled().delete()

    assert WorkerJob.objects.get(pk=cancelled.pk).status == Status.CANCELLED
    assert claim_next("w", None, LEASE) is None
    statuses = dict(WorkerJob.objects.values_list("tag", "status"))
    assert statuses == {
        "succeeded": Status.SUCCEEDED,
        "failed": Status.FAILED,
        "cancelled": Status.CANCELLED,
    }


@pytest.mark.django_db
def test_only_jobs_of_the_given_types_are_claimed() -> None:
    make_job("add")
    stray = make_job("stray", priority=5)
    WorkerJob.objects.filter(pk=stray.pk).update(type="removedJob")

    assert claim_next("w", None, LEASE, types=[]) is None
    assert claim_next("w", None, LEASE, types=["demo.fail"]) is None
    claimed = claim_next("w", None, LEASE, types=["demo.add", "demo.fail"])
    assert claimed is not None and claimed.tag == "add"
    assert claim_next("w", None, LEASE, types=["demo.add"]) is None
    assert WorkerJob.objects.get(pk=stray.pk).status == Status.SCHEDULED


@pytest.mark.django_db
def test_the_look_ahead_sees_only_the_given_types() -> None:
    soon = timezone.now() + timedelta(minutes=1)
    later = make_job("later", due=soon + timedelta(minutes=1))
    stray = make_job("stray", due=soon)
    WorkerJob.objects.filter(pk=stray.pk).update(type="removedJob")

    by_type, by_any = next_due(None, ["demo.add"]), next_due(None, None)
    assert by_type is not None and by_any is not None
    assert (by_type[0], by_any[0]) == (later.due, soon)
    assert abs(by_any[1] - timezone.now()) < timedelta(seconds=5)  # the database's clock
    assert next_due(None, []) is None


def test_a_job_of_a_type_no_worker_knows_waits(start_runworkers: StartRunworkers) -> None:
    # A rolling deploy: the web tier submits a type the running workers do not have yet.
    before = make_job("before", priority=1)
    stray = make_job("stray")
    WorkerJob.objects.filter(pk=stray.pk).update(type="notDeployedYet")
    after = make_job("after", priority=-1)

    runner = start_runworkers("--burst", "--workers", "2")

    assert runner.wait() == 0, runner.output
    statuses = dict(WorkerJob.objects.filter(cron_schedule="").values_list("tag", "status"))
    assert statuses == {
        "before": Status.SUCCEEDED,
        "stray": Status.SCHEDULED,
        "after": Status.SUCCEEDED,
    }
    waiting = WorkerJob.objects.get(pk=stray.pk)
    assert (waiting.attempt, waiting.worker, waiting.started) == (0, "", None)
    assert before.pk < stray.pk < after.pk


@pytest.mark.django_db
def test_a_claim_is_one_query(django_assert_num_queries: DjangoAssertNumQueries) -> None:
    make_job("job", queue="a")
    # MySQL has no UPDATE … RETURNING: it locks the row, then updates it (in the test's
    # transaction here; in a transaction of its own otherwise).
    statements = 2 if connection.vendor == "mysql" else 1

    with django_assert_num_queries(statements):
        assert claim_next("w", ["a", "b"], LEASE) is not None
    with django_assert_num_queries(1):
        assert claim_next("w", None, LEASE) is None


JOBS = 60
THREADS = 6


@pytest.mark.django_db(transaction=True)
def test_concurrent_claimers_claim_every_job_exactly_once() -> None:
    jobs = submit_jobs(
        [
            {"tag": f"job{index}", "type": "demo.add", "data": {"a": index, "b": 0}}
            for index in range(JOBS)
        ]
    )
    expected = sorted(job.pk for job in jobs)
    claims: dict[int, list[int]] = {slot: [] for slot in range(THREADS)}

    def claimer(slot: int) -> None:
        while (job := claim_next(f"w{slot}", None, LEASE)) is not None:
            assert job.worker == f"w{slot}"
            claims[slot].append(job.pk)

    run_together([functools.partial(claimer, slot) for slot in range(THREADS)])
    claimed = sorted(pk for pks in claims.values() for pk in pks)
    assert claimed == expected  # none twice, none missed
    assert WorkerJob.objects.running().count() == JOBS
    workers = dict(WorkerJob.objects.values_list("pk", "worker"))
    for slot, pks in claims.items():
        assert all(workers[pk] == f"w{slot}" for pk in pks)
    assert set(WorkerJob.objects.values_list("attempt", flat=True)) == {1}


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("prepared", "server_side_binding"), [(True, False), (False, False), (True, True)]
)
def test_claims_are_planned_without_sorting_and_the_setting_ends_with_them(
    prepared: bool, server_side_binding: bool, settings: Settings
) -> None:
    """Sorting is off for the claim's query only (quickworker_claim, of the initial
    migration): with stale statistics, a planner free to sort would read the whole backlog
    and sort it, for every claim; the claim walks the claimable index instead."""
    settings.QUICKWORKER = {"PREPARED_STATEMENTS": prepared}
    make_job("low", priority=0)
    high = make_job("high", priority=5)
    options = connection.settings_dict["OPTIONS"]
    connection.close()
    options["server_side_binding"] = server_side_binding  # read when the connection opens
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                # Index reads made dear, as stale statistics make them seem: free to choose,
                # the planner reads the table and sorts it.
                cursor.execute("SET LOCAL random_page_cost = 1000")
            before = scans_in_this_transaction()
            claimed = claim_next("w", None, LEASE, TYPES)
            after = scans_in_this_transaction()
            with connection.cursor() as cursor:
                cursor.execute("SHOW enable_sort")
                (setting,) = cursor.fetchone()
                cursor.execute(
                    f"EXPLAIN (FORMAT JSON) SELECT id FROM {WorkerJob._meta.db_table} "
                    "WHERE status = 'scheduled' AND due <= statement_timestamp() "
                    "AND type = ANY(%s) "
                    "ORDER BY priority DESC, due, id LIMIT 1 FOR UPDATE SKIP LOCKED",
                    [TYPES],
                )
                (free_plan,) = cursor.fetchone()
    finally:
        connection.close()
        del options["server_side_binding"]
    assert "Sort" in {node for node, _ in plan_nodes(free_plan)}, plan_nodes(free_plan)
    read = {name: after[name] - before[name] for name in after}
    assert read.pop(CLAIMABLE_INDEX) == 1
    # The UPDATE finds the claimed row by id: through the key, or (index reads being dear)
    # by reading the table. No other index is read.
    del read["quickworker_workerjob_pkey"], read["sequential"]
    assert set(read.values()) == {0}, read
    assert setting == "on"
    assert claimed is not None and claimed.pk == high.pk
    assert WorkerJob.objects.running().get().pk == high.pk


def scans_in_this_transaction() -> dict[str, int]:
    """The scans of the queue's table so far in this transaction: of each index, by name,
    and sequential ones, as "sequential"."""
    table = WorkerJob._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 'sequential', pg_stat_get_xact_numscans(%s::regclass) UNION ALL "
            "SELECT indexrelname, pg_stat_get_xact_numscans(indexrelid) "
            "FROM pg_stat_user_indexes WHERE relname = %s",
            [table, table],
        )
        return dict(cursor.fetchall())
