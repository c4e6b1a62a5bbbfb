"""Cron jobs: ticks across daylight-saving changes, one pending row per cron tag (also when
many ``runworkers`` start at once), and a next occurrence after every run."""

import functools
import itertools
import logging
import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection, transaction
from django.test.utils import override_settings
from django.utils import timezone

from django_quickworker import job, submit_job
from django_quickworker.claim import claim_next
from django_quickworker.cron import (
    REMOVED_FROM_CODE,
    SCHEDULE_CHANGED,
    ensure_cron_jobs,
    pending_cron_rows,
)
from django_quickworker.finish import Outcome, finish_job
from django_quickworker.models import Status, WorkerJob, WorkerTagLock
from django_quickworker.registry import JobRegistry, registry
from django_quickworker.schedule import next_cron_due
from django_quickworker.submit import lock_tags
from tests.conftest import (
    DATABASE_CLOCK_STEP,
    Runworkers,
    StartRunworkers,
    run_together,
    wait_until,
)

UTC = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
LEASE = timedelta(seconds=60)
FAST_POLL = {"QUICKWORKER": '{"POLL_INTERVAL": 0.1}'}
CLEANUP_TAG = "cron:removeOldWorkerJobs"


def chain(expression: str, start: datetime, end: datetime, zone: ZoneInfo) -> list[datetime]:
    """The ticks of ``expression`` after ``start`` up to ``end``, each computed from the last."""
    ticks: list[datetime] = []
    moment = start
    while (moment := next_cron_due(expression, moment, zone)) <= end:
        assert not ticks or moment > ticks[-1], f"{expression}: {moment} does not advance"
        ticks.append(moment)
        assert len(ticks) < 100_000, "runaway chain"
    return ticks


def local(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone)


# Daylight saving time: 2026 spring-forward and fall-back days.
# Paris: 02:00 CET -> 03:00 CEST on 29 March; 03:00 CEST -> 02:00 CET on 25 October.
# New York: 02:00 EST -> 03:00 EDT on 8 March; 02:00 EDT -> 01:00 EST on 1 November.
SPRING = [(PARIS, datetime(2026, 3, 29)), (NEW_YORK, datetime(2026, 3, 8))]
FALL = [(PARIS, datetime(2026, 10, 25)), (NEW_YORK, datetime(2026, 11, 1))]


@pytest.mark.parametrize(("zone", "day"), SPRING, ids=["paris", "new-york"])
@pytest.mark.parametrize("expression", ["30 2 * * *", "0 30 2 * * *"], ids=["5", "6-fields"])
def test_a_daily_job_at_a_time_the_spring_forward_day_skips(
    zone: ZoneInfo, day: datetime, expression: str
) -> None:
    """02:30 does not exist that day: the job runs at most once then (just after the gap),
    and the wall-clock schedule resumes at 02:30 the next day."""
    start = day.replace(tzinfo=zone) - timedelta(days=1)
    end = day.replace(tzinfo=zone) + timedelta(days=2)

    ticks = chain(expression, start.astimezone(UTC), end.astimezone(UTC), zone)

    dates = [local(tick, zone).date() for tick in ticks]
    before, after = (day - timedelta(days=1)).date(), (day + timedelta(days=1)).date()
    assert dates[0] == before and dates[-1] == after, ticks
    assert len(dates) == len(set(dates)), f"a day ran twice: {ticks}"
    for tick in ticks:
        wall = local(tick, zone).time()
        if local(tick, zone).date() == day.date():
            # Inside the gap is impossible; right after it (03:00, or 02:30 read as 03:30).
            assert wall.hour == 3 and wall.minute in (0, 30), ticks
        else:
            assert (wall.hour, wall.minute) == (2, 30), ticks
    # 02:30 the day before to 02:30 the day after: 48 wall-clock hours, 47 real ones.
    assert ticks[-1] - ticks[0] == timedelta(hours=47)


@pytest.mark.parametrize(
    ("zone", "day", "expression", "wall"),
    [
        (PARIS, FALL[0][1], "30 2 * * *", (2, 30)),  # 02:30 happens twice in Paris
        (PARIS, FALL[0][1], "0 30 2 * * *", (2, 30)),
        (PARIS, FALL[0][1], "30 1 * * *", (1, 30)),  # 01:30 happens once
        (NEW_YORK, FALL[1][1], "30 1 * * *", (1, 30)),  # 01:30 happens twice in New York
        (NEW_YORK, FALL[1][1], "30 2 * * *", (2, 30)),  # 02:30 happens once
    ],
    ids=["paris-02:30", "paris-02:30-6-fields", "paris-01:30", "new-york-01:30", "new-york-02:30"],
)
def test_a_daily_job_runs_once_on_the_fall_back_day(
    zone: ZoneInfo, day: datetime, expression: str, wall: tuple[int, int]
) -> None:
    """A wall time that happens twice must not run the daily job twice."""
    start = day.replace(tzinfo=zone) - timedelta(days=1)
    end = day.replace(tzinfo=zone) + timedelta(days=2)

    ticks = chain(expression, start.astimezone(UTC), end.astimezone(UTC), zone)

    assert [local(tick, zone).date() for tick in ticks] == [
        (day + timedelta(days=offset)).date() for offset in (-1, 0, 1)
    ], f"not one run per day: {[local(tick, zone).isoformat() for tick in ticks]}"
    assert all((local(t, zone).hour, local(t, zone).minute) == wall for t in ticks)
    # The day the clocks go back has 25 real hours: the two steps make 49 hours together.
    assert ticks[-1] - ticks[0] == timedelta(hours=49)
    assert {ticks[1] - ticks[0], ticks[2] - ticks[1]} <= {timedelta(hours=24), timedelta(hours=25)}


@pytest.mark.parametrize(
    ("zone", "day"), SPRING + FALL, ids=["p-spr", "ny-spr", "p-fall", "ny-fall"]
)
@pytest.mark.parametrize(
    ("expression", "step"),
    [
        ("0 * * * *", timedelta(hours=1)),
        ("@hourly", timedelta(hours=1)),
        ("0 0 * * * *", timedelta(hours=1)),
        ("*/20 * * * *", timedelta(minutes=20)),
        ("*/3 * * * * *", timedelta(seconds=3)),
    ],
)
def test_frequent_jobs_advance_by_real_time_across_the_change(
    zone: ZoneInfo, day: datetime, expression: str, step: timedelta
) -> None:
    """An hourly job runs every real hour through the change: once in the skipped hour's
    place, and in both passes of the repeated hour."""
    # From 22:00 the evening before, past the change (01:00 UTC in Paris, 02:00 local in
    # New York) until the morning; second-level schedules over the 80 minutes around it.
    start = (day.replace(tzinfo=zone) - timedelta(hours=2)).astimezone(UTC)
    end = start + timedelta(hours=8)
    if step < timedelta(minutes=1):
        start, end = start + timedelta(hours=3, minutes=50), start + timedelta(hours=5, minutes=10)

    ticks = chain(expression, start, end, zone)

    assert len(ticks) == (end - start) // step
    assert all(later - earlier == step for earlier, later in itertools.pairwise(ticks))
    assert all(tick.timestamp() % step.total_seconds() == 0 for tick in ticks)


def test_nicknames_and_six_fields_tick_where_expected() -> None:
    after = datetime(2026, 6, 1, 10, 17, 4, tzinfo=UTC)

    assert next_cron_due("@daily", after, PARIS) == datetime(2026, 6, 1, 22, tzinfo=UTC)
    assert next_cron_due("@hourly", after, NEW_YORK) == datetime(2026, 6, 1, 11, tzinfo=UTC)
    assert next_cron_due("0 0 * * * *", after, UTC) == datetime(2026, 6, 1, 11, tzinfo=UTC)
    assert next_cron_due("*/3 * * * * *", after, UTC) == datetime(2026, 6, 1, 10, 17, 6, tzinfo=UTC)
    assert next_cron_due("*/5 * * * *", after, UTC) == datetime(2026, 6, 1, 10, 20, tzinfo=UTC)


# Declaring cron jobs


def test_remove_old_worker_jobs_is_declared_hourly() -> None:
    assert registry.get("removeOldWorkerJobs").cron == "@hourly"


def cron_job_function(ctx: Any) -> None:
    """A job body for test-only cron types."""


def declare(name: str, cron: str) -> None:
    job(name, cron=cron)(cron_job_function)


def declared_tags() -> list[str]:
    return sorted(f"cron:{job_type.name}" for job_type in registry if job_type.cron)


def pending_by_tag() -> dict[str, list[WorkerJob]]:
    rows: dict[str, list[WorkerJob]] = {}
    for row in pending_cron_rows([*declared_tags(), "cron:gone"]).order_by("pk"):
        rows.setdefault(row.tag, []).append(row)
    return rows


@pytest.mark.django_db
def test_ensure_cron_jobs_gives_each_declared_cron_job_one_pending_row(
    job_registry: JobRegistry,
) -> None:
    declare("test.every5", "*/5 * * * *")
    declare("test.everyFewSeconds", "*/3 * * * * *")
    submit_job(tag="plain", type="demo.add")  # not a cron job: left alone
    before = timezone.now()

    ensure_cron_jobs()

    rows = pending_by_tag()
    assert sorted(rows) == [CLEANUP_TAG, "cron:test.every5", "cron:test.everyFewSeconds"]
    expected = {
        CLEANUP_TAG: ("removeOldWorkerJobs", "@hourly"),
        "cron:test.every5": ("test.every5", "*/5 * * * *"),
        "cron:test.everyFewSeconds": ("test.everyFewSeconds", "*/3 * * * * *"),
    }
    for tag, (type_name, cron) in expected.items():
        [row] = rows[tag]
        assert (row.type, row.cron_schedule, row.status) == (type_name, cron, Status.SCHEDULED)
        assert before < row.due <= next_cron_due(cron, timezone.now(), UTC)
    count = WorkerJob.objects.count()

    ensure_cron_jobs()
    ensure_cron_jobs()

    assert WorkerJob.objects.count() == count == 4
    assert {tag: [row.pk for row in found] for tag, found in pending_by_tag().items()} == {
        tag: [row.pk for row in found] for tag, found in rows.items()
    }


@pytest.mark.django_db
def test_a_cron_row_no_longer_declared_is_cancelled_and_logged(
    job_registry: JobRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    declare("test.gone", "*/5 * * * *")
    ensure_cron_jobs()
    [old] = WorkerJob.objects.filter(tag="cron:test.gone")
    del job_registry._types["test.gone"]
    stray = submit_job(tag="cron:gone", type="demo.add", cron="* * * * *")  # never declared
    caplog.set_level(logging.INFO, logger="django_quickworker")

    ensure_cron_jobs()

    for row in (old, stray):
        row.refresh_from_db()
        assert row.status == Status.CANCELLED
        assert row.success is False and row.finished is not None
        assert row.result == {"error": REMOVED_FROM_CODE}
        assert any(
            record.levelno >= logging.INFO
            and row.tag in record.getMessage()
            and "no longer declared" in record.getMessage()
            for record in caplog.records
        ), caplog.text
    assert REMOVED_FROM_CODE == "Cron job no longer declared in code"
    assert sorted(pending_by_tag()) == [CLEANUP_TAG]
    assert not WorkerJob.objects.scheduled().filter(tag__in=[old.tag, stray.tag]).exists()


@pytest.mark.django_db
def test_a_changed_schedule_replaces_the_pending_row(job_registry: JobRegistry) -> None:
    declare("test.reschedule", "0 3 * * *")
    ensure_cron_jobs()
    [old] = pending_by_tag()["cron:test.reschedule"]

    declare("test.reschedule", "*/10 * * * *")  # the code changed
    ensure_cron_jobs()

    old.refresh_from_db()
    assert old.status == Status.CANCELLED
    assert old.result == {"error": SCHEDULE_CHANGED}
    [new] = pending_by_tag()["cron:test.reschedule"]
    assert new.pk != old.pk
    assert new.cron_schedule == "*/10 * * * *"
    assert new.due.minute % 10 == 0 and new.due.second == 0
    assert old.created_at < new.due <= timezone.now() + timedelta(minutes=10)
    assert WorkerJob.objects.filter(tag="cron:test.reschedule").count() == 2


@pytest.mark.django_db
def test_a_pending_retry_of_a_cron_job_neither_counts_as_its_row_nor_is_cancelled(
    job_registry: JobRegistry,
) -> None:
    declare("test.retried", "*/5 * * * *")
    # A one-off retry (no cron_schedule) under the cron tag, as finish_job writes them.
    retry = submit_job(tag="retry", type="test.retried")
    WorkerJob.objects.filter(pk=retry.pk).update(tag="cron:test.retried")

    ensure_cron_jobs()

    [row] = pending_by_tag()["cron:test.retried"]
    assert row.pk != retry.pk and row.cron_schedule == "*/5 * * * *"
    retry.refresh_from_db()
    assert retry.status == Status.SCHEDULED


@pytest.mark.django_db(transaction=True)
def test_concurrent_ensure_cron_jobs_write_one_row_per_cron_tag(
    job_registry: JobRegistry,
) -> None:
    for index in range(5):
        declare(f"test.race{index}", f"{index} * * * *")
    run_together([ensure_cron_jobs] * 6)
    tags = declared_tags()
    assert len(tags) == 6
    for tag in tags:
        assert pending_cron_rows([tag]).count() == 1, tag
        assert WorkerJob.objects.filter(tag=tag).count() == 1, f"{tag}: a row was written twice"


@pytest.mark.postgresql
@pytest.mark.mysql
def test_five_runworkers_started_at_once_schedule_the_cleanup_once(
    start_runworkers: StartRunworkers,
) -> None:
    """Five runworkers race to schedule the cleanup. The test holds the table locked until
    all five are waiting for it, so that they really do reach ensure_cron_jobs together."""
    assert not WorkerJob.objects.exists()
    table = WorkerJob._meta.db_table

    def waiting_for_the_table() -> int:
        with connection.cursor() as cursor:
            if connection.vendor == "mysql":
                # Connections of this database (the server may be shared) inside the tag
                # lock's upsert, which only a lock keeps them in: InnoDB does not always
                # flag a wait on a row by its primary key as LOCK WAIT.
                cursor.execute(
                    "SELECT count(*) FROM information_schema.PROCESSLIST "
                    "WHERE DB = DATABASE() AND INFO LIKE %s",
                    [f"INSERT INTO `{WorkerTagLock._meta.db_table}`%"],
                )
            else:
                cursor.execute(
                    "SELECT count(DISTINCT pid) FROM pg_locks WHERE relation = %s::regclass "
                    "AND NOT granted",
                    [table],
                )
            return int(cursor.fetchone()[0])

    with transaction.atomic():
        if connection.vendor == "mysql":
            # A MySQL table lock does not wait inside a transaction: hold the cron tags'
            # lock rows instead, which ensure_cron_jobs waits for.
            lock_tags(declared_tags(), connection.alias)
        else:
            with connection.cursor() as cursor:
                cursor.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')
        runners = [start_runworkers("--workers", "1", env=FAST_POLL) for _ in range(5)]
        wait_until(lambda: waiting_for_the_table() == 5, 60, "all five to wait for the table")
    # Released: all five go on at once. Each spawns its child once ensure_cron_jobs committed.

    def started(runner: Runworkers) -> bool:
        return bool(runner.children()) or runner.process.poll() is not None

    wait_until(lambda: all(started(runner) for runner in runners), 60, "all five to start")
    for runner in runners:
        assert runner.process.poll() is None, runner.output
        assert "Traceback" not in runner.output, runner.output
    assert WorkerJob.objects.scheduled().filter(tag=CLEANUP_TAG).count() == 1
    # Never a second row, not even one cancelled by another runworkers.
    [row] = WorkerJob.objects.filter(tag=CLEANUP_TAG)
    assert (row.type, row.cron_schedule) == ("removeOldWorkerJobs", "@hourly")


# The next occurrence


def submit_cron(cron: str, due: datetime | None = None, **options: Any) -> WorkerJob:
    return submit_job(
        tag="cron:test",
        type="demo.add",
        data={"a": 1, "b": 2},
        cron=cron,
        due=due if due is not None else timezone.now() - timedelta(seconds=1),
        **options,
    )


def claim(expected: WorkerJob) -> WorkerJob:
    claimed = claim_next("host:1:0", None, LEASE)
    assert claimed is not None and claimed.pk == expected.pk
    return claimed


def finish_timed(job_row: WorkerJob, outcome: Outcome) -> tuple[datetime, datetime]:
    """Finish ``job_row``; return the time just before and just after, as the database's
    clock may give it."""
    before = timezone.now()
    finish_job(job_row, outcome)
    return before, timezone.now() + DATABASE_CLOCK_STEP


def next_rows(job_row: WorkerJob) -> list[WorkerJob]:
    return list(WorkerJob.objects.scheduled().filter(tag=job_row.tag).order_by("pk"))


def expected_due(cron: str, due: datetime, before: datetime, after: datetime) -> set[datetime]:
    """The next tick after max(due, now), for a ``now`` between ``before`` and ``after``."""
    return {next_cron_due(cron, max(due, moment), UTC) for moment in (before, after)}


@pytest.mark.django_db
@pytest.mark.parametrize("cron", ["0 * * * *", "@hourly", "0 0 * * * *", "*/3 * * * * *", "@daily"])
def test_a_successful_run_schedules_exactly_one_next_occurrence(cron: str) -> None:
    run = claim(submit_cron(cron))

    before, after = finish_timed(run, Outcome(True, {"sum": 3}))

    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED
    [following] = next_rows(run)
    assert following.cron_schedule == run.cron_schedule == cron
    assert (following.type, following.data, following.attempt) == ("demo.add", {"a": 1, "b": 2}, 0)
    assert following.due in expected_due(cron, run.due, before, after)
    assert following.due > before


@pytest.mark.django_db
def test_a_failed_run_without_retries_still_continues_the_chain() -> None:
    run = claim(submit_cron("*/10 * * * *"))

    before, after = finish_timed(run, Outcome.failure("boom"))

    run.refresh_from_db()
    assert run.status == Status.FAILED
    [following] = next_rows(run)
    assert following.cron_schedule == "*/10 * * * *"
    assert following.due in expected_due("*/10 * * * *", run.due, before, after)
    assert following.rescheduled_from is None


@pytest.mark.django_db
def test_ticks_missed_during_downtime_give_one_run_in_the_future() -> None:
    five_hours_ago = timezone.now() - timedelta(hours=5, minutes=7)
    run = claim(submit_cron("0 * * * *", due=five_hours_ago))

    before, after = finish_timed(run, Outcome(True, {}))

    assert WorkerJob.objects.filter(tag=run.tag).count() == 2  # the run and one next, not 5
    [following] = next_rows(run)
    assert following.due > before
    assert following.due in {next_cron_due("0 * * * *", moment, UTC) for moment in (before, after)}
    assert following.due - after <= timedelta(hours=1)


@pytest.mark.django_db
def test_the_next_tick_follows_the_due_not_the_finish_time() -> None:
    """A run that ends before its own tick (a worker whose clock is ahead) must not get
    that same tick again as its next occurrence."""
    run = claim(submit_cron("0 * * * *"))
    tick = next_cron_due("0 * * * *", timezone.now(), UTC)
    run.due = tick  # as though claimed early, before its tick came

    finish_job(run, Outcome(True, {}))

    [following] = next_rows(run)
    assert following.due == tick + timedelta(hours=1)


@pytest.mark.django_db
def test_the_next_tick_is_read_in_the_cron_time_zone() -> None:
    with override_settings(QUICKWORKER={"CRON_TIME_ZONE": "America/New_York"}):
        run = claim(submit_cron("0 3 * * *", due=timezone.now() - timedelta(hours=5)))
        finish_job(run, Outcome(True, {}))

    [following] = next_rows(run)
    due_there = following.due.astimezone(NEW_YORK)
    assert (due_there.hour, due_there.minute) == (3, 0)
    assert timezone.now() < following.due <= timezone.now() + timedelta(hours=25)


@pytest.mark.django_db
def test_the_time_zone_defaults_to_time_zone(settings: Any) -> None:
    settings.TIME_ZONE = "Asia/Kolkata"  # UTC+05:30: 03:00 there is 21:30 UTC
    run = claim(submit_cron("0 3 * * *", due=timezone.now() - timedelta(hours=5)))

    finish_job(run, Outcome(True, {}))

    [following] = next_rows(run)
    assert (following.due.astimezone(UTC).hour, following.due.astimezone(UTC).minute) == (21, 30)


@pytest.mark.django_db
def test_a_failed_run_with_retries_gets_a_retry_and_the_next_occurrence() -> None:
    run = claim(submit_cron("0 * * * *", max_attempts=3, auto_reschedule_on_failure_delay=0))

    before, after = finish_timed(run, Outcome.failure("boom"))

    rows = next_rows(run)
    assert len(rows) == 2
    [retry] = [row for row in rows if row.rescheduled_from_id == run.pk]
    [following] = [row for row in rows if row.pk != retry.pk]
    assert retry.cron_schedule == ""  # a one-off: it never forks the chain
    assert (retry.attempt, retry.max_attempts) == (1, 3)
    assert before <= retry.due <= after
    assert following.cron_schedule == "0 * * * *"
    assert following.rescheduled_from is None and following.attempt == 0
    assert following.due in expected_due("0 * * * *", run.due, before, after)
    assert list(pending_cron_rows([run.tag])) == [following]

    # The retry fails too: another retry, but still only the one next occurrence.
    retried = claim(retry)
    finish_job(retried, Outcome.failure("boom again"))

    second_retry = WorkerJob.objects.get(rescheduled_from=retried)
    assert (second_retry.attempt, second_retry.cron_schedule) == (2, "")
    assert list(pending_cron_rows([run.tag])) == [following]
    assert WorkerJob.objects.filter(tag=run.tag).count() == 4


@pytest.mark.django_db
def test_finishing_adds_nothing_when_the_chain_already_has_a_pending_row() -> None:
    run = claim(submit_cron("0 * * * *"))
    existing = submit_job(tag=run.tag, type="demo.add", cron="30 * * * *", on_duplicate_tag="allow")

    finish_job(run, Outcome(True, {}))

    assert [row.pk for row in next_rows(run)] == [existing.pk]


@pytest.mark.django_db
def test_a_finish_that_does_not_land_schedules_nothing() -> None:
    run = claim(submit_cron("0 * * * *"))
    finish_job(run, Outcome(True, {}))
    [following] = next_rows(run)

    finish_job(run, Outcome(True, {}))  # a second finish: the fence refuses it
    WorkerJob.objects.filter(pk=following.pk).delete()
    finish_job(run, Outcome.failure("late"))

    assert next_rows(run) == []
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_runs_of_one_cron_tag_finishing_at_once_leave_one_pending_row() -> None:
    """However the chain came to have several running rows (submissions with "allow"),
    their concurrent finishes write one next occurrence between them."""
    count = 6
    rows = [submit_cron("*/5 * * * *", on_duplicate_tag="allow") for _ in range(count)]
    claims = [claim_next(f"host:1:{slot}", None, LEASE) for slot in range(count)]
    runs = [run for run in claims if run is not None]
    assert sorted(run.pk for run in runs) == sorted(row.pk for row in rows)
    run_together([functools.partial(finish_job, run, Outcome(True, {})) for run in runs])
    assert WorkerJob.objects.succeeded().count() == count
    assert pending_cron_rows(["cron:test"]).count() == 1
    assert WorkerJob.objects.count() == count + 1


def test_end_to_end_every_second_chains_run_one_at_a_time(
    start_runworkers: StartRunworkers,
) -> None:
    submit_job(tag="every3", type="demo.add", data={"a": 1, "b": 1}, cron="*/1 * * * * *")
    submit_job(tag="failing", type="demo.fail", data={"reason": "cron"}, cron="*/1 * * * * *")
    runner = start_runworkers("--workers", "2", env=FAST_POLL)
    deadline = time.monotonic() + 60
    samples = 0

    while True:
        for tag in ("every3", "failing"):
            scheduled = WorkerJob.objects.scheduled().filter(tag=tag).count()
            assert scheduled <= 1, f"{scheduled} scheduled rows for {tag}"
        samples += 1
        succeeded = WorkerJob.objects.succeeded().filter(tag="every3").count()
        failed = WorkerJob.objects.failed().filter(tag="failing").count()
        if succeeded >= 3 and failed >= 3:
            break
        assert time.monotonic() < deadline, f"{succeeded} runs, {failed} failures\n{runner.output}"
        time.sleep(0.02)

    assert samples > 10
    for tag in ("every3", "failing"):
        finished = WorkerJob.objects.finished().filter(tag=tag)
        dues = list(finished.values_list("due", flat=True))
        assert len(dues) == len(set(dues)), f"{tag}: a tick ran twice"
        assert all(due.microsecond == 0 for due in dues)
    assert {row.result["sum"] for row in WorkerJob.objects.succeeded().filter(tag="every3")} == {2}
    for row in WorkerJob.objects.failed().filter(tag="failing"):
        assert row.result["error"] == "demo.fail failed as asked: cron"
    # After its failures the failing chain still goes on.
    wait_until(
        lambda: WorkerJob.objects.filter(tag="failing", status__in=["scheduled", "running"]),
        what="the failing chain's next occurrence",
    )


@pytest.mark.django_db
def test_cancelling_a_running_cron_job_ends_its_chain() -> None:
    job = submit_job(tag="cron:chain-end", type="demo.add", cron="0 * * * *", due=timezone.now())
    claimed = claim_next("w", [job.queue], timedelta(seconds=60))
    assert claimed is not None and claimed.pk == job.pk
    finish_job(claimed, Outcome(False, {"error": "stopped"}, cancelled=True))
    assert WorkerJob.objects.get(pk=job.pk).status == Status.CANCELLED
    assert not WorkerJob.objects.filter(tag="cron:chain-end").scheduled().exists()


@pytest.mark.django_db
def test_ensure_adds_no_row_while_a_run_of_the_chain_is_in_progress(
    job_registry: JobRegistry,
) -> None:
    @job("cronInProgress", cron="*/5 * * * *")
    def in_progress(ctx: Any) -> None: ...

    ensure_cron_jobs()
    claimed = claim_next("w", None, timedelta(seconds=60))
    pending = WorkerJob.objects.filter(tag="cron:cronInProgress")
    if claimed is None or claimed.tag != "cron:cronInProgress":  # not due yet: claim it anyway
        pending.update(due=timezone.now())
        claimed = claim_next("w", None, timedelta(seconds=60))
    assert claimed is not None and claimed.tag == "cron:cronInProgress"
    ensure_cron_jobs()
    assert pending.count() == 1  # the running one; it schedules the next when it finishes
