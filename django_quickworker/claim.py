"""Claiming jobs: exactly one worker ever gets a job, and only while its lease holds.

PostgreSQL (and MySQL/MariaDB) pick the next row with ``FOR UPDATE SKIP LOCKED``, so
concurrent claimers never wait on each other; SQLite runs one writer at a time, so a single
``UPDATE … RETURNING`` statement is atomic there.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import connections, router
from django.utils import timezone

from django_quickworker.models import Status, WorkerJob


def claim_next(worker: str, queues: Sequence[str] | None, lease: timedelta) -> WorkerJob | None:
    """Mark the next due job as started by ``worker`` and return it, or return None."""
    alias = router.db_for_write(WorkerJob)
    sql, params = claim_statement(alias, worker, queues, lease)
    claimed = list(WorkerJob.objects.raw(f"{sql} RETURNING *", params).using(alias))
    return claimed[0] if claimed else None


def claim_statement(
    alias: str, worker: str, queues: Sequence[str] | None, lease: timedelta
) -> tuple[str, list[object]]:
    """The UPDATE that claims the next due job (without its RETURNING clause)."""
    connection = connections[alias]
    now = timezone.now()
    table = connection.ops.quote_name(WorkerJob._meta.db_table)
    queue_filter = f"AND queue IN ({', '.join(['%s'] * len(queues))})" if queues else ""
    lock = "FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    sql = (
        f"UPDATE {table} SET status = %s, started = %s, worker = %s, attempt = attempt + 1, "
        f"lease_expires = %s, updated_at = %s "
        f"WHERE id = (SELECT id FROM {table} WHERE status = %s AND due <= %s {queue_filter} "
        f"ORDER BY priority DESC, due, id LIMIT 1 {lock})"
    )
    params = [
        Status.RUNNING,
        db_time(now, alias),
        worker,
        db_time(now + lease, alias),
        db_time(now, alias),
        Status.SCHEDULED,
        db_time(now, alias),
        *(queues or []),
    ]
    return sql, params


def db_time(moment: datetime | None, alias: str) -> object:
    """``moment`` in the form the database stores datetimes, for raw SQL parameters."""
    return connections[alias].ops.adapt_datetimefield_value(moment)
