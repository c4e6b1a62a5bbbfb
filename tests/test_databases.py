"""The database seam: one object per connection, chosen by its vendor; the rest refuses."""

import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from django.db import ProgrammingError, connection, transaction

from django_quickworker import submit_job
from django_quickworker.checks import check_database, check_database_server
from django_quickworker.claim import claim_next
from django_quickworker.databases import MODULES, database
from django_quickworker.databases.base import Claim
from django_quickworker.databases.postgresql import PostgreSQL
from django_quickworker.finish import Outcome, finish_and_claim_next
from django_quickworker.models import CLAIMABLE_INDEX, Status, WorkerJob, WorkerTagLock

UNSUPPORTED_PROJECT = textwrap.dedent(
    """
    import django
    from django.conf import settings
    from django.core.management import call_command

    # No DATABASES: Django's dummy backend, whose vendor ("unknown") the app cannot run on.
    settings.configure(
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "channels",
                        "django_quickworker"],
    )
    django.setup()
    call_command("check")
    """
)


def test_each_connection_gets_the_module_of_its_vendor() -> None:
    db = database("default")

    assert db.vendor == connection.vendor
    assert type(db).__module__ == MODULES[connection.vendor][0]
    assert database("default") is db  # one object per connection


def test_manage_py_check_refuses_an_unsupported_database() -> None:
    result = subprocess.run(
        [sys.executable, "-c", UNSUPPORTED_PROJECT], capture_output=True, text=True, timeout=60
    )

    assert result.returncode != 0
    assert "quickworker.E005" in result.stderr
    assert "'unknown'" in result.stderr  # the vendor, named
    assert "'mysql', 'postgresql', 'sqlite'" in result.stderr  # and what is supported


# --- MySQL and MariaDB ---------------------------------------------------------------------


@pytest.fixture
def reconnect_with(request: pytest.FixtureRequest) -> Iterator[Callable[..., None]]:
    """Reconnect the default connection with these OPTIONS; the originals come back after."""
    options = connection.settings_dict.setdefault("OPTIONS", {})
    saved = dict(options)

    def reconnect(**changes: object) -> None:
        options.update(changes)
        connection.close()
        connection.ensure_connection()

    yield reconnect
    options.clear()
    options.update(saved)
    connection.close()


@pytest.mark.mysql
@pytest.mark.django_db
def test_read_committed_passes_the_isolation_check() -> None:
    assert check_database_server(None, databases=["default"]) == []
    assert check_database(None) == []


@pytest.mark.mysql
@pytest.mark.django_db(
    transaction=True
)  # it reconnects, which a test transaction would not survive
@pytest.mark.parametrize("level", ["repeatable read", "serializable"])
def test_stricter_isolation_is_e006(reconnect_with: Callable[..., None], level: str) -> None:
    reconnect_with(isolation_level=level)

    # The settings say it already; the server's own check adds nothing twice.
    assert check_database_server(None, databases=["default"]) == []
    messages = check_database(None)
    assert [message.id for message in messages] == ["quickworker.E006"]
    assert level.upper().replace(" ", "-") in messages[0].msg
    assert "read committed" in (messages[0].hint or "")


@pytest.mark.mysql
@pytest.mark.django_db(
    transaction=True
)  # it reconnects, which a test transaction would not survive
def test_an_init_command_that_changes_the_isolation_is_caught(
    reconnect_with: Callable[..., None],
) -> None:
    # The settings say nothing; only the server knows.
    reconnect_with(
        isolation_level=None, init_command="SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE"
    )

    assert check_database(None) == []
    assert [m.id for m in check_database_server(None, databases=["default"])] == [
        "quickworker.E006"
    ]


@pytest.mark.mysql
@pytest.mark.django_db
def test_the_claim_walks_the_claimable_index_in_claim_order() -> None:
    for index in range(20):
        submit_job(tag=f"t{index}", type="demo.add", priority=index % 3)
    claim = Claim("w", ["default", "other"], ["demo.add"], timedelta(seconds=60))
    sql, params = database("default").claimable(claim, "*")
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        names = [column[0] for column in cursor.description]
        (plan,) = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    assert plan["key"] == CLAIMABLE_INDEX
    assert "filesort" not in (plan["Extra"] or "")  # read in index order, not sorted


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
def test_a_lock_wait_timeout_is_retried_not_a_failed_job(caplog: pytest.LogCaptureFixture) -> None:
    submit_job(tag="held", type="demo.add")
    job = claim_next("w", None, timedelta(seconds=60))
    assert job is not None
    locked, release = threading.Event(), threading.Event()

    def hold_the_row() -> None:  # as an operator's admin action would, for 2.5 s
        try:
            with transaction.atomic():
                WorkerJob.objects.select_for_update().get(pk=job.pk)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    assert locked.wait(10)
    threading.Timer(2.5, release.set).start()
    with connection.cursor() as cursor:
        cursor.execute("SET SESSION innodb_lock_wait_timeout = 1")

    with caplog.at_level(logging.INFO, logger="django_quickworker.databases.base"):
        finish_and_claim_next(job, Outcome(True, {"sum": 3}), None, timedelta(seconds=60))
    holder.join(10)

    job.refresh_from_db()
    assert (job.status, job.result) == (Status.SUCCEEDED, {"sum": 3})
    assert "lock wait timeout, trying again" in caplog.text
    connection.close()  # the next test gets the default lock wait timeout


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_a_deadlock_on_postgresql_is_tried_again_not_a_lost_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # As between the parent's lease renewal and a worker's finish: one statement holds a
    # row the other wants, and wants one it holds. PostgreSQL rolls back the one whose
    # deadlock_timeout runs out first, here ours (the holder's is set far longer).
    first, second = (submit_job(tag=f"row{n}", type="demo.add") for n in (1, 2))
    holding, errors = threading.Event(), []
    table = connection.ops.quote_name(WorkerJob._meta.db_table)

    def hold_second_then_want_first() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL deadlock_timeout = '30s'")
                cursor.execute(f"SELECT id FROM {table} WHERE id = %s FOR UPDATE", [second.pk])
                holding.set()
                threading.Event().wait(0.5)  # ours takes the first row, then waits for this
                cursor.execute(f"SELECT id FROM {table} WHERE id = %s FOR UPDATE", [first.pk])
        except Exception as error:  # the test fails on it below
            errors.append(error)
            holding.set()
        finally:
            connection.close()

    holder = threading.Thread(target=hold_second_then_want_first)
    holder.start()
    assert holding.wait(10)
    attempts = []

    def both_rows_in_order() -> int:
        attempts.append(1)
        with transaction.atomic(), connection.cursor() as cursor:
            for job in (first, second):
                cursor.execute(f"UPDATE {table} SET priority = 1 WHERE id = %s", [job.pk])
        return len(attempts)

    with caplog.at_level(logging.INFO, logger="django_quickworker.databases.base"):
        tries = database(connection.alias).retrying(both_rows_in_order)
    holder.join(10)

    assert errors == []
    assert tries == 2
    assert "deadlock, trying again" in caplog.text
    assert set(WorkerJob.objects.values_list("priority", flat=True)) == {1}


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_the_queue_reuses_one_cursor_per_postgresql_connection() -> None:
    """Made once per connection (a new cursor would look up each parameter's dumper again);
    a new connection, or another thread's, has its own."""
    db = PostgreSQL(connection.alias)
    submit_job(tag="first", type="demo.add")
    cursor = db.server_cursor().cursor
    assert claim_next("w", None, timedelta(seconds=60)) is not None
    assert db.server_cursor().cursor is cursor
    in_thread: list[object] = []

    def another_thread() -> None:
        in_thread.append(db.server_cursor().cursor)
        connection.close()

    thread = threading.Thread(target=another_thread)
    thread.start()
    thread.join(10)
    assert in_thread and in_thread[0] is not cursor

    connection.close()
    submit_job(tag="second", type="demo.add")

    assert db.server_cursor().cursor is not cursor
    assert set(WorkerJob.objects.values_list("tag", flat=True)) == {"first", "second"}


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
def test_statements_run_together_on_mariadb_are_rolled_back_together() -> None:
    """In autocommit mode the procedure runs them in a transaction of its own: when one
    fails, the error is the statement's and what the others wrote is undone."""
    from django_quickworker.databases.mysql import MySQL  # needs mysqlclient

    db = database(connection.alias)
    assert isinstance(db, MySQL)
    lock = db.lock_tags_statement(["never-kept"])
    failing = ("INSERT INTO quickworker_no_such_table VALUES (%s)", [1])

    with pytest.raises(ProgrammingError, match="quickworker_no_such_table"):
        db.run_together([lock, failing])

    assert connection.get_autocommit()
    assert not WorkerTagLock.objects.exists()
    assert db.run_together([lock, ("SELECT %s + 1", [41])]) == [(42,)]
    assert WorkerTagLock.objects.count() == 1
