"""MySQL 8.4+ and MariaDB 10.11+: ``SELECT … FOR UPDATE SKIP LOCKED`` then an ``UPDATE`` by
id in one transaction (neither has an ``UPDATE … RETURNING`` for this), a lock table for tags,
and a poll of the highest job id for wake-ups (there is no LISTEN/NOTIFY).

Both run READ COMMITTED (Django's default for them; check quickworker.E006): under
REPEATABLE READ, gap locks would block producers, and a snapshot taken before a tag lock
was granted would hide the rows that the competing submission had just written.
"""

import asyncio
import contextlib
import json
import zlib
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar, cast

from django.conf import settings
from django.core.checks import CheckMessage, Error
from django.db import DatabaseError, OperationalError
from django.db.backends.mysql.base import DatabaseWrapper as MySQLWrapper
from django.db.models import QuerySet
from django.utils import timezone

from django_quickworker.databases.base import Claim, Database, InDb, Wake
from django_quickworker.models import CLAIMABLE_INDEX, WorkerJob, WorkerTagLock
from django_quickworker.states import Changes, apply, claimed

T = TypeVar("T")

# Errors after which InnoDB has rolled back (deadlock) or refused (lock wait timeout) a
# statement that succeeds when run again; never the job's fault.
RETRIED_ERRORS = {1213: "deadlock", 1205: "lock wait timeout"}
# The call of the procedure that runs several statements in one round trip.
RUN_TOGETHER = "CALL quickworker_run_together(%s, %s)"
# Seconds between the supervisor's looks at the highest job id: this while jobs arrive, and
# after each look that found none twice the one before, up to IDLE_WATCH_INTERVAL. A look is
# cheap, but an idle host should ask the server a few of them a second, not eight.
WATCH_INTERVAL = 0.12
IDLE_WATCH_INTERVAL = 0.48
STRICTER_THAN_READ_COMMITTED = {"REPEATABLE-READ", "SERIALIZABLE"}


class MySQL(Database):
    vendor = "mysql"
    finishes_and_claims_at_once = True
    # The claimable index there is the full one led by status (see PartialIndex); without
    # the hint the optimiser may sort the due rows instead of walking it, and then lock
    # every row it reads, leaving the other claimers nothing.
    claim_index_hint = f"FORCE INDEX ({CLAIMABLE_INDEX})"

    def now_sql(self) -> str:
        # Django stores naive UTC with USE_TZ, and wall times in TIME_ZONE without it,
        # whatever the session's time zone (which NOW() would follow; Django never sets it).
        # CONVERT_TZ would need the server's time zone tables, often not loaded: add
        # TIME_ZONE's offset as of now instead (a naive wall time is ambiguous at a DST
        # change anyway).
        if settings.USE_TZ:
            return "UTC_TIMESTAMP(6)"
        offset = datetime.now(timezone.get_default_timezone()).utcoffset()
        seconds = round(offset.total_seconds()) if offset is not None else 0
        return f"(UTC_TIMESTAMP(6) + INTERVAL {seconds} SECOND)"

    def later_sql(self, seconds: float) -> tuple[str, list[object]]:
        return f"{self.now_sql()} + INTERVAL %s MICROSECOND", [round(seconds * 1_000_000)]

    def claim(self, claim: Claim) -> WorkerJob | None:
        return self.retrying(lambda: self.in_transaction(lambda: self.claim_now(claim)))

    def finish_and_claim(
        self, job: WorkerJob, changes: Changes, claim: Claim
    ) -> tuple[int, WorkerJob | None]:
        def finish_then_claim() -> tuple[int, WorkerJob | None]:
            sql, params = self.fenced_finish(job, changes)
            with self.connection.cursor() as cursor:
                cursor.execute(sql, params)
                finished = cursor.rowcount  # rows matched: Django connects with FOUND_ROWS
            return finished, self.claim_now(claim)

        return self.retrying(lambda: self.in_transaction(finish_then_claim))

    def claim_now(self, claim: Claim) -> WorkerJob | None:
        """Lock the next claimable row, skipping locked ones, and mark it claimed; in the
        current transaction, which keeps the row locked until it commits."""
        # The lease's end is read with the row, so that the job returned carries the value
        # written (there is no RETURNING); the row is locked, so its attempt is known too.
        lease_sql, lease_params = self.later_sql(claim.lease.total_seconds())
        select, select_params = self.claimable(claim, f"{self.job_columns()}, {lease_sql}")
        row = self.fetch_one(select, [*lease_params, *select_params])
        if row is None:
            return None
        *values, lease_until = row
        lease_expires = self.convert("lease_expires", lease_until)
        job = self.row_to_job(values)
        changes = claimed(claim.worker, timezone.now(), job.attempt + 1, lease_expires)
        assignments, params = self.assignments(changes)
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {self.table} SET {assignments} WHERE id = %s", [*params, job.pk]
            )
        apply(job, changes)
        return job

    def in_transaction(self, statements: Callable[[], T]) -> T:
        if not self.connection.get_autocommit():  # in the caller's transaction
            return statements()
        with self.own_transaction():
            return statements()

    @contextlib.contextmanager
    def own_transaction(self) -> Iterator[None]:
        # START TRANSACTION on the autocommit connection, rather than Django's atomic():
        # that would spend two more round trips turning autocommit off and on again.
        with self.connection.cursor() as cursor:
            cursor.execute("START TRANSACTION")
            try:
                yield
            except BaseException:
                with contextlib.suppress(DatabaseError):  # a lost connection ends it anyway
                    cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")

    def retried_error(self, error: DatabaseError) -> str | None:
        code = error.args[0] if isinstance(error, OperationalError) and error.args else None
        return RETRIED_ERRORS.get(code) if isinstance(code, int) else None

    def insert_jobs(
        self, jobs: list[WorkerJob], replacing: Sequence[str] = (), reason: str = ""
    ) -> None:
        """With ``replacing`` on MariaDB: lock the tags, cancel their scheduled jobs and
        insert the jobs in one round trip (``run_together``), and in autocommit mode commit
        them in it too, where one statement after another took five. A bulk of more than one
        INSERT goes one statement after another (the procedure would read its large array
        once per statement), and so does MySQL, whose INSERT returns no ids."""
        if not replacing or not self.connection.features.can_return_rows_from_bulk_insert:
            super().insert_jobs(jobs, replacing, reason)
            return
        # The cancel first: the new rows' created_at must not precede the finished of the
        # jobs they replace (as replacement() reads them).
        cancel = self.cancel_statement(replacing, reason)
        inserts = self.insert_statements(jobs)
        statements = [self.lock_tags_statement(replacing), cancel, *inserts]
        run = self.run_together if len(inserts) == 1 else self.run_one_by_one
        self.saved(jobs, [pk for (pk,) in run(statements)])

    def run_together(self, statements: Sequence[tuple[str, Sequence[object]]]) -> list[Any]:
        """Run ``statements`` in one round trip and one transaction: the caller's, or in
        autocommit mode one begun and committed by the procedure that runs them
        (``quickworker_run_together``, of the initial migration); return their rows."""
        connection = self.connection
        with connection.cursor() as cursor, connection.wrap_database_errors:
            texts = [cursor.mogrify(sql, params) for sql, params in statements]
            cursor.execute(RUN_TOGETHER, [json.dumps(texts), connection.get_autocommit()])
            rows: list[Any] = []
            while True:  # a result for each statement that returns rows, then the call's own
                if cursor.description is not None:
                    rows += cursor.fetchall()
                if not cursor.nextset():
                    return rows

    def run_one_by_one(self, statements: Sequence[tuple[str, Sequence[object]]]) -> list[Any]:
        """``run_together`` at one round trip a statement; return their rows."""

        def each() -> list[Any]:
            rows: list[Any] = []
            with self.connection.cursor() as cursor:
                for sql, params in statements:
                    cursor.execute(sql, params)
                    if cursor.description is not None:
                        rows += cursor.fetchall()
            return rows

        return self.in_transaction(each)

    def lock_tags(self, tags: list[str]) -> None:
        """Lock one row per tag (hashed) of the lock table until the transaction ends.

        One upsert: it writes the row of a tag seen for the first time, and on a duplicate
        key (the row exists, or a concurrent first submission is writing it) locks that row
        exclusively, as ``FOR UPDATE`` would, changing nothing. Sorted, so that two
        submissions of overlapping tags take their locks in the same order.
        """
        if tags:
            with self.connection.cursor() as cursor:
                cursor.execute(*self.lock_tags_statement(tags))

    def lock_tags_statement(self, tags: Sequence[str]) -> tuple[str, list[object]]:
        keys = sorted({zlib.crc32(tag.encode()) for tag in tags})
        table = self.connection.ops.quote_name(WorkerTagLock._meta.db_table)
        values = ", ".join(["(%s)"] * len(keys))
        sql = f"INSERT INTO {table} (`key`) VALUES {values} ON DUPLICATE KEY UPDATE `key` = `key`"
        return sql, list(keys)

    async def watch_for_jobs(self, wake: Wake, in_db: InDb) -> None:
        """Wake the workers when the highest job id grows: one index lookup per interval,
        for the whole host. Jobs that fall due later are the parent's look-ahead's."""
        highest = await in_db(self.highest_job_id)
        interval = WATCH_INTERVAL
        while True:
            await asyncio.sleep(interval)
            latest = self.wake_if_higher(wake, highest, await in_db(self.highest_job_id))
            grew = latest != highest
            interval = WATCH_INTERVAL if grew else min(interval * 2, IDLE_WATCH_INTERVAL)
            highest = latest

    def estimate_rows(self, queryset: QuerySet[Any]) -> int | None:
        """The optimiser's estimate of the rows it reads (EXPLAIN's ``rows``)."""
        sql, params = queryset.order_by().query.sql_with_params()
        rows = self.fetch_rows(f"EXPLAIN {sql}", params)
        return int(rows[0]["rows"]) if rows and rows[0].get("rows") is not None else None

    def check(self, databases: Sequence[str] | None) -> list[CheckMessage]:
        """Error when transactions run stricter than READ COMMITTED: read from the server
        when the checks may query this database, from the settings otherwise."""
        if databases is not None and self.alias in databases:
            level = self.isolation_level()
        else:
            options = self.connection.settings_dict.get("OPTIONS", {})
            level = str(options.get("isolation_level", "read committed"))
        level = level.upper().replace(" ", "-")
        if level not in STRICTER_THAN_READ_COMMITTED:
            return []
        return [
            Error(
                f"The database {self.alias!r} runs transactions at {level}: gap locks would "
                "block submissions while workers claim, and a snapshot older than a tag lock "
                "would hide the job a concurrent submission just wrote.",
                hint=(
                    f"Set DATABASES[{self.alias!r}]['OPTIONS']['isolation_level'] = "
                    "'read committed' (Django's default), and no init_command that changes it."
                ),
                id="quickworker.E006",
            )
        ]

    def isolation_level(self) -> str:
        """The connection's isolation level, e.g. ``READ-COMMITTED``."""
        # MariaDB 10.11 names the variable tx_isolation; MySQL 8 transaction_isolation.
        connection = cast(MySQLWrapper, self.connection)
        name = "tx_isolation" if connection.mysql_is_mariadb else "transaction_isolation"
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT @@SESSION.{name}")
            (level,) = cursor.fetchone()
        return str(level)
