"""WorkerJob: statuses, querysets, the status/timestamps constraint, cancel(), indexes."""

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.test import override_settings
from django.utils import timezone

from django_quickworker.models import Status, WorkerJob

MIGRATIONS = Path(__file__).resolve().parent.parent / "django_quickworker" / "migrations"


def make_job(tag: str, **fields: Any) -> WorkerJob:
    fields.setdefault("due", timezone.now())
    return WorkerJob.objects.create(tag=tag, type="demo.add", **fields)


@pytest.fixture
def now() -> datetime:
    return timezone.now()


@pytest.fixture
def jobs(now: datetime) -> dict[str, WorkerJob]:
    """One row in each state, each with timestamps consistent with its status."""
    hour = timedelta(hours=1)
    return {
        "due": make_job("due", due=now - hour),
        "later": make_job("later", due=now + hour),
        "running": make_job("running", status=Status.RUNNING, started=now),
        "succeeded": make_job(
            "succeeded", status=Status.SUCCEEDED, started=now, finished=now, success=True
        ),
        "failed": make_job(
            "failed", status=Status.FAILED, started=now, finished=now, success=False
        ),
        "cancelled": make_job("cancelled", status=Status.CANCELLED, finished=now, success=False),
    }


def tags(queryset: Any) -> set[str]:
    return set(queryset.values_list("tag", flat=True))


@pytest.mark.django_db
def test_a_new_row_is_scheduled() -> None:
    job = make_job("new")
    job.refresh_from_db()

    assert job.status == Status.SCHEDULED == "scheduled"
    assert (job.started, job.finished, job.success, job.remove_at) == (None, None, None, None)
    assert job.data == {}
    assert str(job) == f"demo.add #{job.pk} (new)"


@pytest.mark.django_db
def test_querysets_select_by_status(jobs: dict[str, WorkerJob], now: datetime) -> None:
    rows = WorkerJob.objects

    assert tags(rows.scheduled()) == {"due", "later"}
    assert tags(rows.due()) == {"due"}
    assert tags(rows.due(now + timedelta(hours=2))) == {"due", "later"}
    assert tags(rows.running()) == {"running"}
    assert tags(rows.finished()) == {"succeeded", "failed", "cancelled"}
    assert tags(rows.succeeded()) == {"succeeded"}
    assert tags(rows.failed()) == {"failed"}
    assert tags(rows.cancelled()) == {"cancelled"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fields",
    [
        {"status": Status.RUNNING},  # started NULL
        {"status": Status.RUNNING, "started": "now", "success": True},
        {"status": Status.SCHEDULED, "finished": "now"},
        {"status": Status.SCHEDULED, "started": "now"},
        {"status": Status.SCHEDULED, "success": False},
        {"status": Status.SUCCEEDED, "started": "now", "finished": "now", "success": False},
        {"status": Status.SUCCEEDED, "finished": "now", "success": True},  # never started
        {"status": Status.FAILED, "started": "now", "success": False},  # finished NULL
        {"status": Status.CANCELLED, "finished": "now", "success": True},
        # success NULL on a finished row: "success = true" is NULL there, and a CHECK whose
        # condition is NULL passes, so the constraint must test for NULL explicitly.
        {"status": Status.SUCCEEDED, "started": "now", "finished": "now"},
        {"status": Status.FAILED, "started": "now", "finished": "now"},
        {"status": Status.CANCELLED, "finished": "now"},
        {"status": "bogus"},
    ],
    ids=lambda fields: "-".join(f"{key}={value}" for key, value in fields.items()),
)
def test_constraint_refuses_status_that_disagrees_with_timestamps(
    fields: dict[str, Any], now: datetime
) -> None:
    values = {key: now if value == "now" else value for key, value in fields.items()}

    with pytest.raises(IntegrityError), transaction.atomic():
        make_job("inconsistent", **values)

    assert not WorkerJob.objects.filter(tag="inconsistent").exists()


@pytest.mark.django_db
def test_constraint_also_guards_updates(jobs: dict[str, WorkerJob]) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        WorkerJob.objects.filter(pk=jobs["due"].pk).update(status=Status.SUCCEEDED)

    assert WorkerJob.objects.get(pk=jobs["due"].pk).status == Status.SCHEDULED


@pytest.mark.django_db
def test_cancel_touches_only_scheduled_rows(jobs: dict[str, WorkerJob]) -> None:
    before = {job.tag: (job.status, job.finished, job.result) for job in WorkerJob.objects.all()}

    assert WorkerJob.objects.all().cancel("stop") == 2

    after = {job.tag: (job.status, job.finished, job.result) for job in WorkerJob.objects.all()}
    assert tags(WorkerJob.objects.cancelled()) == {"due", "later", "cancelled"}
    for tag in ("running", "succeeded", "failed", "cancelled"):
        assert after[tag] == before[tag]


@pytest.mark.django_db
def test_cancel_records_the_reason_and_when_to_remove_the_row() -> None:
    default = make_job("default")
    own_delay = make_job("own", remove_delay=timedelta(minutes=3))
    persistent = make_job("persistent", persistent=True, remove_delay=timedelta(minutes=3))
    start = timezone.now()

    with override_settings(QUICKWORKER={"RETAIN_FAILED": timedelta(days=2)}):
        assert WorkerJob.objects.filter(tag__in=["default", "own", "persistent"]).cancel("why") == 3
    end = timezone.now()

    for job in (default, own_delay, persistent):
        job.refresh_from_db()
        assert job.status == Status.CANCELLED
        assert job.finished is not None and start <= job.finished <= end
        assert job.success is False
        assert job.result == {"error": "why"}
        assert job.started is None
    assert default.finished is not None and own_delay.finished is not None
    assert default.remove_at == default.finished + timedelta(days=2)
    assert own_delay.remove_at == own_delay.finished + timedelta(minutes=3)
    assert persistent.remove_at is None


@pytest.mark.django_db
def test_deleting_a_user_keeps_their_jobs() -> None:
    user = User.objects.create_user("leaving")
    job = make_job("owned", user=user)

    user.delete()

    job.refresh_from_db()
    assert job.user_id is None


@pytest.mark.django_db
def test_indexes_exist_in_the_database() -> None:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, WorkerJob._meta.db_table)

    for name in ("quickworker_claimable", "quickworker_removable", "quickworker_pending_tag"):
        assert constraints[name]["index"] is True
    # Without partial indexes (MySQL), each is led by the column its condition tests.
    status = [] if connection.features.supports_partial_indexes else ["status"]
    assert constraints["quickworker_claimable"]["columns"] == [*status, "priority", "due", "id"]
    assert constraints["quickworker_removable"]["columns"] == ["remove_at"]
    assert constraints["quickworker_pending_tag"]["columns"] == [*status, "tag"]


@pytest.mark.django_db
@pytest.mark.postgresql  # its catalog; MySQL's full indexes: test_indexes_exist_in_the_database
def test_indexes_are_partial_on_postgresql() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s",
            [WorkerJob._meta.db_table],
        )
        definitions = dict(cursor.fetchall())

    assert "WHERE" in definitions["quickworker_claimable"]
    assert "priority DESC" in definitions["quickworker_claimable"]
    assert "WHERE" in definitions["quickworker_removable"]
    assert "WHERE" in definitions["quickworker_pending_tag"]


def test_there_is_one_migration() -> None:
    assert sorted(path.name for path in MIGRATIONS.glob("[0-9]*.py")) == ["0001_initial.py"]


@pytest.mark.django_db
def test_migrations_match_the_models() -> None:
    # Exits non-zero when the models have changes the migration does not have.
    call_command("makemigrations", "quickworker", "--check", "--dry-run", verbosity=0)
