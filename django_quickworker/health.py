"""Is this ``runworkers`` parent healthy? What ``/healthz`` answers.

Healthy means: the parent is not stopping, its last heartbeat (written by the lease loop on
the database thread) is younger than a lease, and the database answers a ``SELECT 1``
within a few seconds, asked from a thread of the check's own. The parent's other loops need
no check here: it restarts one that fails, and exits when one keeps failing.
"""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from django.db import DatabaseError, connections, router

from django_quickworker.conf import conf
from django_quickworker.models import WorkerJob

if TYPE_CHECKING:
    from django_quickworker.supervisor import Supervisor

DATABASE_TIMEOUT = 3.0  # seconds the database gets to answer the health check


class HealthCheck:
    """Checks one supervisor's health; each problem is a sentence."""

    def __init__(self, supervisor: "Supervisor") -> None:
        self.supervisor = supervisor
        # One thread, so the check keeps one connection and never waits behind the
        # supervisor's database thread, which retries for as long as the database is down.
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="quickworker-health")

    async def problems(self) -> list[str]:
        """What is wrong, one sentence each; empty when the parent is healthy."""
        problems = []
        if self.supervisor.stopping:
            problems.append("runworkers is stopping: its workers finish their jobs and exit.")
        since_heartbeat = time.monotonic() - self.supervisor.last_heartbeat
        lease = conf.lease.total_seconds()
        if since_heartbeat > lease:
            problems.append(
                f"The last heartbeat was written {since_heartbeat:.0f}s ago, more than a "
                f"lease ({lease:g}s): the database thread is stuck or the database is down."
            )
        database_problem = await self.database_problem()
        if database_problem:
            problems.append(database_problem)
        return problems

    async def database_problem(self) -> str | None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(self.thread, select_one), DATABASE_TIMEOUT)
        except asyncio.TimeoutError:
            return f"The database did not answer within {DATABASE_TIMEOUT:g}s."
        except DatabaseError as error:
            return f"The database does not answer: {type(error).__name__}: {error}".strip()
        return None

    def close(self) -> None:
        self.thread.shutdown(wait=False)


def select_one() -> None:
    connection = connections[router.db_for_write(WorkerJob)]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        connection.close()  # reconnect at the next check
        raise
