"""A real InnoDB deadlock in a worker's finish is tried again: never a failed job.

The finish of a cron job updates its row, then inserts the next occurrence. A second
connection, at REPEATABLE READ, holds the gap above the highest id (so the insert waits),
then asks for the job's row, which the finish holds: a deadlock, and InnoDB rolls back the
lighter transaction, the finish (the other has written many rows first).
"""

import logging
import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from django_quickworker import submit_job
from django_quickworker.claim import claim_next
from django_quickworker.finish import Outcome, finish_and_claim_next
from django_quickworker.models import Status, WorkerJob, WorkerTagLock


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
def test_a_deadlock_in_a_finish_is_tried_again_not_a_failed_job(
    caplog: pytest.LogCaptureFixture,
) -> None:
    submit_job(tag="nightly", type="demo.add", cron="0 0 * * *", due=timezone.now())
    job = claim_next("w", None, timedelta(seconds=60))
    assert job is not None
    gap_held, errors = threading.Event(), []
    table = connection.ops.quote_name(WorkerJob._meta.db_table)

    def deadlock_the_finish() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            with transaction.atomic():
                # Weight, so that InnoDB picks the finish as the deadlock's victim.
                WorkerTagLock.objects.bulk_create(WorkerTagLock(key=k) for k in range(1, 201))
                with connection.cursor() as cursor:
                    cursor.execute(f"SELECT id FROM {table} WHERE id > %s FOR UPDATE", [job.pk])
                    gap_held.set()
                    threading.Event().wait(1.0)  # the finish updates the row, then waits
                    cursor.execute(f"SELECT id FROM {table} WHERE id = %s FOR UPDATE", [job.pk])
                transaction.set_rollback(True)
        except Exception as error:  # the test fails on it below
            errors.append(error)
            gap_held.set()
        finally:
            connection.close()

    holder = threading.Thread(target=deadlock_the_finish)
    holder.start()
    assert gap_held.wait(10)
    with caplog.at_level(logging.INFO, logger="django_quickworker.databases.base"):
        finish_and_claim_next(job, Outcome(True, {"sum": 3}), None, timedelta(seconds=60))
    holder.join(10)

    assert errors == []
    assert "deadlock, trying again" in caplog.text
    job.refresh_from_db()
    assert (job.status, job.result) == (Status.SUCCEEDED, {"sum": 3})
    next_runs = WorkerJob.objects.filter(tag="nightly", status=Status.SCHEDULED)
    assert next_runs.count() == 1  # written once, by the finish tried again
