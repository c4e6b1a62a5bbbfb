"""The JobContext handed to every job function as ``ctx``."""

import logging
import time
from typing import Any

from django_quickworker.models import WorkerJob
from django_quickworker.payload import validate_payload
from django_quickworker.submit import submit_job

logger = logging.getLogger("django_quickworker.jobs")

PROGRESS_WRITE_INTERVAL = 0.5  # seconds between progress writes; the final one always lands


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
        self._last_progress_write = 0.0

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
        """Record how far the job has got, on its row (at most every half second)."""
        progress = {"current": current, "total": total, "message": message}
        validate_payload(progress, "progress")
        self.job.progress = progress
        now = time.monotonic()
        is_last = total is not None and current >= total
        if is_last or now - self._last_progress_write >= PROGRESS_WRITE_INTERVAL:
            self._last_progress_write = now
            WorkerJob.objects.running().filter(pk=self.job.pk, worker=self.job.worker).update(
                progress=progress
            )

    def submit_job(self, **options: Any) -> WorkerJob:
        """Submit another job (same options as ``django_quickworker.submit_job``)."""
        return submit_job(**options)
