"""Claiming jobs: exactly one worker ever gets a job, and only while its lease holds.

How a claim is made differs by database (see ``django_quickworker.databases``): PostgreSQL
and MySQL/MariaDB pick the next row with ``FOR UPDATE SKIP LOCKED``, so concurrent claimers
never wait on each other; SQLite runs one writer at a time, so one ``UPDATE … RETURNING``
statement is atomic there.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import router

from django_quickworker.databases import database
from django_quickworker.databases.base import Claim
from django_quickworker.models import WorkerJob


def claim_next(
    worker: str,
    queues: Sequence[str] | None,
    lease: timedelta,
    types: Sequence[str] | None = None,
) -> WorkerJob | None:
    """Mark the next due job as started by ``worker`` and return it, or return None.

    Only jobs of ``queues`` and ``types`` are taken (None: any); a worker passes the types
    it has registered, so that a job no running worker knows waits for one that does.
    """
    return database(router.db_for_write(WorkerJob)).claim(Claim(worker, queues, types, lease))


def next_due(
    queues: Sequence[str] | None, types: Sequence[str] | None = None
) -> tuple[datetime, datetime] | None:
    """When the next scheduled job of ``queues`` and ``types`` falls due, and the database's
    time now, by which it falls due (None: there is no such job)."""
    return database(router.db_for_write(WorkerJob)).next_due(queues, types)
