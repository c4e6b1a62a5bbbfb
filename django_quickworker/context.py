"""The JobContext handed to every job function as ``ctx``."""

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import connections

from django_quickworker.models import WorkerJob
from django_quickworker.notifications import broadcast, notify_progress, notify_user
from django_quickworker.payload import validate_payload
from django_quickworker.submit import submit_job

logger = logging.getLogger("django_quickworker.jobs")
T = TypeVar("T")

PROGRESS_WRITE_INTERVAL = 0.5  # seconds between progress writes to the row
PROGRESS_SEND_INTERVAL = 0.1  # seconds between progress messages to the browser
# The final progress report (current >= total) is always written and sent.


def off_the_loop(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``function``; from an async job, on a helper thread while the loop waits.

    Django forbids blocking queries on an event loop's thread, and a job's context calls
    are short, so waiting for them is fine.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return function(*args, **kwargs)

    def call() -> T:
        try:
            return function(*args, **kwargs)
        finally:
            connections.close_all()  # the thread's own connection, which dies with it

    with ThreadPoolExecutor(1, thread_name_prefix="quickworker-context") as thread:
        return thread.submit(call).result()


class JobLogger(logging.LoggerAdapter):
    """A logger whose lines name the job they come from."""

    def __init__(self, job: WorkerJob) -> None:
        super().__init__(logger)
        self.prefix = f"[{job.type} id={job.pk}]"

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"{self.prefix} {msg}", kwargs


class JobContext:
    """What a running job knows about itself, and what it can do."""

    def __init__(self, job: WorkerJob) -> None:
        self.job = job
        self.log = JobLogger(job)
        self._last_write = self._last_send = 0.0

    @property
    def data(self) -> Any:
        return self.job.data

    @property
    def user_id(self) -> Any:
        return self.job.user_id

    @property
    def attempt(self) -> int:
        return self.job.attempt

    def progress(self, current: float, total: float | None = None, message: str = "") -> None:
        """Report how far the job has got: stored on its row and sent to its owner's browser.

        Call it as often as you like; writes and messages are throttled.
        """
        progress = {"current": current, "total": total, "message": message}
        validate_payload(progress, "progress")
        self.job.progress = progress
        now = time.monotonic()
        is_final = total is not None and current >= total
        if is_final or now - self._last_write >= PROGRESS_WRITE_INTERVAL:
            self._last_write = now
            self._store(progress)
        if is_final or now - self._last_send >= PROGRESS_SEND_INTERVAL:
            self._last_send = now
            notify_progress(self.job.pk, self.user_id, {"type": self.job.type, **progress})

    def _store(self, progress: dict[str, Any]) -> None:
        running = WorkerJob.objects.running().filter(pk=self.job.pk, worker=self.job.worker)
        off_the_loop(running.update, progress=progress)

    def notify_user(self, user_id: object, message_type: str, data: Any = None) -> None:
        """Send a message to every open socket of user ``user_id``."""
        notify_user(user_id, message_type, data)

    def broadcast(self, message_type: str, data: Any = None) -> None:
        """Send a message to every open socket of every signed-in user."""
        broadcast(message_type, data)

    def submit_job(self, **options: Any) -> WorkerJob:
        """Submit another job (same options as ``django_quickworker.submit_job``)."""
        return off_the_loop(submit_job, **options)
