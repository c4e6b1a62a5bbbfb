"""Wake-ups: the ``runworkers`` parent tells its idle workers when to look for a job.

Idle workers do not poll the database; they wait on their pipe. The parent wakes them when
the database's watch (``watch_for_jobs`` in ``databases/<vendor>.py``) sees new jobs
committed, and when the next scheduled job falls due by time (a due time in the future, a
retry's backoff, the next cron run), which it reads with one query for the whole host:
whenever a worker goes idle, after each wake-up, and at least every ``POLL_INTERVAL``
(which also finds jobs made due in place, as an operator's "run now" on MySQL, that no
watch reports).
"""

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from django_quickworker.claim import next_due
from django_quickworker.conf import conf
from django_quickworker.databases.base import InDb
from django_quickworker.registry import registry


class IdleWorker(Protocol):
    idle: bool  # waiting for a wake-up


W = TypeVar("W", bound=IdleWorker)


class WakeUps(Generic[W]):
    """The idle workers of one ``runworkers`` and when to wake them."""

    def __init__(
        self,
        workers: Callable[[], Iterable[W]],
        queues: list[str] | None,
        send_wake: Callable[[W], None],
    ) -> None:
        self.workers = workers
        self.queues = queues
        self.send_wake = send_wake
        self.look_again = asyncio.Event()  # the next due time may have changed
        # The due time we last woke the workers for, and when we may wake them for it again:
        # a due job that they could not claim (another host holds it) must not make the
        # parent spin, only be tried again after a poll interval.
        self.woken_for: datetime | None = None
        self.wake_again_at = 0.0

    def went_idle(self, worker: W) -> None:
        """``worker`` found nothing to claim; a job may have come since, so look again."""
        worker.idle = True
        self.look_again.set()

    def wake(self, queue: str | None = None) -> None:
        """Tell idle workers to look for jobs (of ``queue``, if given): new ones arrived."""
        if queue is not None and self.queues is not None and queue not in self.queues:
            return
        self.wake_idle()
        self.look_again.set()  # one of them may fall due later

    def wake_idle(self) -> None:
        for worker in self.workers():
            if worker.idle:
                worker.idle = False
                self.send_wake(worker)

    def anyone_idle(self) -> bool:
        return any(worker.idle for worker in self.workers())

    async def watch_due_times(self, in_db: InDb) -> None:
        """Wake the idle workers when the next scheduled job of theirs falls due."""
        types = [job_type.name for job_type in registry]  # the types the workers claim
        while True:
            self.look_again.clear()
            if not self.anyone_idle():  # busy workers claim their next job themselves
                await self.look_again.wait()
                continue
            wait = conf.poll_interval
            found = await in_db(next_due, self.queues, types)
            if found is not None:
                due, now = found  # by the database's clock: this host's may be off
                if due > now:
                    wait = min(wait, (due - now).total_seconds())
                elif self.may_wake_for(due):
                    self.wake_idle()
                    continue
            with contextlib.suppress(asyncio.TimeoutError):  # not TimeoutError before Python 3.11
                await asyncio.wait_for(self.look_again.wait(), wait)

    def may_wake_for(self, due: datetime) -> bool:
        """Whether to wake the workers for a job due at ``due``; remember it if so."""
        woken_already = self.woken_for is not None and due <= self.woken_for
        if woken_already and time.monotonic() < self.wake_again_at:
            return False
        self.woken_for = due
        self.wake_again_at = time.monotonic() + conf.poll_interval
        return True
