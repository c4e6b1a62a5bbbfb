"""PostgreSQL: ``FOR UPDATE SKIP LOCKED`` claims, advisory tag locks, LISTEN/NOTIFY wake-ups."""

import asyncio
import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from django_quickworker.databases.base import Claim, InDb, ReturningClaim, Wake
from django_quickworker.models import WorkerJob

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
        self, job: WorkerJob, changes: dict[str, Any], now: datetime, claim: Claim
    ) -> tuple[int, WorkerJob | None]:
        # One statement: one round trip and one commit per job instead of two, which is
        # most of what a job costs the queue.
        finish_sql, finish_params = self.fenced_finish(job, changes, now)
        claim_sql, claim_params = self.claim_statement(claim, now)
        sql = (
            f"WITH finished AS ({finish_sql} RETURNING id), "
            f"claimed AS ({claim_sql} RETURNING *) "
            "SELECT claimed.*, (SELECT count(*) FROM finished) AS finished_rows "
            "FROM (SELECT 1) AS one LEFT JOIN claimed ON true"
        )
        (row,) = self.fetch_rows(sql, [*finish_params, *claim_params])
        finished = row.pop("finished_rows")
        return finished, self.row_to_job(row) if row["id"] is not None else None

    def lock_tags(self, tags: list[str]) -> None:
        """Advisory transaction locks, one per tag (hashed), released when it ends."""
        with self.connection.cursor() as cursor:
            # Sorted, so that two submissions of overlapping tags cannot deadlock.
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, key) FROM (SELECT DISTINCT hashtext(tag) AS key"
                " FROM unnest(%s::text[]) AS tag ORDER BY key) AS keys",
                [TAG_LOCK_NAMESPACE, tags],
            )

    def wake_workers(self, queues: set[str]) -> None:
        if not queues:
            return
        with self.connection.cursor() as cursor:
            cursor.execute(
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
