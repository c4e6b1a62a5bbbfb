"""Counts the SQL statements of every process that uses the database: one byte per statement
appended to a file, so that the benchmark can count what an idle runworkers costs SQLite,
which has no server to keep count.

Connected only when the environment names the file (DEMO_STATEMENT_LOG), as the benchmark's
idle section does. SQLite's own trace hook sees every statement, BEGIN and COMMIT too; on
the other databases, only those run through Django's cursors (their servers count the rest).
"""

import os
from collections.abc import Callable
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

LOG_VARIABLE = "DEMO_STATEMENT_LOG"


def connect_if_asked() -> None:
    """Count every statement of this process if DEMO_STATEMENT_LOG names a file."""
    if os.environ.get(LOG_VARIABLE):
        connection_created.connect(count_statements, dispatch_uid="demo.statement_log")


def count_statements(sender: type, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    log = os.open(os.environ[LOG_VARIABLE], os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def count(*args: Any) -> None:
        os.write(log, b".")

    if connection.vendor == "sqlite":
        connection.connection.set_trace_callback(count)
    else:

        def counted(execute: Callable[..., Any], *args: Any) -> Any:
            count()
            return execute(*args)

        connection.execute_wrappers.append(counted)
