"""A worker: the child process that claims due jobs and runs them, one at a time.

Children are spawned by the supervisor (``runworkers``) and talk to it over a pipe
(``protocol.py``): they announce themselves, each job they start and finish, and when they
go idle; the parent answers with ``Wake`` (jobs were submitted, or one fell due) or ``Stop``.
"""

import asyncio
import ctypes
import logging
import os
import signal
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from django.db import connections

from django_quickworker.claim import claim_next
from django_quickworker.conf import conf
from django_quickworker.context import JobContext
from django_quickworker.exceptions import (
    InvalidDuration,
    InvalidJobData,
    RetryJob,
    UnknownJobType,
)
from django_quickworker.finish import (
    Outcome,
    announce_finished,
    fail_instead,
    finish_and_claim_next,
    finish_safely,
)
from django_quickworker.leases import release_job, release_jobs_of
from django_quickworker.models import WorkerJob
from django_quickworker.outages import DATABASE_UNAVAILABLE, retry_on_db_error
from django_quickworker.payload import storable_text, validate_payload
from django_quickworker.processes import worker_id
from django_quickworker.protocol import (
    Idle,
    JobFinished,
    JobStarted,
    ParentPipe,
    Stop,
    WorkerError,
    WorkerStarted,
    route,
)
from django_quickworker.registry import registry
from django_quickworker.schedule import to_timedelta
from django_quickworker.sentry import report_failure
from django_quickworker.signals import job_started, send
from django_quickworker.tracing import job_span, record_exception

logger = logging.getLogger(__name__)

T = TypeVar("T")

PARENT_CHECK_INTERVAL = 1.0  # seconds between checks that the parent is still alive
# Seconds an idle worker waits for its parent's wake-up before it looks for a job itself: a
# safety net only, since the parent looks for due jobs for it (see wakeups.py).
UNWOKEN_LOOK_INTERVAL = 60.0


def run_worker(
    slot: int,
    queues: list[str] | None,
    pipe: Connection,
    end_request: ctypes.c_longlong,
    burst: bool,
    token: str,
) -> None:
    """Work until told to stop; report an unexpected error to the parent before dying."""
    worker = Worker(slot, queues, pipe, burst, end_request, token)
    try:
        worker.run()
    except Exception:
        worker.parent.send(WorkerError(traceback.format_exc()))
        raise


class Worker:
    """Claims and runs jobs in a loop; sleeps only when nothing is due."""

    def __init__(
        self,
        slot: int,
        queues: list[str] | None,
        pipe: Connection,
        burst: bool,
        end_request: ctypes.c_longlong,
        token: str,
    ) -> None:
        self.id = worker_id(slot, token)
        self.queues = queues
        # Only jobs it can run: one of a type it does not know waits for a worker that does.
        self.types = [job_type.name for job_type in registry]
        self.parent = ParentPipe(pipe, on_lost=self.on_parent_lost)
        self.burst = burst
        self.stopping = False
        self.current: WorkerJob | None = None
        # The job whose function is running (None between jobs), and the one the parent
        # wants ended: it writes the id there before it sends SIGUSR1.
        self.running_job_id: int | None = None
        self.end_request = end_request
        self.parent_pid = os.getppid()

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.on_sigterm)
        signal.signal(signal.SIGUSR1, self.on_sigusr1)
        route.install(self.parent)  # live messages go to the parent, which relays them
        self.parent.send(WorkerStarted(self.id, os.getpid()))
        threading.Thread(target=self.watch_parent, name="parent-watch", daemon=True).start()
        try:
            self.work()
        except DATABASE_UNAVAILABLE:
            if not self.stopping:
                raise
            # Asked to stop while the database is unreachable: what could not be recorded
            # is left to lease rescue, rather than waiting for a database that may not return.
            job = self.current
            logger.warning(
                "worker %s stopping with the database unreachable; job id=%s is left to "
                "lease rescue",
                self.id,
                job and job.pk,
            )

    def work(self) -> None:
        job = self.advance(None, None)
        while job is not None or not (self.stopping or self.burst):
            if job is None:
                self.parent.send(Idle())
                self.read_messages(timeout=UNWOKEN_LOOK_INTERVAL)
                job = self.advance(None, None)
                continue
            outcome, elapsed_ms = self.run_job(job)
            # Before the next claim: the parent's timer for this job stops here, and a
            # "stop" it sent meanwhile keeps us from claiming another.
            self.parent.send(JobFinished(job.pk, outcome.success))
            self.read_messages(timeout=0)
            next_job = self.advance(job, outcome)
            self.report_finished(job, outcome, elapsed_ms)
            job = next_job
        logger.debug("worker %s exiting", self.id)

    def advance(self, done: WorkerJob | None, outcome: Outcome | None) -> WorkerJob | None:
        """Finish ``done`` (if any) and claim the next due job, unless stopping."""
        try:
            if done is not None and outcome is not None:
                if self.stopping:
                    finish_safely(done, outcome)
                    return None
                self.current = self.finish_and_claim(done, outcome)
            else:
                self.current = None if self.stopping else self.claim()
        except DATABASE_UNAVAILABLE as error:
            logger.warning("database unavailable, reconnecting: %s", error)
            self.current = retry_on_db_error(
                lambda: self.recover(done, outcome), "recovery", self.should_stop
            )
        return self.current

    def finish_and_claim(self, done: WorkerJob, outcome: Outcome) -> WorkerJob | None:
        """Finish ``done`` and claim the next job; if recording the outcome raises, fail
        ``done`` with that error and go on: no job may stop its worker."""
        try:
            return finish_and_claim_next(done, outcome, self.queues, conf.lease, self.types)
        except DATABASE_UNAVAILABLE:
            raise
        except Exception as error:
            fail_instead(done, error)
            return self.claim()

    def claim(self) -> WorkerJob | None:
        return claim_next(self.id, self.queues, conf.lease, self.types)

    def recover(self, done: WorkerJob | None, outcome: Outcome | None) -> WorkerJob | None:
        """After a lost connection: finish ``done`` (at most once, thanks to the fence), give
        back any job claimed by a statement whose answer was lost, then claim again."""
        connections.close_all()
        if done is not None and outcome is not None:
            finish_safely(done, outcome)
        release_jobs_of(self.id)
        return None if self.stopping else self.claim()

    def on_sigterm(self, signum: int, frame: object) -> None:
        """Finish the current job, then exit: SIGTERM reaches every process of the group
        when a service manager or a terminal stops the service; the parent drains too."""
        self.stopping = True

    def on_sigusr1(self, signum: int, frame: object) -> None:
        """The parent ends a job (timeout or cancel): unwind it and exit, if it is the job
        running now. The parent decided on what it last heard; the job it meant may have
        finished since, and the one claimed after it must not pay for it."""
        wanted = self.end_request.value
        if self.running_job_id is None or wanted != self.running_job_id:
            logger.info(
                "worker %s: not ending job id=%s, asked to end job id=%s which is over",
                self.id,
                self.running_job_id,
                wanted,
            )
            return
        raise SystemExit(f"worker {self.id} told to end job id={wanted}")

    def run_job(self, job: WorkerJob) -> tuple[Outcome, float]:
        """Run ``job``; return its outcome and how long it took, in ms."""
        self.current = job
        self.parent.send(
            JobStarted(
                job.pk,
                timeout=_seconds(job.timeout),
                attempt=job.attempt,
                type=job.type,
                queue=job.queue,
                wait=(job.started - job.due).total_seconds() if job.started else 0.0,
            )
        )
        logger.info(
            "job started id=%s type=%s tag=%s attempt=%s", job.pk, job.type, job.tag, job.attempt
        )
        send(job_started, job=job)
        started = time.monotonic()
        self.running_job_id = job.pk
        try:
            with job_span(job) as span:
                outcome = execute(job)
                span.end_with(outcome)
        finally:
            self.running_job_id = None
        return outcome, (time.monotonic() - started) * 1000

    def report_finished(self, job: WorkerJob, outcome: Outcome, elapsed_ms: float) -> None:
        announce_finished(job)
        log = logger.info if outcome.success else logger.warning
        log(
            "job finished id=%s type=%s tag=%s attempt=%s success=%s ms=%d",
            job.pk,
            job.type,
            job.tag,
            job.attempt,
            outcome.success,
            elapsed_ms,
        )

    def read_messages(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the parent; act on what it says (a wake-up
        needs nothing more than ending the wait)."""
        if any(isinstance(message, Stop) for message in self.parent.receive(timeout)):
            self.stopping = True

    def on_parent_lost(self) -> None:
        self.stopping = True

    def should_stop(self) -> bool:
        """Whether a signal or the parent asked this worker to stop (read while reconnecting,
        when the loop that reads the parent's messages is not running)."""
        self.read_messages(timeout=0)
        return self.stopping

    def watch_parent(self) -> None:
        """Leave when the parent dies, putting the current job back in the queue."""
        while os.getppid() == self.parent_pid:
            time.sleep(PARENT_CHECK_INTERVAL)
        job = self.current
        try:
            if job is not None and release_job(job):
                logger.warning("parent died: released job id=%s type=%s", job.pk, job.type)
        except DATABASE_UNAVAILABLE as error:
            logger.warning("parent died: job id=%s left to lease rescue: %s", job and job.pk, error)
        os._exit(1)


def execute(job: WorkerJob) -> Outcome:
    """Run ``job``'s function and return how it went; never raise for the job's own errors."""
    try:
        job_type = registry.get(job.type)
    except UnknownJobType as error:  # a last resort: workers claim only types they know
        return Outcome.failure(str(error), retryable=False)
    try:
        if job_type.is_async:
            value = asyncio.run(job_type.function(JobContext(job)))
        else:
            value = job_type.function(JobContext(job))
    except RetryJob as request:
        return _retry_outcome(job, request)
    except Exception as error:  # the job boundary: whatever the job raised is its failure
        logger.warning(
            "job raised id=%s type=%s: %s: %s",
            job.pk,
            job.type,
            type(error).__name__,
            error,
            exc_info=True,
        )
        report_failure(job, error)
        record_exception(error)
        message = storable_text(str(error)) or type(error).__name__
        return Outcome(
            False,
            {"error": message, "exception": _qualified_name(error)},
            storable_text(traceback.format_exc()),
        )
    return _success(job, value)


def _success(job: WorkerJob, value: Any) -> Outcome:
    """The outcome of a run that returned ``value``: a failure, never retried, if the
    database cannot store it, since the job's effects happened and another run repeats them."""
    try:
        validate_payload(value, "result")
    except InvalidJobData as error:
        logger.warning("job result cannot be stored id=%s type=%s: %s", job.pk, job.type, error)
        message = (
            f"The job ran to completion but its result cannot be stored: {error} "
            "It is not retried, since running it again would repeat its effects."
        )
        return Outcome(
            False,
            {"error": message, "exception": _qualified_name(error)},
            storable_text(traceback.format_exc()),
            retryable=False,
        )
    return Outcome(True, value)


def _retry_outcome(job: WorkerJob, request: RetryJob) -> Outcome:
    logger.info("job asked for a retry id=%s type=%s: %s", job.pk, job.type, request)
    try:
        delay = None if request.delay is None else to_timedelta(request.delay, "RetryJob delay")
    except InvalidDuration as error:
        return Outcome.failure(str(error))
    message = storable_text(str(request))
    return Outcome(False, {"error": message}, retry_requested=True, retry_delay=delay)


def _seconds(duration: Any) -> float | None:
    return None if duration is None else duration.total_seconds()


def _qualified_name(error: Exception) -> str:
    cls = type(error)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
