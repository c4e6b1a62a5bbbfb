"""Database outages: the errors that mean the database is unreachable, and retrying an
operation through them with backoff, for workers and the supervisor alike."""

import logging
import time
from collections.abc import Callable
from typing import TypeVar

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
