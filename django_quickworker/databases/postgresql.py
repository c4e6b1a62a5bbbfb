"""PostgreSQL: ``FOR UPDATE SKIP LOCKED`` claims, advisory tag locks, LISTEN/NOTIFY wake-ups."""

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Iterator, Sequence
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

import psycopg
from django.db import DatabaseError, connections
from django.db.backends.postgresql.psycopg_any import register_tzloader
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models import QuerySet
from django.utils import timezone
from psycopg import Pipeline
from psycopg.pq import Format
from psycopg.types.datetime import TimestamptzLoader

from django_quickworker.conf import conf
from django_quickworker.databases.base import Claim, InDb, ReturningClaim, Wake
from django_quickworker.databases.rows import inserted_columns, inserted_fields, is_null
from django_quickworker.models import WorkerJob
from django_quickworker.states import Changes

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "quickworker"
DEADLOCK = "40P01"  # the SQLSTATE of "deadlock detected"
# First key of PostgreSQL's two-key advisory locks, so ours never collide with the project's.
TAG_LOCK_NAMESPACE = 0x5157
# Django's connection parameters that are for its own cursor setup, not for libpq.
NON_LIBPQ_PARAMS = {"cursor_factory", "context", "prepare_threshold", "server_side_binding"}


TIMESTAMPTZ_OID = psycopg.adapters.types["timestamptz"].oid
# The prepare_threshold that prepares only the statements executed with prepare=True.
ONLY_WHEN_ASKED = 2**31 - 1
# Where a Django connection keeps server_cursor's cursor, with what it was made for.
REUSED_CURSOR = "quickworker_cursor"


class PreparedCursor(psycopg.Cursor[Any]):
    """A cursor binding on the server whose statements are prepared: the queue's own, each
    run over and over with other values."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> "PreparedCursor":
        return super().execute(query, params, prepare=True, **kwargs)


class StatementLogging(CursorDebugWrapper):
    """Django's wrapper for logged queries (DEBUG, or captured in a test), logging each
    statement with its values in: a prepared statement leaves psycopg no text of its own,
    where Django would look for it."""

    def execute(self, sql: Any, params: Any = None) -> Any:
        with self.debug_sql(self.db.ops.compose_sql(sql, params)):
            return CursorWrapper.execute(self, sql, params)


class PostgreSQL(ReturningClaim):
    vendor = "postgresql"
    finishes_and_claims_at_once = True

    def now_sql(self) -> str:
        return "statement_timestamp()"  # CURRENT_TIMESTAMP stands still in a transaction

    def later_sql(self, seconds: float) -> tuple[str, list[object]]:
        return "statement_timestamp() + %s * interval '1 second'", [seconds]

    def one_of(self, column: str, values: Sequence[str]) -> tuple[str, list[object]]:
        # One array parameter: the statement's text stays the same for any number of values.
        # Sent as its text, made once (array_literal, as the claim sends them): the parent's
        # look for the next due job names the same queues and types each time.
        return f"{column} = ANY(%s::text[])", [array_literal(tuple(values))]

    def claim(self, claim: Claim) -> WorkerJob | None:
        return self.retrying(lambda: self.claim_now(claim))

    def claim_now(self, claim: Claim) -> WorkerJob | None:
        call, params = self.claim_call(claim, timezone.now())
        rows = self.run_together([(f"SELECT {self.job_columns('claimed')} FROM {call}", params)])
        return self.row_to_job(rows[0]) if rows else None

    def claim_call(self, claim: Claim, now: datetime) -> tuple[str, list[object]]:
        """The call of ``quickworker_claim`` (a function of the initial migration), which
        claims the next due job in one statement, planned to walk the claimable index
        whatever the statistics say; its row is named ``claimed``."""
        queues, types = (
            None if values is None else array_literal(tuple(values))
            for values in (claim.queues, claim.types)
        )
        # The claim's start is the host's clock (the fence, and for display); the lease's
        # end is the database's, which the rescues of other hosts read.
        started = self.parameter("started", now)
        sql = "quickworker_claim(%s, %s, %s, %s::text[], %s::text[]) AS claimed"
        return sql, [claim.worker, started, claim.lease.total_seconds(), queues, types]

    def retried_error(self, error: DatabaseError) -> str | None:
        # A deadlock with the parent's lease renewal, which updates its workers' running rows
        # while one of them finishes its row and claims the next: PostgreSQL rolls one back.
        return "deadlock" if getattr(error.__cause__, "sqlstate", None) == DEADLOCK else None

    def finish_and_claim(
        self, job: WorkerJob, changes: Changes, claim: Claim
    ) -> tuple[int, WorkerJob | None]:
        return self.retrying(lambda: self.finish_and_claim_now(job, changes, claim))

    def finish_and_claim_now(
        self, job: WorkerJob, changes: Changes, claim: Claim
    ) -> tuple[int, WorkerJob | None]:
        # One statement: one round trip and one commit per job instead of two, which is
        # most of what a job costs the queue.
        finish_sql, finish_params = self.fenced_finish(job, changes)
        claim_sql, claim_params = self.claim_call(claim, timezone.now())
        sql = (
            f"WITH finished AS ({finish_sql} RETURNING id) "
            f"SELECT (SELECT count(*) FROM finished), {self.job_columns('claimed')} "
            f"FROM (SELECT 1) AS one LEFT JOIN {claim_sql} ON true"
        )
        (row,) = self.run_together([(sql, [*finish_params, *claim_params])])  # the join's one
        finished, *claimed = row
        return finished, self.row_to_job(claimed) if claimed[0] is not None else None

    def insert_jobs(
        self, jobs: list[WorkerJob], replacing: Sequence[str] = (), reason: str = ""
    ) -> None:
        """Insert the jobs and notify the workers in one statement; with ``replacing``,
        lock the tags first and cancel their scheduled jobs in that statement, all in one
        round trip and one transaction (the caller's, or theirs).

        The statement takes its snapshot after the lock: the cancel sees every job that a
        competing submission committed before it released the tag lock we now hold.
        """
        if not jobs:
            return
        lock = [self.lock_tags_statement(replacing)] if replacing else []
        cancel = [self.cancel_statement(replacing, reason)] if replacing else []
        rows = self.run_together([*lock, self.submission_statement(cancel, jobs)])
        self.saved(jobs, [pk for (pk,) in rows])

    def submission_statement(
        self, cancel: Sequence[tuple[str, Sequence[object]]], jobs: list[WorkerJob]
    ) -> tuple[str, list[object]]:
        """One statement that runs ``cancel`` (none or one), inserts ``jobs`` and notifies
        their queues; its rows are the new ids, in the order of ``jobs``.

        The INSERT is built after the cancel, so that the new rows' created_at is never
        before the finished of the jobs they replace (as replacement() reads them).
        """
        parts = [("cancelled", statement) for statement in cancel]
        (insert,) = self.insert_statements(jobs)
        parts += [("new", insert), ("woken", self.wake_statement({job.queue for job in jobs}))]
        ctes = ", ".join(f"{name} AS ({sql})" for name, (sql, _) in parts)
        # woken is one row, and a query that has no join condition keeps new's order.
        sql = f"WITH {ctes} SELECT new.id FROM new, woken"
        return sql, [param for _, (_, params) in parts for param in params]

    def insert_statements(self, jobs: list[WorkerJob]) -> list[tuple[str, list[object]]]:
        """One INSERT of any number of rows: one array parameter for each column whose value
        differs between rows, and the others' value once. A statement that the server parses
        quickly, with as many parameters for 20,000 rows as for two."""
        columns = self.prepared_columns(jobs)
        if len(jobs) == 1:  # VALUES, which the server runs quicker
            return self.values_statements(columns)
        # A value prepared once is the same object in every row that holds it.
        varying = [
            position
            for position, values in enumerate(columns)
            if any(value is not values[0] for value in values)
        ]
        names, types = _insert_columns(self.alias)
        # NULL written into the SQL: half the columns of a typical job, parameters not sent.
        null = {n for n, values in enumerate(columns) if n not in varying and is_null(values)}
        selected = [
            f"c{n}" if n in varying else f"NULL::{types[n]}" if n in null else f"%s::{types[n]}"
            for n in range(len(types))
        ]
        constants = [v[0] for n, v in enumerate(columns) if n not in varying and n not in null]
        if varying:
            arrays = ", ".join(f"%s::{types[n]}[]" for n in varying)
            aliases = ", ".join(f"c{n}" for n in varying)
            rows = f"unnest({arrays}) WITH ORDINALITY AS rows ({aliases}, position)"
            row_params: list[object] = [columns[n] for n in varying]
        else:  # rows alike
            rows, row_params = "generate_series(1, %s) AS rows (position)", [len(jobs)]
        # Ordered, so that the ids (and RETURNING) follow the order of the jobs.
        sql = (
            f"INSERT INTO {self.table} ({names}) SELECT {', '.join(selected)} "
            f"FROM {rows} ORDER BY position RETURNING id"
        )
        return [(sql, [*constants, *row_params])]

    def run_together(
        self, statements: Sequence[tuple[str, Sequence[object]]]
    ) -> list[tuple[Any, ...]]:
        """Run ``statements`` in one round trip and one transaction: the caller's, or in
        autocommit mode an implicit one; return the last one's rows.

        Prepared (PREPARED_STATEMENTS), so that the server neither parses nor plans them
        again, about a third of what it spends on a submission or a claim: several are
        pipelined then, where libpq can (14 and later). Unprepared, they are sent as one
        query string, or, bound on the server (one statement a call), as a pipeline too.
        """
        if not (conf.prepared_statements or self.binds_on_server()):
            with self.connection.cursor() as cursor:
                cursor.execute(
                    "; ".join(sql for sql, _ in statements),
                    [param for _, params in statements for param in params],
                )
                for _ in statements[1:]:
                    cursor.nextset()
                return cursor.fetchall()
        if len(statements) == 1:
            cursor = self.server_cursor()
            cursor.execute(*statements[0])
            return cursor.fetchall()
        if not Pipeline.is_supported():
            return self.one_call_each(statements)
        return self.pipelined(statements)

    def pipelined(
        self, statements: Sequence[tuple[str, Sequence[object]]]
    ) -> list[tuple[Any, ...]]:
        """``run_together`` in libpq's pipeline mode: the statements before its sync run in
        one implicit transaction, which an error in any of them rolls back."""
        connection = self.connection
        cursor = self.server_cursor()
        with connection.wrap_database_errors:
            with connection.connection.pipeline():
                for sql, params in statements:
                    cursor.execute(sql, params)
            return cursor.fetchall()  # in a pipeline, a cursor holds its last result

    def one_call_each(self, statements: Sequence[tuple[str, Sequence[object]]]) -> list[Any]:
        """``run_together`` with libpq older than 14: one round trip per statement, in a
        transaction of their own in autocommit mode."""
        cursor = self.server_cursor()
        with self.own_transaction():
            for sql, params in statements:
                cursor.execute(sql, params)
            return cursor.fetchall()

    def server_cursor(self) -> Any:  # a CursorWrapper, whose stubs refuse our parameters
        """The connection's cursor for the queue's statements, in the wrapper Django gives its
        own cursors (so that query logging, ``execute_wrapper`` and the SDKs that instrument
        Django see it). It binds parameters on the server, and prepares the statements
        (PREPARED_STATEMENTS) or leaves that to the connection.

        One cursor per connection, reused: a new one would look up the dumper of each
        parameter's type again, a sixth of what a submission costs this process."""
        connection = self.connection
        connection.ensure_connection()
        raw = connection.connection
        # The session's time zone as the server reported it: reading it as a tzinfo costs more.
        session_zone = raw.pgconn.parameter_status(b"TimeZone")
        key = (raw, conf.prepared_statements, connection.timezone, session_zone)
        reused = getattr(connection, REUSED_CURSOR, None)
        if reused is None or reused[0] != key or reused[1].closed:
            reused = (key, self.new_server_cursor())
            setattr(connection, REUSED_CURSOR, reused)
        return self.wrapped(reused[1])

    def new_server_cursor(self) -> "psycopg.Cursor[Any]":
        """A cursor of ``server_cursor``'s kind, reading datetimes as Django's cursors do."""
        connection = self.connection
        raw = connection.connection
        if not conf.prepared_statements:
            cursor = psycopg.Cursor(raw)
        else:
            cursor = PreparedCursor(raw)
            if raw.prepare_threshold is None:  # Django's default, which refuses prepare=True
                raw.prepare_threshold = ONLY_WHEN_ASKED
        if connection.timezone is dt_timezone.utc and raw.info.timezone is dt_timezone.utc:
            # Django's loader (in Python) would read what psycopg's own (in C, with psycopg's
            # binary package, which registering it picks) reads in a UTC session: the same
            # aware datetimes, in UTC.
            cursor.adapters.register_loader(TIMESTAMPTZ_OID, TimestamptzLoader)
        elif connection.timezone != raw.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT).timezone:
            # As Django sets up its own cursors: datetimes read in its time zone (naive if
            # USE_TZ is off).
            register_tzloader(connection.timezone, cursor)
        return cursor

    def wrapped(self, cursor: "psycopg.Cursor[Any]") -> CursorWrapper:
        """``cursor`` in the wrapper Django gives its own cursors."""
        connection = self.connection
        if connection.queries_logged:
            return StatementLogging(cursor, connection)
        return CursorWrapper(cursor, connection)

    @contextlib.contextmanager
    def own_transaction(self) -> Iterator[None]:
        """In autocommit mode, run the block in a transaction begun here: committed at its
        end, rolled back if it fails. For statements sent one call each."""
        if not self.connection.get_autocommit():
            yield
            return
        raw = self.connection.connection
        raw.execute("BEGIN")
        try:
            yield
        except BaseException:
            with contextlib.suppress(psycopg.Error):  # a lost connection ends it anyway
                raw.execute("ROLLBACK")
            raise
        raw.execute("COMMIT")

    def binds_on_server(self) -> bool:
        """Whether the connection binds parameters on the server (``server_side_binding``)."""
        return self.connection.settings_dict["OPTIONS"].get("server_side_binding") is True

    def lock_tags(self, tags: list[str]) -> None:
        """Advisory transaction locks, one per tag (hashed), released when it ends."""
        with self.connection.cursor() as cursor:
            cursor.execute(*self.lock_tags_statement(tags))

    def lock_tags_statement(self, tags: Sequence[str]) -> tuple[str, list[object]]:
        # Sorted, so that two submissions of overlapping tags cannot deadlock.
        sql = (
            "SELECT pg_advisory_xact_lock(%s, key) FROM (SELECT DISTINCT hashtext(tag) AS key"
            " FROM unnest(%s::text[]) AS tag ORDER BY key) AS keys"
        )
        return sql, [TAG_LOCK_NAMESPACE, list(tags)]

    def wake_workers(self, queues: set[str]) -> None:
        if not queues:
            return
        with self.connection.cursor() as cursor:
            cursor.execute(*self.wake_statement(queues))

    def wake_statement(self, queues: set[str]) -> tuple[str, list[object]]:
        """The NOTIFY of each of ``queues``, delivered when the transaction commits: a
        SELECT of one row."""
        if len(queues) == 1:  # the usual case, which the server runs quicker without unnest
            return "SELECT pg_notify(%s, %s)", [NOTIFY_CHANNEL, *queues]
        return (
            "SELECT count(pg_notify(%s, queue)) FROM unnest(%s::text[]) AS queue",
            [NOTIFY_CHANNEL, sorted(queues)],
        )

    async def watch_for_jobs(self, wake: Wake, in_db: InDb) -> None:
        """LISTEN on a connection of its own; reconnect on failure."""
        import psycopg

        params = self.connection.get_connection_params()
        params = {k: v for k, v in params.items() if k not in NON_LIBPQ_PARAMS}
        delay = 0.5
        while True:
            try:
                connection = await psycopg.AsyncConnection.connect(**params, autocommit=True)
                async with connection:
                    await connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    delay = 0.5
                    wake(None)  # jobs may have arrived while we were not listening
                    async for notify in connection.notifies():
                        wake(notify.payload)
            except psycopg.Error as error:
                logger.warning("LISTEN connection lost, reconnecting in %.1fs: %s", delay, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def estimate_rows(self, queryset: QuerySet[Any]) -> int | None:
        """The planner's row estimate."""
        plan = json.loads(queryset.order_by().explain(format="json"))
        return int(plan[0]["Plan"]["Plan Rows"])


@functools.lru_cache(maxsize=64)
def array_literal(values: tuple[str, ...]) -> str:
    """PostgreSQL's text of an array of ``values``: each element quoted, its quotes and
    backslashes escaped."""
    quoted = (value.replace("\\", "\\\\").replace('"', '\\"') for value in values)
    return "{" + ",".join(f'"{value}"' for value in quoted) + "}"


@functools.cache
def _insert_columns(alias: str) -> tuple[str, list[str]]:
    """The inserted columns' names, quoted and joined, and their types, for ``alias``."""
    connection = connections[alias]
    types = [str(field.db_type(connection)) for field in inserted_fields()]
    return inserted_columns(alias), types
