"""The base class of the database seam: what every database does alike, and the hooks where
they differ. (The raw SQL of a job's row is in rows.py.)"""

import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any, ClassVar, TypeVar, cast

from django.conf import settings
from django.core.checks import CheckMessage
from django.db import DatabaseError, transaction
from django.db.models import DateTimeField, IntegerField, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from django_quickworker.databases.rows import JobRows
from django_quickworker.models import Status, WorkerJob
from django_quickworker.states import Changes, claimed, fence, retention

logger = logging.getLogger(__name__)

T = TypeVar("T")
# Made once: a field or expression costs a Django Field's construction, on the claim's path.
DATETIME = DateTimeField()
ONE_MORE_ATTEMPT = RawSQL("attempt + 1", [], output_field=IntegerField())
Wake = Callable[[str | None], None]  # wakes idle workers (of a queue, or of all: None)
InDb = Callable[..., Awaitable[Any]]  # runs a function on the supervisor's database thread


@dataclass(frozen=True)
class Claim:
    """What a worker asks for: its next due job among ``queues`` and ``types``."""

    worker: str
    queues: Sequence[str] | None  # None: every queue
    types: Sequence[str] | None  # None: every type; a worker passes the types it registered
    lease: timedelta


class Database(JobRows):
    """One database's way of doing what differs between databases, for one connection."""

    vendor: ClassVar[str]
    # Whether finish_and_claim() does better than a finish followed by a claim.
    finishes_and_claims_at_once: ClassVar[bool] = False

    # Claiming and finishing

    def claim(self, claim: Claim) -> WorkerJob | None:
        """Mark the next due job as started by ``claim.worker`` and return it, or None."""
        raise NotImplementedError

    def finish_and_claim(
        self, job: WorkerJob, changes: Changes, claim: Claim
    ) -> tuple[int, WorkerJob | None]:
        """Write ``changes`` onto ``job``'s row if still leased to it, then claim the next
        job; return how many rows the finish changed (0 or 1) and the claimed job."""
        raise NotImplementedError

    def retrying(self, operation: Callable[[], T]) -> T:
        """Run ``operation`` (its own transaction), again after an error that is no fault of
        it (``retried_error``: a deadlock, say), as often as needed. Inside the caller's
        transaction, which the database may have rolled back, it is not ours to replay, so
        the error goes up."""
        if self.connection.in_atomic_block:
            return operation()
        attempt = 0
        while True:
            try:
                return operation()
            except DatabaseError as error:
                reason = self.retried_error(error)
                if reason is None:
                    raise
                attempt += 1
                logger.info("%s, trying again: %s", reason, error)
                time.sleep(random.uniform(0, min(0.001 * 2**attempt, 0.1)))

    def retried_error(self, error: DatabaseError) -> str | None:
        """What makes ``error`` worth running the statements again (None: nothing does)."""
        return None

    def next_due(
        self, queues: Sequence[str] | None, types: Sequence[str] | None
    ) -> tuple[datetime, datetime] | None:
        """When the next scheduled job of ``queues`` and ``types`` falls due, and the
        database's time now (None: there is no such job)."""
        filters, params = self.claim_filters(queues, types)
        # Over the claimable index's rows: the status is written in, as for the claim.
        scheduled = f"status = '{Status.SCHEDULED}'"
        sql = (
            f"SELECT MIN(due) AS due, {self.now_sql()} AS now FROM {self.table} "
            f"WHERE {scheduled} {filters}"
        )
        (row,) = self.fetch_rows(sql, params)
        if row["due"] is None:
            return None
        return self.convert("due", row["due"]), self.convert("due", row["now"])

    # The database's clock: the one clock that every host shares. Leases, due times and
    # heartbeats are compared with it, never with a host's own (see docs/many-hosts.rst).
    # Its SQL is written for statements run with parameters, a literal % doubled.

    def now_sql(self) -> str:
        """SQL for the database's time now, in the form its datetime columns store."""
        raise NotImplementedError

    def later_sql(self, seconds: float) -> tuple[str, list[object]]:
        """SQL (and parameters) for the database's time ``seconds`` from now."""
        raise NotImplementedError

    def now(self) -> RawSQL:
        """The database's time now, for the ORM."""
        return RawSQL(self.now_sql(), [], output_field=DATETIME)

    def later(self, duration: timedelta) -> RawSQL:
        """The database's time ``duration`` from now, for the ORM and raw statements."""
        sql, params = self.later_sql(duration.total_seconds())
        return RawSQL(sql, params, output_field=DATETIME)

    def current_time(self) -> datetime:
        """The database's time now, read from it (one round trip)."""
        (row,) = self.fetch_rows(f"SELECT {self.now_sql()} AS now", [])
        now: datetime = self.convert("due", row["now"])
        return now

    def claimable(self, claim: Claim, columns: str) -> tuple[str, list[object]]:
        """The SELECT of ``columns`` of the next job ``claim`` may take, locked if need be."""
        filters, params = self.claim_filters(claim.queues, claim.types)
        # The status is written into the SQL, not bound: SQLite uses a partial index (here
        # the claimable one) only when the query's WHERE visibly implies the index's condition.
        sql = (
            f"SELECT {columns} FROM {self.table} {self.claim_index_hint} "
            f"WHERE status = '{Status.SCHEDULED}' AND due <= {self.now_sql()} {filters} "
            f"ORDER BY priority DESC, due, id LIMIT 1 {self.claim_lock}"
        )
        return sql, params

    claim_index_hint: ClassVar[str] = ""  # how the claim names the claimable index, if it must
    claim_lock: ClassVar[str] = "FOR UPDATE SKIP LOCKED"  # how it locks the row it picks

    def claim_filters(
        self, queues: Sequence[str] | None, types: Sequence[str] | None
    ) -> tuple[str, list[object]]:
        """The ``AND …`` conditions (and parameters) of the claim's queues and types."""
        sql, params = "", []
        for column, values in (("queue", queues), ("type", types)):
            if values is not None:
                condition, value_params = self.one_of(column, values)
                sql += f" AND {condition}"
                params += value_params
        return sql, params

    def one_of(self, column: str, values: Sequence[str]) -> tuple[str, list[object]]:
        """SQL saying that ``column`` is one of ``values`` (none: nothing matches)."""
        if not values:
            return "1 = 0", []
        return f"{column} IN ({', '.join(['%s'] * len(values))})", list(values)

    def fenced_finish(self, job: WorkerJob, changes: Changes) -> tuple[str, list[object]]:
        """The UPDATE writing ``changes`` onto ``job``'s row only while it is leased to it
        (the conditions of ``WorkerJob.objects.fenced``)."""
        assignments, params = self.assignments(changes)
        conditions, condition_params = self.equal_to(fence(job))
        sql = f"UPDATE {self.table} SET {assignments} WHERE {conditions}"
        return sql, [*params, *condition_params]

    # Submitting and waking

    def insert_jobs(
        self, jobs: list[WorkerJob], replacing: Sequence[str] = (), reason: str = ""
    ) -> None:
        """Write ``jobs`` (unsaved) and wake the workers of their queues on commit; first,
        under the locks of the tags ``replacing``, cancel their scheduled jobs with ``reason``.

        This default does it one statement after another.
        """
        queues = {job.queue for job in jobs}
        if not replacing:
            self.insert_rows(jobs)
            self.wake_workers(queues)
            return

        def replace() -> None:
            self.lock_tags(list(replacing))
            if self.fetch_rows(*self.scheduled_with_tags(replacing)):
                # Usually not: a cheap look spares running the UPDATE.
                with self.connection.cursor() as cursor:
                    cursor.execute(*self.cancel_statement(replacing, reason))
            self.insert_rows(jobs)
            self.wake_workers(queues)

        self.in_transaction(replace)

    def in_transaction(self, statements: Callable[[], T]) -> T:
        """Run ``statements`` in one transaction: the caller's if it has one, else our own."""
        with transaction.atomic(using=self.alias, savepoint=False):
            return statements()

    def cancel_statement(self, tags: Sequence[str], reason: str) -> tuple[str, list[object]]:
        """``WorkerJobQuerySet.cancel_statement`` for the scheduled jobs with ``tags``, now.

        Compiled by the ORM once for each number of tags (and reason and settings it
        reads), then filled in: compiling it costs more than the submission's round trip.
        """
        now = timezone.now()
        key = (self.alias, len(tags), reason, retention(Status.CANCELLED), settings.USE_TZ)
        template = _cancel_template(*key) if len(tags) <= TEMPLATED_TAGS else None
        if template is None:
            scheduled = WorkerJob.objects.using(self.alias).filter(tag__in=tags)
            sql, params = scheduled.cancel_statement(reason, now)
            return self.pending_tags_hinted(sql), list(params)
        sql, slots = template
        prepared_now = self.parameter("finished", now)
        return self.pending_tags_hinted(sql), [_filled(slot, prepared_now, tags) for slot in slots]

    # How a statement names the index of scheduled jobs' tags, if it must.
    pending_tag_index_hint: ClassVar[str] = ""

    def pending_tags_hinted(self, update: str) -> str:
        """``update`` (the ORM's ``UPDATE <table> SET …`` of scheduled jobs by tag) naming
        the index of their tags, where the database must be told."""
        head = f"UPDATE {self.table} SET "
        if not self.pending_tag_index_hint or not update.startswith(head):
            return update
        return f"UPDATE {self.table} {self.pending_tag_index_hint} SET {update[len(head) :]}"

    def scheduled_with_tags(self, tags: Sequence[str]) -> tuple[str, list[object]]:
        """A SELECT of one row if a scheduled job has one of ``tags``, else of none."""
        condition, params = self.one_of("tag", tags)
        # The status is written in, so that SQLite uses the partial index of pending tags.
        sql = (
            f"SELECT 1 AS scheduled FROM {self.table} {self.pending_tag_index_hint} "
            f"WHERE status = '{Status.SCHEDULED}' AND {condition} LIMIT 1"
        )
        return sql, params

    def lock_tags(self, tags: list[str]) -> None:
        """Serialize submissions of the same tags until the current transaction ends."""
        raise NotImplementedError

    def wake_workers(self, queues: set[str]) -> None:
        """Tell waiting workers, once the current transaction commits, which queues got jobs."""

    async def watch_for_jobs(self, wake: Wake, in_db: InDb) -> None:
        """Call ``wake`` whenever new jobs are committed, until cancelled; in the supervisor.

        The default watches nothing: the parent's look for due jobs, every POLL_INTERVAL,
        finds them.
        """

    def highest_job_id(self) -> int | None:
        """The id of the newest job: it grows with every job committed (one index lookup)."""
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT MAX(id) FROM {self.table}")
            (highest,) = cursor.fetchone()
        return cast(int | None, highest)

    @staticmethod
    def wake_if_higher(wake: Wake, highest: int | None, latest: int | None) -> int | None:
        """Wake the workers if ``latest`` (the highest job id now) passed ``highest``; return
        the new highest."""
        if latest is not None and (highest is None or latest > highest):
            wake(None)
        return latest

    # Reading

    def estimate_rows(self, queryset: QuerySet[Any]) -> int | None:
        """A cheap estimate of how many rows ``queryset`` has, or None if there is none."""
        return None

    def check(self, databases: Sequence[str] | None) -> list[CheckMessage]:
        """This database's own system checks (``databases``: those checks may query)."""
        return []


class ReturningClaim(Database):
    """Databases whose ``UPDATE … RETURNING`` claims a row in one statement."""

    def claim(self, claim: Claim) -> WorkerJob | None:
        sql, params = self.claim_statement(claim, timezone.now())
        row = self.fetch_one(f"{sql} RETURNING {self.job_columns()}", params)
        return self.row_to_job(row) if row is not None else None

    def claim_statement(self, claim: Claim, now: datetime) -> tuple[str, list[object]]:
        """The UPDATE that claims the next due job (without its RETURNING clause)."""
        # The lease's end is on the database's clock, which the rescues of other hosts read;
        # ``started`` (the fence, and for display) is the host's ``now``.
        lease_expires = self.later(claim.lease)
        changes = claimed(claim.worker, now, ONE_MORE_ATTEMPT, lease_expires)
        assignments, assignment_params = self.assignments(changes)
        select, select_params = self.claimable(claim, "id")
        sql = f"UPDATE {self.table} SET {assignments} WHERE id = ({select})"
        return sql, [*assignment_params, *select_params]


NOW = object()  # in a cancel template's slots: where the time of cancelling goes
# Up to this many tags a replace fills a template; a bulk replace compiles its own, once.
TEMPLATED_TAGS = 32


@dataclass(frozen=True)
class Constant:
    value: object  # a parameter of a cancel template that is the same every time


@functools.lru_cache(maxsize=64)
def _cancel_template(
    alias: str, count: int, reason: str, retention: timedelta, use_tz: bool
) -> tuple[str, list[object]] | None:
    """The cancel statement of ``count`` tags, compiled with stand-ins for the time and the
    tags, and its parameters as slots: NOW, a tag's position, or a Constant. None if a
    stand-in does not come back as itself (the ORM converted it), to compile every time.

    The time comes back as the ORM sends a datetime to the database (the same object on
    PostgreSQL, text on MySQL), and is filled in that way."""
    now = datetime.now(dt_timezone.utc) if use_tz else datetime.now()
    prepared_now = JobRows(alias).parameter("finished", now)
    tags = [f"stand-in {position}" for position in range(count)]  # told apart by identity
    scheduled = WorkerJob.objects.using(alias).filter(tag__in=tags)
    sql, params = scheduled.cancel_statement(reason, now)
    positions = {id(tag): position for position, tag in enumerate(tags)}
    slots: list[object] = [
        NOW
        if param is prepared_now or param == prepared_now
        else positions.get(id(param), Constant(param))
        for param in params
    ]
    if NOW not in slots or sorted(s for s in slots if type(s) is int) != list(range(count)):
        return None
    return sql, slots


def _filled(slot: object, now: object, tags: Sequence[str]) -> object:
    if slot is NOW:
        return now
    if isinstance(slot, Constant):
        return slot.value
    return tags[cast(int, slot)]
