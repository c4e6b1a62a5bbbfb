"""Database outages: the errors that mean the database is unreachable, and retrying an
operation through them with backoff, for workers and the supervisor alike."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import InterfaceError, OperationalError, connections

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Errors that mean "the database is unreachable": retried by the caller, never a job's fault.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
MAX_DB_RETRY_DELAY = 10.0  # seconds, the cap of the reconnect backoff
STOP_CHECK_INTERVAL = 0.1  # seconds between looks for a stop request while reconnecting


def retry_on_db_error(
    operation: Callable[[], T], what: str, should_stop: Callable[[], bool] = lambda: False
) -> T:
    """Run ``operation``; while the database is unreachable, reconnect with backoff and retry.

    Once ``should_stop()`` says so (a signal came), the database error is raised instead:
    a process asked to stop must not wait for a database that may never come back.
    """
    delay = 0.1
    while True:
        try:
            return operation()
        except DATABASE_UNAVAILABLE as error:
            if should_stop():
                logger.warning("database unavailable during %s; stopping: %s", what, error)
                raise
            logger.warning(
                "database unavailable during %s, retrying in %.1fs: %s", what, delay, error
            )
            connections.close_all()
            remaining = delay
            while remaining > 0 and not should_stop():  # in steps, to notice a stop soon
                step = min(STOP_CHECK_INTERVAL, remaining)
                time.sleep(step)
                remaining -= step
            delay = min(delay * 2, MAX_DB_RETRY_DELAY)


class DatabaseThread:
    """The supervisor's database work: on one thread, off its event loop, retried while the
    database is down until ``stopping()`` says a signal asked runworkers to stop."""

    def __init__(self, stopping: Callable[[], bool], running_jobs: Callable[[], list[int]]) -> None:
        self.stopping = stopping
        self.running_jobs = running_jobs  # the ids logged when stopping gives up on an outage
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="quickworker-db")

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self.executor,
            retry_on_db_error,
            lambda: function(*args),
            function.__name__,
            self.stopping,
        )

    @contextlib.contextmanager
    def unless_stopped_by_an_outage(self, what: str) -> Iterator[None]:
        """Give up the database work inside when a signal came while the database is down:
        stopping must not wait for it; running jobs are left to lease rescue."""
        try:
            yield
        except DATABASE_UNAVAILABLE as error:
            if not self.stopping():
                raise
            logger.warning(
                "database unavailable during %s while stopping; giving up (jobs left to lease "
                "rescue: %s): %s",
                what,
                self.running_jobs() or "none running",
                error,
            )

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True)
