"""The worker processes as the ``runworkers`` parent sees them: how one is spawned, what it
is doing, how it is told to end its job, and how soon a crashed one is started again."""

import contextlib
import ctypes
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess

from django_quickworker import child as child_process
from django_quickworker import processes
from django_quickworker.protocol import JobFinished, JobStarted, Message

KILL_GRACE = 5.0  # seconds a child gets to end its job (SIGUSR1) before SIGKILL
FIRST_RESTART_DELAY = 0.5  # seconds; doubles with each crash in a row
MAX_RESTART_DELAY = 30.0  # seconds
STABLE_AFTER = 10.0  # seconds a child (or task) must live for its crash not to count as a loop


@dataclass
class Child:
    """One worker process, as the parent sees it."""

    slot: int
    process: BaseProcess
    pipe: Connection
    worker: str
    started_at: float
    end_request: ctypes.c_longlong  # the id of the job it must end, read by its SIGUSR1 handler
    idle: bool = False
    job_id: int | None = None
    job_started_at: float = 0.0
    job_timeout: float | None = None
    ran_a_job: bool = False
    ended_at: float | None = None  # when the parent told it to end its job
    end_reason: str | None = None  # why the parent ended it
    ended_job_id: int | None = None  # which job the parent told it to end

    @classmethod
    def spawn(
        cls,
        context: SpawnContext,
        slot: int,
        queues: list[str] | None,
        burst: bool,
        log_level: str,
    ) -> "Child":
        """Start the worker process of ``slot``; its pipe and exit sentinel are then read."""
        parent_end, child_end = context.Pipe()
        end_request = context.RawValue(ctypes.c_longlong, 0)  # see Worker.on_sigusr1
        process = context.Process(
            target=child_process.main,
            args=(slot, queues, child_end, end_request, burst, log_level, processes.START_TOKEN),
            name=f"quickworker-{slot}",
        )
        process.start()
        child_end.close()
        assert process.pid is not None
        worker_id = processes.worker_id(slot, processes.START_TOKEN, process.pid)
        return cls(slot, process, parent_end, worker_id, time.monotonic(), end_request)

    def send(self, message: Message) -> None:
        with contextlib.suppress(OSError):  # it is gone; its exit sentinel tells the rest
            self.pipe.send(message)

    def job_began(self, message: JobStarted) -> None:
        self.idle = False
        self.job_id = message.job_id
        self.job_started_at = time.monotonic()
        self.job_timeout = message.timeout

    def job_ended(self, message: JobFinished) -> None:
        self.job_id = None
        self.ran_a_job = True
        if self.ended_job_id == message.job_id:  # it finished before the signal came
            self.ended_at = self.end_reason = self.ended_job_id = None

    def overran(self, now: float) -> bool:
        """Whether its job has run past the job's timeout."""
        if self.job_id is None or self.job_timeout is None:
            return False
        return now - self.job_started_at > self.job_timeout

    def lingers(self, now: float) -> bool:
        """Whether it was told to end its job and has not, within KILL_GRACE."""
        return self.ended_at is not None and now - self.ended_at > KILL_GRACE

    def end(self, reason: str) -> None:
        """Make it abandon its job and exit (SIGUSR1); the parent SIGKILLs it if it lingers.

        Not SIGTERM: service managers and terminals send that to the whole process group,
        and then children should finish their jobs, not drop them.
        """
        self.end_reason = reason
        self.ended_at = time.monotonic()
        self.ended_job_id = self.job_id
        self.end_request.value = self.job_id or 0
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid or 0, signal.SIGUSR1)

    def crashed_early(self, code: int) -> bool:
        """Whether it died on its own before doing anything: a crash loop in the making."""
        lived = time.monotonic() - self.started_at
        return code != 0 and not self.end_reason and not self.ran_a_job and lived < STABLE_AFTER


def restart_delay(crashes: int) -> float:
    """Seconds to wait before starting a slot again after ``crashes`` early crashes in a row."""
    return min(FIRST_RESTART_DELAY * 2**crashes, MAX_RESTART_DELAY)


def describe_exit(code: int) -> str:
    """Say how a process ended, from its exit code (negative: killed by that signal)."""
    if code < 0:
        try:
            return f"Worker process was killed by {signal.Signals(-code).name}."
        except ValueError:
            return f"Worker process was killed by signal {-code}."
    if code == 0:
        return "Worker process exited (code 0) while running the job."
    return f"Worker process exited with code {code}."
