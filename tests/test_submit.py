"""submit_job / submit_jobs: validation, stored options, duplicate tags, transactions, bulk."""

import contextlib
import functools
import itertools
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from croniter import croniter
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import OperationalError, connection, transaction
from django.db.models.signals import post_init, pre_init
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone

from django_quickworker import submit_job, submit_jobs
from django_quickworker.conf import conf
from django_quickworker.databases import database
from django_quickworker.databases import rows as databases_rows
from django_quickworker.databases.postgresql import (
    NOTIFY_CHANNEL,
    TAG_LOCK_NAMESPACE,
    PostgreSQL,
)
from django_quickworker.exceptions import (
    InvalidCronSchedule,
    InvalidDue,
    InvalidDuration,
    InvalidJobData,
    InvalidJobError,
    InvalidOption,
    InvalidUser,
    UnknownJobType,
)
from django_quickworker.models import Status, WorkerJob
from django_quickworker.registry import JobRegistry, job
from django_quickworker.submit import CANCELLED_BY_NEW_JOB, OnDuplicateTag, new_job
from tests.conftest import plan_nodes, round_trips, run_together

pytestmark = pytest.mark.django_db

DEFAULTS_TYPE = "tests.submitDefaults"


@pytest.fixture
def user() -> AbstractBaseUser:
    return get_user_model().objects.create_user(username="alice")


@pytest.fixture
def defaults_type(job_registry: JobRegistry) -> str:
    """A job type registered with a non-default value for every option it can default."""

    @job(
        DEFAULTS_TYPE,
        timeout=90,
        queue="mail",
        priority=7,
        max_attempts=3,
        auto_reschedule_on_failure=True,
        auto_reschedule_on_failure_delay=45,
    )
    def defaults_job(ctx: Any) -> None:
        return None

    return DEFAULTS_TYPE


@pytest.fixture
def existing() -> WorkerJob:
    """A scheduled job whose tag the bad submissions reuse."""
    return submit_job(tag="dup", type="demo.add", data={"a": 1, "b": 2})


def _make_running(job_row: WorkerJob) -> None:
    WorkerJob.objects.filter(pk=job_row.pk).update(status=Status.RUNNING, started=timezone.now())


def _statements(queries: CaptureQueriesContext) -> list[str]:
    """The first keyword of each captured query: SELECT, INSERT, UPDATE..."""
    return [query["sql"].lstrip().split(None, 1)[0].upper() for query in queries]


def _writes(queries: CaptureQueriesContext) -> list[str]:
    """The statements that write to the job table."""
    table = connection.ops.quote_name(WorkerJob._meta.db_table)
    return [
        statement
        for statement, query in zip(_statements(queries), queries, strict=True)
        if statement in {"INSERT", "UPDATE", "DELETE"} and table in query["sql"]
    ]


def _assert_untouched(existing: WorkerJob) -> None:
    """Only ``existing`` is in the table, still scheduled exactly as it was submitted."""
    assert list(WorkerJob.objects.values_list("pk", flat=True)) == [existing.pk]
    row = WorkerJob.objects.get(pk=existing.pk)
    assert (row.status, row.finished, row.success, row.result) == (
        Status.SCHEDULED,
        None,
        None,
        None,
    )
    assert row.updated_at == existing.updated_at


# --- stored options -------------------------------------------------------------------------


def test_submit_job_returns_a_saved_scheduled_row_with_every_option_stored(
    user: AbstractBaseUser,
) -> None:
    due = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=dt_timezone.utc)
    submitted = submit_job(
        tag="everything",
        type="demo.countdown",
        user=user,
        data={"steps": 3, "nested": {"list": [1, 2.5, None, True, "x"]}},
        due=due,
        cron="*/5 * * * *",
        auto_reschedule_on_failure=True,
        auto_reschedule_on_failure_delay=timedelta(seconds=30),
        max_attempts=4,
        timeout=timedelta(minutes=2),
        remove_delay=timedelta(hours=1),
        persistent=True,
        priority=5,
        queue="mail",
    )
    assert isinstance(submitted, WorkerJob)
    assert submitted.pk is not None
    row = WorkerJob.objects.get(pk=submitted.pk)
    assert row.tag == "everything"
    assert row.type == "demo.countdown"
    assert row.user_id == user.pk
    assert row.data == {"steps": 3, "nested": {"list": [1, 2.5, None, True, "x"]}}
    assert row.due == due
    assert row.cron_schedule == "*/5 * * * *"
    assert row.auto_reschedule_on_failure is True
    assert row.auto_reschedule_on_failure_delay == timedelta(seconds=30)
    assert row.max_attempts == 4
    assert row.timeout == timedelta(minutes=2)
    assert row.remove_delay == timedelta(hours=1)
    assert row.persistent is True
    assert row.priority == 5
    assert row.queue == "mail"
    assert row.status == Status.SCHEDULED
    assert row.attempt == 0
    assert (row.started, row.finished, row.success, row.result, row.remove_at) == (None,) * 5


def test_submit_job_minimal_is_a_due_now_system_job_with_empty_data() -> None:
    before = timezone.now()
    submitted = submit_job(tag="minimal", type="demo.add")
    after = timezone.now()
    row = WorkerJob.objects.get(pk=submitted.pk)
    assert before <= row.due <= after
    assert (row.user_id, row.data, row.cron_schedule, row.queue, row.priority) == (
        None,
        {},
        "",
        "default",
        0,
    )
    assert (row.auto_reschedule_on_failure, row.max_attempts, row.timeout, row.persistent) == (
        False,
        1,
        None,
        False,
    )
    assert (row.status, row.attempt) == (Status.SCHEDULED, 0)


@pytest.mark.parametrize("as_id", [False, True], ids=["instance", "id"])
def test_user_may_be_given_as_instance_or_id(user: AbstractBaseUser, as_id: bool) -> None:
    submitted = submit_job(tag="u", type="demo.add", user=user.pk if as_id else user)
    assert WorkerJob.objects.get(pk=submitted.pk).user_id == user.pk


def test_options_left_none_take_the_registered_defaults(defaults_type: str) -> None:
    row = WorkerJob.objects.get(pk=submit_job(tag="d", type=defaults_type).pk)
    assert row.timeout == timedelta(seconds=90)
    assert row.queue == "mail"
    assert row.priority == 7
    assert row.max_attempts == 3
    assert row.auto_reschedule_on_failure is True
    assert row.auto_reschedule_on_failure_delay == timedelta(seconds=45)


def test_explicit_options_override_the_registered_defaults_even_when_falsy(
    defaults_type: str,
) -> None:
    submitted = submit_job(
        tag="d",
        type=defaults_type,
        timeout=5,
        queue="default",
        priority=0,
        max_attempts=2,
        auto_reschedule_on_failure_delay=0,
    )
    row = WorkerJob.objects.get(pk=submitted.pk)
    assert (row.timeout, row.queue, row.priority, row.max_attempts) == (
        timedelta(seconds=5),
        "default",
        0,
        2,
    )
    assert row.auto_reschedule_on_failure_delay == timedelta(0)


def test_explicitly_turning_retries_off_overrides_a_registered_max_attempts(
    defaults_type: str,
) -> None:
    # The caller gave no max_attempts: the registered 3 is a default, and an explicit
    # "no retries" must win over it rather than be refused with a value never passed.
    submitted = submit_job(tag="d", type=defaults_type, auto_reschedule_on_failure=False)
    row = WorkerJob.objects.get(pk=submitted.pk)
    assert (row.auto_reschedule_on_failure, row.max_attempts) == (False, 1)


def test_explicit_max_attempts_without_retries_is_refused() -> None:
    with pytest.raises(InvalidOption, match="max_attempts=3"):
        submit_job(tag="m", type="demo.add", max_attempts=3, auto_reschedule_on_failure=False)
    assert not WorkerJob.objects.exists()


def test_retrying_without_a_limit_gets_the_configured_cap() -> None:
    with override_settings(QUICKWORKER={"MAX_ATTEMPTS": 9}):
        submitted = submit_job(tag="r", type="demo.add", auto_reschedule_on_failure=True)
    assert WorkerJob.objects.get(pk=submitted.pk).max_attempts == 9


@pytest.mark.parametrize(
    "cron", ["0 3 * * *", "*/10 * * * * *", "@hourly"], ids=["5-field", "6-field", "nickname"]
)
def test_cron_without_due_is_due_at_the_next_tick(cron: str) -> None:
    before = timezone.now()
    submitted = submit_job(tag="c", type="demo.add", cron=cron)
    after = timezone.now()
    seconds_first = len(cron.split()) == 6
    possible = {
        croniter(cron, moment, second_at_beginning=seconds_first).get_next(datetime)
        for moment in (before, after)
    }
    row = WorkerJob.objects.get(pk=submitted.pk)
    assert row.due in possible
    assert row.due > before
    assert row.cron_schedule == cron


def test_cron_ticks_are_read_in_the_configured_time_zone() -> None:
    with override_settings(QUICKWORKER={"CRON_TIME_ZONE": "Asia/Tokyo"}):
        submitted = submit_job(tag="c", type="demo.add", cron="30 3 * * *")
    due = WorkerJob.objects.get(pk=submitted.pk).due
    local = due.astimezone(ZoneInfo("Asia/Tokyo"))
    assert (local.hour, local.minute, local.second) == (3, 30, 0)
    assert timezone.now() < due <= timezone.now() + timedelta(days=1)


def test_cron_string_is_stored_normalised() -> None:
    submitted = submit_job(tag="c", type="demo.add", cron="  0   3 * *  * ")
    assert WorkerJob.objects.get(pk=submitted.pk).cron_schedule == "0 3 * * *"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(minutes=1, seconds=30), timedelta(seconds=90)),
        (90, timedelta(seconds=90)),
        (1.5, timedelta(seconds=1.5)),
        (0, timedelta(0)),
    ],
    ids=["timedelta", "int", "float", "zero"],
)
def test_durations_accept_a_timedelta_or_seconds(value: Any, expected: timedelta) -> None:
    before = timezone.now()
    submitted = submit_job(
        tag="delay",
        type="demo.add",
        delay=value,
        auto_reschedule_on_failure=True,
        auto_reschedule_on_failure_delay=value,
        remove_delay=value,
    )
    after = timezone.now()
    row = WorkerJob.objects.get(pk=submitted.pk)
    assert before + expected <= row.due <= after + expected
    assert row.auto_reschedule_on_failure_delay == expected
    assert row.remove_delay == expected


@pytest.mark.parametrize(
    "value", [timedelta(seconds=2.5), 2.5, 3], ids=["timedelta", "float", "int"]
)
def test_timeout_accepts_a_timedelta_or_seconds(value: Any) -> None:
    submitted = submit_job(tag="t", type="demo.add", timeout=value)
    stored = WorkerJob.objects.get(pk=submitted.pk).timeout
    assert stored == (value if isinstance(value, timedelta) else timedelta(seconds=value))


def test_an_aware_due_is_stored_exactly_whatever_its_zone() -> None:
    due = datetime(2032, 2, 29, 23, 59, 58, 654321, tzinfo=ZoneInfo("Asia/Kolkata"))
    submitted = submit_job(tag="due", type="demo.add", due=due)
    assert submitted.due == due
    stored = WorkerJob.objects.get(pk=submitted.pk).due
    assert stored == due
    assert stored.astimezone(dt_timezone.utc) == datetime(
        2032, 2, 29, 18, 29, 58, 654321, tzinfo=dt_timezone.utc
    )


# --- bad input ------------------------------------------------------------------------------

NAIVE = datetime(2030, 1, 2, 3, 4, 5)  # deliberately naive
AWARE = datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt_timezone.utc)
DEEP: Any = []
for _level in range(10_000):  # far deeper than Python's recursion limit
    DEEP = [DEEP]

BAD_SUBMISSIONS: list[Any] = [
    pytest.param(
        {"type": "nope"},
        UnknownJobType,
        ["'nope'", "demo.add", "demo.fail", "demo.countdown", "demo.asyncSleep"],
        id="unknown-type",
    ),
    pytest.param(
        {"data": {"when": AWARE}}, InvalidJobData, ["data['when']", "datetime"], id="datetime"
    ),
    pytest.param({"data": {"ids": {1, 2}}}, InvalidJobData, ["data['ids']", "set"], id="set"),
    pytest.param(
        {"data": {"point": (1, 2)}}, InvalidJobData, ["data['point']", "tuple"], id="tuple"
    ),
    pytest.param(
        {"data": {"items": [1, {"price": Decimal("1.50")}]}},
        InvalidJobData,
        ["data['items'][1]['price']", "Decimal"],
        id="nested-decimal",
    ),
    pytest.param({"data": {1: "one"}}, InvalidJobData, ["data", "key 1"], id="int-key"),
    pytest.param(
        {"data": {"outer": {("a", "b"): 1}}},
        InvalidJobData,
        ["data['outer']", "('a', 'b')"],
        id="nested-tuple-key",
    ),
    pytest.param(
        {"data": {"ratio": float("nan")}}, InvalidJobData, ["data['ratio']", "nan"], id="nan"
    ),
    pytest.param({"data": {"big": float("inf")}}, InvalidJobData, ["data['big']", "inf"], id="inf"),
    pytest.param({"data": object()}, InvalidJobData, ["data", "object"], id="object"),
    pytest.param({"data": {"note": "a\x00b"}}, InvalidJobData, ["data['note']"], id="nul-char"),
    pytest.param({"data": {"k\x00": 1}}, InvalidJobData, ["'k\\x00'"], id="nul-key"),
    pytest.param({"data": {"s": "\ud800"}}, InvalidJobData, ["data['s']"], id="lone-surrogate"),
    pytest.param({"cron": "not a cron"}, InvalidCronSchedule, ["'not a cron'"], id="cron-words"),
    pytest.param({"cron": "61 * * * *"}, InvalidCronSchedule, ["'61 * * * *'"], id="cron-range"),
    pytest.param({"cron": ""}, InvalidCronSchedule, ["cron=''"], id="cron-empty"),
    pytest.param({"delay": -1}, InvalidDuration, ["delay=-1"], id="negative-delay"),
    pytest.param({"delay": timedelta(seconds=-5)}, InvalidDuration, ["delay="], id="negative-td"),
    pytest.param({"delay": "10"}, InvalidDuration, ["delay='10'"], id="string-delay"),
    pytest.param({"delay": float("nan")}, InvalidDuration, ["delay=nan"], id="nan-delay"),
    pytest.param({"timeout": -5}, InvalidDuration, ["timeout=-5"], id="negative-timeout"),
    pytest.param({"timeout": 0}, InvalidOption, ["timeout=0"], id="zero-timeout"),
    pytest.param(
        {"auto_reschedule_on_failure": True, "auto_reschedule_on_failure_delay": -3},
        InvalidDuration,
        ["auto_reschedule_on_failure_delay=-3"],
        id="negative-retry-delay",
    ),
    pytest.param({"remove_delay": -1.5}, InvalidDuration, ["remove_delay=-1.5"], id="neg-remove"),
    pytest.param({"due": AWARE, "delay": 60}, InvalidDue, ["due=", "delay=60"], id="due-and-delay"),
    pytest.param({"due": NAIVE}, InvalidDue, ["naive", "2030"], id="naive-due"),
    pytest.param({"due": "2030-01-01"}, InvalidDue, ["'2030-01-01'"], id="string-due"),
    # Bounds: each of these once overflowed while the job was finished, or on the way in.
    pytest.param(
        {"remove_delay": 10**12}, InvalidDuration, ["remove_delay=", "100 years"], id="huge-remove"
    ),
    pytest.param(
        {"delay": 10**12}, InvalidDuration, ["delay=1000000000000", "100 years"], id="huge-delay"
    ),
    pytest.param(
        {"timeout": timedelta.max}, InvalidDuration, ["timeout=", "100 years"], id="huge-timeout"
    ),
    pytest.param(
        {"auto_reschedule_on_failure_delay": timedelta(days=40000), "max_attempts": 3},
        InvalidDuration,
        ["auto_reschedule_on_failure_delay=", "100 years"],
        id="huge-retry-delay",
    ),
    pytest.param(
        {"due": datetime.max.replace(tzinfo=dt_timezone.utc)},
        InvalidDue,
        ["9000-01-01"],
        id="max-due",
    ),
    pytest.param(
        {"due": datetime(9500, 1, 1, tzinfo=dt_timezone.utc)},
        InvalidDue,
        ["out of range"],
        id="far-due",
    ),
    pytest.param(
        {"max_attempts": 2**40}, InvalidOption, [str(2**40), str(2**31 - 1)], id="huge-attempts"
    ),
    pytest.param({"data": {"id": 2**64}}, InvalidJobData, ["data['id']", "64-bit"], id="huge-int"),
    pytest.param({"data": DEEP}, InvalidJobData, ["nested more than 100 levels"], id="deep-data"),
    pytest.param({"on_duplicate_tag": "merge"}, InvalidOption, ["'merge'"], id="on-duplicate"),
    pytest.param({"user": AnonymousUser()}, InvalidUser, ["AnonymousUser"], id="anonymous-user"),
    pytest.param({"user": 1.5}, InvalidUser, ["user=1.5"], id="float-user"),
    pytest.param({"user": True}, InvalidUser, ["user=True"], id="bool-user"),
    pytest.param({"user": 987654}, InvalidUser, ["987654"], id="no-such-user-id"),
    pytest.param({"user": "abc"}, InvalidUser, ["'abc'"], id="malformed-user-id"),
    pytest.param({"tag": ""}, InvalidOption, ["tag=''"], id="empty-tag"),
    pytest.param({"tag": "x" * 256}, InvalidOption, ["tag='xxx"], id="long-tag"),
    pytest.param({"tag": "a\x00b"}, InvalidOption, ["tag='a\\x00b'"], id="nul-tag"),
    pytest.param({"queue": "no spaces"}, InvalidOption, ["queue='no spaces'"], id="queue"),
    pytest.param({"priority": 1.5}, InvalidOption, ["priority=1.5"], id="priority"),
    pytest.param({"max_attempts": 0}, InvalidOption, ["max_attempts=0"], id="max-attempts"),
]


@pytest.mark.parametrize(("options", "error", "fragments"), BAD_SUBMISSIONS)
def test_bad_input_is_refused_naming_the_value_and_writes_nothing(
    existing: WorkerJob, options: dict[str, Any], error: type[InvalidJobError], fragments: list[str]
) -> None:
    with CaptureQueriesContext(connection) as queries, pytest.raises(error) as raised:
        submit_job(**{"tag": "dup", "type": "demo.add", **options})
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, InvalidJobError)
    for fragment in fragments:
        assert fragment in str(raised.value)
    assert _writes(queries) == []
    _assert_untouched(existing)


def test_an_unsaved_user_is_refused(existing: WorkerJob) -> None:
    with pytest.raises(InvalidUser, match="not a saved"):
        submit_job(tag="dup", type="demo.add", user=get_user_model()(username="ghost"))
    _assert_untouched(existing)


# --- duplicate tags -------------------------------------------------------------------------


def test_replace_cancels_scheduled_jobs_with_the_tag_but_not_running_ones() -> None:
    running = submit_job(tag="t", type="demo.add", on_duplicate_tag="allow")
    _make_running(running)
    plain = submit_job(tag="t", type="demo.add", on_duplicate_tag="allow")
    kept = submit_job(tag="t", type="demo.add", remove_delay=60, on_duplicate_tag="allow")
    persistent = submit_job(tag="t", type="demo.add", persistent=True, on_duplicate_tag="allow")
    other_tag = submit_job(tag="other", type="demo.add")

    before = timezone.now()
    new = submit_job(tag="t", type="demo.add")  # on_duplicate_tag="replace" is the default
    after = timezone.now()

    for old, retention in [(plain, timedelta(days=7)), (kept, timedelta(seconds=60))]:
        old.refresh_from_db()
        assert old.status == Status.CANCELLED
        assert old.success is False
        assert old.finished is not None and before <= old.finished <= after
        assert old.result == {"error": "Job cancelled due to new job being created"}
        assert old.result == {"error": CANCELLED_BY_NEW_JOB}
        assert old.remove_at == old.finished + retention
    persistent.refresh_from_db()
    assert (persistent.status, persistent.remove_at) == (Status.CANCELLED, None)
    running.refresh_from_db()
    assert (running.status, running.finished, running.result) == (Status.RUNNING, None, None)
    other_tag.refresh_from_db()
    assert other_tag.status == Status.SCHEDULED
    assert list(WorkerJob.objects.filter(tag="t").scheduled().values_list("pk", flat=True)) == [
        new.pk
    ]


def test_replace_cancels_using_the_configured_retention_for_failed_jobs() -> None:
    old = submit_job(tag="t", type="demo.add")
    with override_settings(QUICKWORKER={"RETAIN_FAILED": 120}):
        submit_job(tag="t", type="demo.add")
    old.refresh_from_db()
    assert old.finished is not None
    assert old.remove_at == old.finished + timedelta(seconds=120)


def test_skip_returns_the_scheduled_job_and_writes_nothing() -> None:
    first = submit_job(tag="t", type="demo.add", data={"n": 1})
    with CaptureQueriesContext(connection) as queries:
        second = submit_job(tag="t", type="demo.fail", data={"n": 2}, on_duplicate_tag="skip")
    assert second.pk == first.pk
    assert (second.type, second.data) == ("demo.add", {"n": 1})
    assert _writes(queries) == []  # MySQL's tag lock, an upsert of a row that exists, aside
    assert list(WorkerJob.objects.values_list("pk", "status")) == [(first.pk, Status.SCHEDULED)]


def test_skip_inserts_when_the_only_job_with_the_tag_is_running() -> None:
    running = submit_job(tag="t", type="demo.add")
    _make_running(running)
    new = submit_job(tag="t", type="demo.add", on_duplicate_tag="skip")
    assert new.pk != running.pk
    assert WorkerJob.objects.get(pk=new.pk).status == Status.SCHEDULED
    assert WorkerJob.objects.get(pk=running.pk).status == Status.RUNNING


def test_allow_keeps_both_scheduled_jobs() -> None:
    first = submit_job(tag="t", type="demo.add")
    second = submit_job(tag="t", type="demo.add", on_duplicate_tag="allow")
    assert first.pk != second.pk
    statuses = dict(WorkerJob.objects.filter(tag="t").values_list("pk", "status"))
    assert statuses == {first.pk: Status.SCHEDULED, second.pk: Status.SCHEDULED}


@pytest.mark.postgresql
@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["replace", "skip"])
def test_concurrent_submissions_of_one_tag_leave_exactly_one_scheduled_job(
    mode: OnDuplicateTag,
) -> None:
    threads_count = 8
    results: list[int] = []

    def submit(index: int) -> None:
        row = submit_job(tag="race", type="demo.add", data={"n": index}, on_duplicate_tag=mode)
        results.append(row.pk)

    run_together([functools.partial(submit, i) for i in range(threads_count)])
    assert len(results) == threads_count
    scheduled = list(WorkerJob.objects.filter(tag="race").scheduled().values_list("pk", flat=True))
    assert len(scheduled) == 1
    if mode == "replace":
        assert WorkerJob.objects.filter(tag="race").cancelled().count() == threads_count - 1
    else:
        assert WorkerJob.objects.filter(tag="race").count() == 1
        assert set(results) == set(scheduled)


# --- transactions ---------------------------------------------------------------------------


def test_a_rolled_back_submission_leaves_no_row() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        submitted = submit_job(tag="t", type="demo.add")
        assert WorkerJob.objects.filter(pk=submitted.pk).exists()  # written on our connection
        raise RuntimeError("roll back")
    assert not WorkerJob.objects.exists()


def test_a_rolled_back_replace_leaves_the_old_job_scheduled() -> None:
    old = submit_job(tag="t", type="demo.add")
    with pytest.raises(RuntimeError), transaction.atomic():
        submit_job(tag="t", type="demo.add")
        assert WorkerJob.objects.get(pk=old.pk).status == Status.CANCELLED
        raise RuntimeError("roll back")
    _assert_untouched(old)


@pytest.mark.django_db(transaction=True)
def test_a_replace_in_a_transaction_managed_by_hand_is_rolled_back_with_it() -> None:
    """Autocommit turned off by the caller, not atomic(): the replace is still theirs."""
    old = submit_job(tag="t", type="demo.add")
    transaction.set_autocommit(False)
    try:
        submit_job(tag="t", type="demo.add")
        transaction.rollback()
    finally:
        transaction.set_autocommit(True)
    _assert_untouched(old)


def test_a_failed_submission_does_not_break_the_callers_transaction(existing: WorkerJob) -> None:
    with transaction.atomic():
        with pytest.raises(InvalidUser):
            submit_job(tag="dup", type="demo.add", user=987654)
        # The caller caught the error; its transaction must still be usable.
        submitted = submit_job(tag="after", type="demo.add")
    statuses = dict(WorkerJob.objects.values_list("pk", "status"))
    assert statuses == {existing.pk: Status.SCHEDULED, submitted.pk: Status.SCHEDULED}


def _mark(listener: psycopg.Connection[Any], payload: str) -> None:
    """Send a marker notification: everything sent before it arrives before it."""
    listener.execute("SELECT pg_notify(%s, %s)", [NOTIFY_CHANNEL, payload])


def _next_payloads(listener: psycopg.Connection[Any], count: int) -> list[str]:
    notes = list(listener.notifies(timeout=10, stop_after=count))
    assert {note.channel for note in notes} <= {NOTIFY_CHANNEL}
    return [note.payload for note in notes]


@pytest.mark.postgresql  # NOTIFY: MySQL has none (its wake-up is the parent's poll)
@pytest.mark.django_db(transaction=True)
def test_workers_are_woken_once_per_queue_only_when_the_transaction_commits(
    listener: psycopg.Connection[Any],
) -> None:
    with transaction.atomic():
        submit_job(tag="t", type="demo.add", queue="mail")
        _mark(listener, "marker-before-commit")
        # Nothing from the open transaction arrives ahead of the marker.
        assert _next_payloads(listener, 1) == ["marker-before-commit"]
    assert _next_payloads(listener, 1) == ["mail"]
    _mark(listener, "marker-after-commit")
    assert _next_payloads(listener, 1) == ["marker-after-commit"]  # exactly one wake-up


@pytest.mark.postgresql  # NOTIFY: MySQL has none (its wake-up is the parent's poll)
@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_submission_wakes_nobody(listener: psycopg.Connection[Any]) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        submit_job(tag="t", type="demo.add", queue="rolledback")
        raise RuntimeError("roll back")
    submit_job(tag="u", type="demo.add", queue="committed")
    assert _next_payloads(listener, 1) == ["committed"]


@pytest.mark.postgresql  # NOTIFY: MySQL has none (its wake-up is the parent's poll)
@pytest.mark.django_db(transaction=True)
def test_a_bulk_submission_wakes_each_queue_once(listener: psycopg.Connection[Any]) -> None:
    submit_jobs([{"tag": f"t{i}", "type": "demo.add", "queue": q} for i, q in enumerate("abab")])
    _mark(listener, "marker")
    assert sorted(_next_payloads(listener, 3)) == ["a", "b", "marker"]


# --- bulk -----------------------------------------------------------------------------------

# Queries of a bulk "replace": the user check, then the tag lock (PostgreSQL's; MariaDB's is an
# upsert of the tags' lock rows), the look for duplicates (SQLite), the UPDATE that cancels
# them, the INSERT and the wake-up NOTIFY (PostgreSQL). PostgreSQL sends the last three as one
# statement after the lock, in the same round trip; MariaDB sends the lock, the cancel and the
# INSERT in one call of a procedure.
BULK_QUERIES = {"postgresql": 3, "sqlite": 4, "mysql": 2}


def test_submit_jobs_writes_many_jobs_with_one_insert(user: AbstractBaseUser) -> None:
    # As many rows as one statement may carry: 100, or fewer where the database caps the
    # parameters of a statement (SQLite under Django 5.2 assumes its old limit of 999).
    columns = len(WorkerJob._meta.concrete_fields) - 1  # all but the generated id
    limit = connection.features.max_query_params  # None: no limit
    count = 100 if limit is None else min(100, limit // columns)
    old = submit_job(tag="bulk:3", type="demo.add")
    submissions = [
        {
            "tag": f"bulk:{i}",
            "type": "demo.add",
            "data": {"i": i},
            "user": user.pk if i % 2 else None,
        }
        for i in range(count)
    ]
    with CaptureQueriesContext(connection) as queries:
        jobs = submit_jobs(submissions)
    statements = _statements(queries)
    assert count >= 30
    job_insert = f"INSERT INTO {connection.ops.quote_name(WorkerJob._meta.db_table)} "
    assert sum(query["sql"].count(job_insert) for query in queries) == 1
    assert len(queries) == BULK_QUERIES[connection.vendor], statements
    assert [j.tag for j in jobs] == [f"bulk:{i}" for i in range(count)]
    assert all(j.pk is not None for j in jobs)
    assert len({j.pk for j in jobs}) == count
    stored = dict(WorkerJob.objects.exclude(pk=old.pk).values_list("pk", "tag"))
    assert stored == {j.pk: j.tag for j in jobs}
    with_user = WorkerJob.objects.filter(pk__in=[j.pk for j in jobs], user=user)
    assert with_user.count() == count // 2
    assert WorkerJob.objects.get(pk=old.pk).status == Status.CANCELLED


def test_submit_jobs_returns_rows_in_submission_order_with_skipped_ones_in_place() -> None:
    existing = submit_job(tag="b", type="demo.add", data={"old": True})
    jobs = submit_jobs(
        [{"tag": tag, "type": "demo.add"} for tag in ["c", "b", "a"]], on_duplicate_tag="skip"
    )
    assert [j.tag for j in jobs] == ["c", "b", "a"]
    assert jobs[1].pk == existing.pk
    assert jobs[1].data == {"old": True}
    assert jobs[0].pk is not None and jobs[2].pk is not None
    assert WorkerJob.objects.count() == 3
    assert WorkerJob.objects.scheduled().count() == 3


def test_submit_jobs_of_nothing_writes_nothing() -> None:
    assert submit_jobs([]) == []
    assert not WorkerJob.objects.exists()


@pytest.mark.parametrize("missing", ["tag", "type"])
def test_a_submission_without_its_tag_or_type_is_refused_by_name(missing: str) -> None:
    given = {"tag": "t", "type": "demo.add", "data": {"a": 1, "b": 2}}
    del given[missing]

    with pytest.raises(InvalidOption, match=f"A submission needs a '{missing}'"):
        submit_jobs([{"tag": "fine", "type": "demo.add"}, given])
    assert not WorkerJob.objects.exists()


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"data": {"when": AWARE}}, id="bad-data"),
        pytest.param({"user": 987654}, id="no-such-user"),
        pytest.param({"type": "nope"}, id="unknown-type"),
    ],
)
@pytest.mark.parametrize("position", [0, 2])
def test_one_bad_submission_in_a_bulk_writes_nothing(
    existing: WorkerJob, bad: dict[str, Any], position: int
) -> None:
    submissions: list[dict[str, Any]] = [
        {"tag": "dup", "type": "demo.add"},
        {"tag": "x", "type": "demo.add"},
        {"tag": "y", "type": "demo.add"},
    ]
    submissions[position] = {**submissions[position], **bad}
    with pytest.raises(InvalidJobError):
        submit_jobs(submissions)
    _assert_untouched(existing)


@pytest.mark.parametrize("mode", ["replace", "skip"])
def test_a_tag_repeated_in_one_bulk_is_refused_unless_allowed(
    existing: WorkerJob, mode: OnDuplicateTag
) -> None:
    submissions = [{"tag": tag, "type": "demo.add"} for tag in ["dup", "x", "dup", "y"]]
    with pytest.raises(InvalidOption) as raised:
        submit_jobs(submissions, on_duplicate_tag=mode)
    assert "'dup'" in str(raised.value)
    assert "'x'" not in str(raised.value)
    assert "allow" in str(raised.value)
    _assert_untouched(existing)


def test_a_tag_repeated_in_one_bulk_is_kept_twice_with_allow(existing: WorkerJob) -> None:
    jobs = submit_jobs(
        [{"tag": "dup", "type": "demo.add"}, {"tag": "dup", "type": "demo.fail"}],
        on_duplicate_tag="allow",
    )
    assert [j.type for j in jobs] == ["demo.add", "demo.fail"]
    assert WorkerJob.objects.filter(tag="dup").scheduled().count() == 3


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("prepared", [True, False])
@pytest.mark.parametrize("in_transaction", [True, False])
@pytest.mark.parametrize("mode", ["replace", "allow"])
def test_a_submission_is_one_round_trip_on_postgresql_replacing_or_not(
    mode: OnDuplicateTag, in_transaction: bool, prepared: bool
) -> None:
    """One round trip, prepared or not, in the caller's transaction or in autocommit mode
    (after the first of its kind, which prepares its statements)."""
    with override_settings(QUICKWORKER={"PREPARED_STATEMENTS": prepared}):
        submit_job(tag="first", type="demo.add", on_duplicate_tag=mode)
        atomic = transaction.atomic() if in_transaction else contextlib.nullcontext()
        with atomic:
            old = submit_job(tag="t", type="demo.add")  # and the transaction's BEGIN
            with round_trips() as counted:
                new = submit_job(tag="t", type="demo.add", on_duplicate_tag=mode)
    assert counted == [1]
    expected = Status.CANCELLED if mode == "replace" else Status.SCHEDULED
    assert WorkerJob.objects.get(pk=old.pk).status == expected
    assert WorkerJob.objects.get(pk=new.pk).status == Status.SCHEDULED
    assert connection.connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


@pytest.mark.django_db(transaction=True)
def test_each_replace_cancels_at_its_own_time_and_with_the_retention_of_the_moment() -> None:
    # PostgreSQL fills a cancel statement compiled once: nothing of one replace may stay.
    chain = [submit_job(tag="t", type="demo.add", persistent=index == 1) for index in range(3)]
    with override_settings(QUICKWORKER={"RETAIN_FAILED": 120}):
        chain.append(submit_job(tag="t", type="demo.add"))
    rows = [WorkerJob.objects.get(pk=job.pk) for job in chain]
    assert [row.status for row in rows] == [Status.CANCELLED] * 3 + [Status.SCHEDULED]
    finished = [row.finished for row in rows[:3]]
    assert None not in finished and finished == sorted(finished) and len(set(finished)) == 3
    for cancelled, replacement in itertools.pairwise(rows):
        assert cancelled.replacement() == replacement
    assert rows[0].remove_at == rows[0].finished + conf.retain_failed
    assert rows[1].remove_at is None  # persistent
    assert rows[2].remove_at == rows[2].finished + timedelta(seconds=120)


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_a_failed_replace_in_autocommit_rolls_back_what_it_began(
    existing: WorkerJob, listener: psycopg.Connection[Any]
) -> None:
    # Another session holds the tag's lock; ours gives up waiting, after its BEGIN.
    listener.execute(
        "SELECT pg_advisory_lock(%s, hashtext(%s))", [TAG_LOCK_NAMESPACE, existing.tag]
    )
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '100ms'")
    try:
        with pytest.raises(OperationalError):
            submit_job(tag=existing.tag, type="demo.add")
        assert connection.connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
    _assert_untouched(existing)


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("prepared", "pipeline"), [(True, True), (False, True), (True, False)])
def test_replace_with_parameters_bound_on_the_server(
    prepared: bool, pipeline: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bound on the server (one statement a call): the lock and the statement that cancels
    and inserts, pipelined, or one call each where libpq is older than 14 (no pipeline)."""
    if not pipeline:
        monkeypatch.setattr(psycopg.Pipeline, "is_supported", classmethod(lambda cls: False))
    old = submit_job(tag="t", type="demo.add")
    options = connection.settings_dict["OPTIONS"]
    connection.close()
    options["server_side_binding"] = True  # read when the connection opens
    try:
        submissions = [{"tag": "t", "type": "demo.add"}, {"tag": "u", "type": "demo.add"}]
        with (
            override_settings(QUICKWORKER={"PREPARED_STATEMENTS": prepared}),
            CaptureQueriesContext(connection) as queries,
            round_trips() as counted,
        ):
            jobs = submit_jobs(submissions)
        assert _statements(queries) == ["SELECT", "WITH"]  # the tag lock; cancel and insert
        # Pipelined: one round trip, its statements prepared in it. One call each: BEGIN,
        # each statement (and its preparation, the first time) and COMMIT.
        assert counted == [1 if pipeline else 4 + 2 * prepared]
        status = connection.connection.info.transaction_status
    finally:
        connection.close()
        del options["server_side_binding"]
    assert status == psycopg.pq.TransactionStatus.IDLE
    assert WorkerJob.objects.get(pk=old.pk).status == Status.CANCELLED
    stored = dict(WorkerJob.objects.scheduled().values_list("pk", "tag"))
    assert stored == {jobs[0].pk: "t", jobs[1].pk: "u"}


@pytest.mark.postgresql
@pytest.mark.django_db
def test_a_replace_cancel_planned_for_any_values_walks_the_index_of_scheduled_tags() -> None:
    """The cancel of a replace is a prepared statement, which PostgreSQL comes to plan once
    for any values (a generic plan, forced here). Such a plan can use the partial index of
    scheduled tags only if the statement names the status itself: with the status bound, a
    replace read the status index's entry of every scheduled job."""
    db = PostgreSQL(connection.alias)
    sql, params = db.cancel_statement(["t"], CANCELLED_BY_NEW_JOB)
    db.server_cursor().execute(sql, params)
    raw = connection.connection
    newest = "SELECT name FROM pg_prepared_statements ORDER BY prepare_time DESC LIMIT 1"
    (name,) = raw.execute(newest).fetchone()
    values = ", ".join(psycopg.ClientCursor(raw).mogrify("%s", [value]) for value in params)
    raw.execute("SET plan_cache_mode = force_generic_plan")
    try:
        (plan,) = raw.execute(f"EXPLAIN (FORMAT JSON) EXECUTE {name}({values})").fetchone()
    finally:
        raw.execute("RESET plan_cache_mode")
    assert ("Index Scan", "quickworker_pending_tag") in plan_nodes(plan)


@pytest.mark.sqlite
@pytest.mark.django_db
def test_a_replace_on_sqlite_looks_its_tags_up_in_the_index_of_scheduled_tags() -> None:
    """Without statistics SQLite read every scheduled job through the status index, for the
    look and for the cancel, on every replace."""
    db = database(connection.alias)
    statements = [db.scheduled_with_tags(["t", "u"]), db.cancel_statement(["t"], "replaced")]
    with connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            plan = " ".join(str(row[-1]) for row in cursor.fetchall())
            assert "USING INDEX quickworker_pending_tag (tag=?)" in plan, (sql, plan)


# What the fast insert path writes must be what the ORM's save() would write, column for
# column, whatever the options: a mix of rows, each column varying or not.
VARIED: list[dict[str, Any]] = [
    {"tag": "v:0", "type": "demo.add"},
    {
        "tag": "v:1",
        "type": "demo.countdown",
        "data": {"steps": 3, "nested": {"list": [1, 2.5, None, True, "x"]}},
        "due": datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=ZoneInfo("Asia/Kolkata")),
        "auto_reschedule_on_failure": True,
        "auto_reschedule_on_failure_delay": 30,
        "max_attempts": 4,
        "timeout": timedelta(minutes=2),
        "remove_delay": 3600.5,
        "persistent": True,
        "priority": -5,
        "queue": "mail",
        "retry_backoff": "exponential",
    },
    {"tag": "v:2 ünïcode ✓", "type": "demo.add", "data": "text", "cron": "*/5 * * * *"},
    {"tag": "v:3", "type": "demo.add", "data": [1, "two"], "delay": 90, "priority": 2**31 - 1},
    {"tag": "v:0", "type": "demo.add", "data": None},  # the first one again
]


def _raw_rows(pks: list[Any]) -> dict[Any, dict[str, Any]]:
    """The rows ``pks`` as the database driver gives them, no conversion."""
    table = connection.ops.quote_name(WorkerJob._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE id IN ({', '.join(['%s'] * len(pks))})", pks)
        names = [column[0] for column in cursor.description]
        return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


@pytest.mark.parametrize("count", [1, len(VARIED)], ids=["one", "bulk"])
def test_submitted_rows_are_what_the_orm_writes_and_what_it_returns(
    user: AbstractBaseUser, count: int
) -> None:
    submissions: list[dict[str, Any]] = [{**s, "user": user} for s in VARIED[:count]]
    submissions[-1]["user"] = None
    jobs = submit_jobs(submissions, on_duplicate_tag="allow")
    stamped = {"created_at", "updated_at"}
    fields = WorkerJob._meta.concrete_fields
    written = {f.attname: None for f in fields if f.primary_key or f.attname in stamped}
    orm = []
    for job_row in jobs:
        copy = WorkerJob(**{f.attname: getattr(job_row, f.attname) for f in fields} | written)
        copy.save()
        orm.append(copy)
    raw = _raw_rows([j.pk for j in jobs + orm])
    for ours, theirs in zip(jobs, orm, strict=True):
        assert (ours._state.adding, ours._state.db) == (False, "default")
        stored = WorkerJob.objects.get(pk=ours.pk)
        assert {f.attname: getattr(stored, f.attname) for f in fields} == {
            f.attname: getattr(ours, f.attname) for f in fields
        }
        assert ours.created_at == ours.updated_at and ours.created_at is not None
        unstamped = set(raw[ours.pk]) - stamped - {"id"}
        assert {name: raw[ours.pk][name] for name in unstamped} == {
            name: raw[theirs.pk][name] for name in unstamped
        }
        for name in stamped:  # stored in the ORM's form too
            assert type(raw[ours.pk][name]) is type(raw[theirs.pk][name])


def test_identical_rows_in_one_bulk_are_each_written() -> None:
    jobs = submit_jobs([{"tag": "same", "type": "demo.add"}] * 3, on_duplicate_tag="allow")
    assert len({j.pk for j in jobs}) == 3
    assert WorkerJob.objects.filter(tag="same").count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_bulk_beyond_one_insert_is_written_in_order_in_one_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(databases_rows, "ROWS_PER_INSERT", 3)
    old = submit_job(tag="bulk:4", type="demo.add")
    with CaptureQueriesContext(connection) as queries:
        jobs = submit_jobs([{"tag": f"bulk:{i}", "type": "demo.add"} for i in range(7)])
    table = connection.ops.quote_name(WorkerJob._meta.db_table)
    # PostgreSQL writes any number of rows with one INSERT of arrays.
    expected = 1 if connection.vendor == "postgresql" else 3
    assert sum(q["sql"].count(f"INSERT INTO {table} ") for q in queries) == expected
    assert dict(WorkerJob.objects.scheduled().values_list("pk", "tag")) == {
        j.pk: j.tag for j in jobs
    }
    assert WorkerJob.objects.get(pk=old.pk).status == Status.CANCELLED


def test_options_are_settled_by_value_and_type_and_the_current_settings() -> None:
    with pytest.raises(InvalidOption):
        submit_jobs(
            [{"tag": "p", "type": "demo.add", "priority": p} for p in (1, True)],
            on_duplicate_tag="allow",
        )
    caps = []
    for cap in (3, 9):
        with override_settings(QUICKWORKER={"MAX_ATTEMPTS": cap}):
            caps.append(submit_job(tag="r", type="demo.add", auto_reschedule_on_failure=True))
    assert [j.max_attempts for j in caps] == [3, 9]


def test_a_job_is_built_as_the_model_builds_it() -> None:
    """new_job fills in the attributes that Model.__init__ would, without calling it."""
    values = {"tag": "t", "type": "demo.add", "user_id": None, "data": {"a": [1]}, "priority": 3}

    built, modelled = new_job(values), WorkerJob(**values)

    assert type(built) is WorkerJob
    assert {**vars(built), "_state": None} == {**vars(modelled), "_state": None}
    assert (built._state.adding, built._state.db) == (True, None)
    first, second = new_job({"tag": "t"}), new_job({"tag": "u"})
    assert first.data == {} and first.data is not second.data  # each its own default dict


@pytest.mark.django_db
def test_a_job_is_built_by_the_model_when_init_signals_are_received() -> None:
    """With a receiver of pre_init or post_init for WorkerJob, both are sent for each job."""
    received: list[str] = []

    def on_pre_init(**kwargs: Any) -> None:
        received.append("pre_init")

    def on_post_init(instance: WorkerJob, **kwargs: Any) -> None:
        received.append(f"post_init {instance.tag}")

    post_init.connect(on_post_init, sender=WorkerJob)
    pre_init.connect(on_pre_init, sender=WorkerJob)
    try:
        submit_jobs([{"tag": "a", "type": "demo.add"}, {"tag": "b", "type": "demo.add"}])
    finally:
        post_init.disconnect(on_post_init, sender=WorkerJob)
        pre_init.disconnect(on_pre_init, sender=WorkerJob)

    assert received == ["pre_init", "post_init a", "pre_init", "post_init b"]
