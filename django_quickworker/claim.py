"""Claiming jobs: exactly one worker ever gets a job, and only while its lease holds.

PostgreSQL (and MySQL/MariaDB) pick the next row with ``FOR UPDATE SKIP LOCKED``, so
concurrent claimers never wait on each other; SQLite runs one writer at a time, so a single
``UPDATE … RETURNING`` statement is atomic there.
"""

import functools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, router
from django.db.models import Field
from django.utils import timezone

from django_quickworker.models import CLAIMABLE_INDEX, Status, WorkerJob


def claim_next(worker: str, queues: Sequence[str] | None, lease: timedelta) -> WorkerJob | None:
    """Mark the next due job as started by ``worker`` and return it, or return None."""
    alias = router.db_for_write(WorkerJob)
    sql, params = claim_statement(alias, worker, queues, lease)
    rows = fetch_rows(f"{sql} RETURNING *", params, alias)
    return row_to_job(rows[0], alias) if rows else None


def claim_statement(
    alias: str, worker: str, queues: Sequence[str] | None, lease: timedelta
) -> tuple[str, list[object]]:
    """The UPDATE that claims the next due job (without its RETURNING clause)."""
    connection = connections[alias]
    now = timezone.now()
    table = connection.ops.quote_name(WorkerJob._meta.db_table)
    queue_filter = f"AND queue IN ({', '.join(['%s'] * len(queues))})" if queues else ""
    lock = "FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    # SQLite, without statistics, would rather sort every scheduled row than walk the index
    # that is already in claim order; name it.
    hint = f"INDEXED BY {CLAIMABLE_INDEX}" if connection.vendor == "sqlite" else ""
    # The status is written into the SQL, not bound: SQLite uses a partial index (here the
    # claimable one) only when the query's WHERE visibly implies the index's condition.
    sql = (
        f"UPDATE {table} SET status = '{Status.RUNNING}', started = %s, worker = %s, "
        f"attempt = attempt + 1, lease_expires = %s, updated_at = %s "
        f"WHERE id = (SELECT id FROM {table} {hint} WHERE status = '{Status.SCHEDULED}' "
        f"AND due <= %s {queue_filter} ORDER BY priority DESC, due, id LIMIT 1 {lock})"
    )
    params = [
        db_time(now, alias),
        worker,
        db_time(now + lease, alias),
        db_time(now, alias),
        db_time(now, alias),
        *(queues or []),
    ]
    return sql, params


def next_due(queues: Sequence[str] | None) -> datetime | None:
    """When the next scheduled job of ``queues`` falls due (None: there is none)."""
    alias = router.db_for_write(WorkerJob)
    table = connections[alias].ops.quote_name(WorkerJob._meta.db_table)
    queue_filter = f"AND queue IN ({', '.join(['%s'] * len(queues))})" if queues else ""
    # Over the claimable index's rows: the status is written in, as for the claim.
    sql = f"SELECT MIN(due) AS due FROM {table} WHERE status = '{Status.SCHEDULED}' {queue_filter}"
    (row,) = fetch_rows(sql, queues or [], alias)
    due: datetime | None = _convert("due", row["due"], alias)
    return due


def fetch_rows(sql: str, params: Sequence[object], alias: str) -> list[dict[str, Any]]:
    """Run ``sql``; return its rows as {column: value}, values as the database gave them."""
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def row_to_job(row: dict[str, Any], alias: str) -> WorkerJob:
    """The WorkerJob of a ``RETURNING *`` row, its values converted as the ORM would."""
    names = [field.attname for field in WorkerJob._meta.concrete_fields]
    values = [_convert(name, row[name], alias) for name in names]
    return WorkerJob.from_db(alias, names, values)


def _convert(attname: str, value: Any, alias: str) -> Any:
    field, converters = _converters(alias)[attname]
    connection = connections[alias]
    for converter in converters:
        value = converter(value, field.cached_col, connection)
    return value


@functools.cache
def _converters(alias: str) -> "dict[str, tuple[Field[Any, Any], list[Any]]]":
    # Worked out once: the ORM would redo this for every claimed row, on the hot path.
    connection = connections[alias]
    return {
        field.attname: (
            field,
            connection.ops.get_db_converters(field.cached_col)
            + field.get_db_converters(connection),
        )
        for field in WorkerJob._meta.concrete_fields
    }


def db_time(moment: datetime | None, alias: str) -> object:
    """``moment`` in the form the database stores datetimes, for raw SQL parameters."""
    return connections[alias].ops.adapt_datetimefield_value(moment)
