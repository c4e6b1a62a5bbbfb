"""Entry point of a spawned worker process.

Kept apart from ``worker`` because unpickling the spawn target imports its module, and
the worker's modules need the app registry, which only exists after ``django.setup()``.
"""

import ctypes
import signal
from multiprocessing.connection import Connection


def main(
    slot: int,
    queues: list[str] | None,
    pipe: Connection,
    end_request: "ctypes.c_longlong",
    burst: bool,
    log_level: str,
    token: str,
) -> None:
    """Set Django up in this fresh process, then run a worker."""
    # Ctrl-C reaches the whole process group; only the parent decides when children stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import django

    django.setup()
    from django_quickworker.conf import configure_logging
    from django_quickworker.tasks import discover_tasks
    from django_quickworker.worker import run_worker

    configure_logging(log_level)
    discover_tasks()  # a worker claims only the types it knows: know the tasks first
    run_worker(slot, queues, pipe, end_request, burst, token)
