"""PostgreSQL: ``FOR UPDATE SKIP LOCKED`` claims, advisory tag locks, LISTEN/NOTIFY wake-ups."""

import asyncio
import json
import logging
import operator
from collections.abc import Iterator, Sequence
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from django_quickworker.databases.base import Claim, InDb, ReturningClaim, Wake, inserted_fields
from django_quickworker.models import WorkerJob
from django_quickworker.states import Changes

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "quickworker"
# First key of PostgreSQL's two-key advisory locks, so ours never collide with the project's.
TAG_LOCK_NAMESPACE = 0x5157
# Django's connection parameters that are for its own cursor setup, not for libpq.
NON_LIBPQ_PARAMS = {"cursor_factory", "context", "prepare_threshold", "server_side_binding"}


class PostgreSQL(ReturningClaim):
    vendor = "postgresql"
    finishes_and_claims_at_once = True

    def now_sql(self) -> str:
        return "statement_timestamp()"  # CURRENT_TIMESTAMP stands still in a transaction

    def later_sql(self, seconds: float) -> tuple[str, list[object]]:
        return "statement_timestamp() + %s * interval '1 second'", [seconds]

    def one_of(self, column: str, values: Sequence[str]) -> tuple[str, list[object]]:
        # One array parameter: the statement's text stays the same for any number of values.
        return f"{column} = ANY(%s)", [list(values)]

    def finish_and_claim(
        self, job: WorkerJob, changes: Changes, claim: Claim
    ) -> tuple[int, WorkerJob | None]:
        # One statement: one round trip and one commit per job instead of two, which is
        # most of what a job costs the queue.
        finish_sql, finish_params = self.fenced_finish(job, changes)
        claim_sql, claim_params = self.claim_statement(claim, timezone.now())
        sql = (
            f"WITH finished AS ({finish_sql} RETURNING id), "
            f"claimed AS ({claim_sql} RETURNING *) "
            f"SELECT (SELECT count(*) FROM finished), {self.job_columns('claimed')} "
            "FROM (SELECT 1) AS one LEFT JOIN claimed ON true"
        )
        row = self.fetch_one(sql, [*finish_params, *claim_params])
        assert row is not None  # the join always gives one row
        finished, *claimed = row
        return finished, self.row_to_job(claimed) if claimed[0] is not None else None

    def insert_jobs(
        self, jobs: list[WorkerJob], replacing: Sequence[str] = (), reason: str = ""
    ) -> None:
        """Lock the tags, cancel what the jobs replace, insert them and notify the workers,
        all in one round trip.

        Sent as one query string, the statements run in one transaction (the caller's, or an
        implicit one) and each takes its snapshot when it starts: the cancel sees every job
        committed by a competing submission before it released the tag lock we now hold.
        """
        if not jobs:
            return
        statements = []
        if replacing:
            statements += [
                self.lock_tags_statement(replacing),
                WorkerJob.objects.using(self.alias)
                .filter(tag__in=replacing)
                .cancel_statement(reason),
            ]
        inserting = len(statements)
        statements.append(self.insert_statement(jobs))
        statements.append(self.wake_statement({job.queue for job in jobs}))
        with self.connection.cursor() as cursor:
            for position in self.execute_together(cursor, statements):
                if position == inserting:
                    ids = [pk for (pk,) in cursor.fetchall()]
        self.saved(jobs, ids)

    def insert_statement(self, jobs: list[WorkerJob]) -> tuple[str, list[object]]:
        """One INSERT of any number of rows, one array parameter per column: a statement
        the server parses quickly, and as many parameters for 20,000 rows as for one."""
        fields = inserted_fields()
        connection = self.connection
        columns = []
        for field in fields:
            # Column by column: per row, only the lookups that differ (20,000 rows at once).
            if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
                values = [field.pre_save(job, True) for job in jobs]
            else:
                values = list(map(operator.attrgetter(field.attname), jobs))
            prepare = field.get_db_prep_save
            columns.append([prepare(value, connection) for value in values])
        arrays = ", ".join(f"%s::{field.db_type(connection)}[]" for field in fields)
        names = ", ".join(connection.ops.quote_name(str(field.column)) for field in fields)
        aliases = ", ".join(f"c{position}" for position in range(len(fields)))
        # Ordered, so that the ids (and RETURNING) follow the order of the jobs.
        sql = (
            f"INSERT INTO {self.table} ({names}) SELECT {aliases} FROM unnest({arrays}) "
            f"WITH ORDINALITY AS rows ({aliases}, position) ORDER BY position RETURNING id"
        )
        return sql, list(columns)

    def execute_together(
        self, cursor: Any, statements: list[tuple[str, list[object]]]
    ) -> Iterator[int]:
        """Run ``statements`` in one round trip; yield the position of each as its result is
        current. Parameters bound on the server (``server_side_binding``) allow one
        statement per call, so then one call each."""
        if self.connection.settings_dict["OPTIONS"].get("server_side_binding") is True:
            for position, (sql, params) in enumerate(statements):
                cursor.execute(sql, params)
                yield position
            return
        cursor.execute(
            "; ".join(sql for sql, _ in statements), [p for _, params in statements for p in params]
        )
        yield 0
        for position in range(1, len(statements)):
            cursor.nextset()
            yield position

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
        """The NOTIFY of each of ``queues``, delivered when the transaction commits."""
        return (
            "SELECT pg_notify(%s, queue) FROM unnest(%s::text[]) AS queue",
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
