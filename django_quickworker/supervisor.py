"""The supervisor: the ``runworkers`` parent that starts, watches and stops the workers.

It runs one asyncio loop that reads every child's pipe and exit sentinel, watches for new
jobs (PostgreSQL's NOTIFY, or the database's replacement for it), renews the leases of its
children's jobs, rescues jobs of dead hosts, ends children that overrun a job's timeout,
restarts dead children with backoff and drains them on SIGTERM/SIGINT. Database work runs on
one helper thread, off the loop.
"""

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import router

from django_quickworker import child as child_process
from django_quickworker import processes, worker
from django_quickworker.conf import conf
from django_quickworker.cron import ensure_cron_jobs
from django_quickworker.databases import database
from django_quickworker.finish import (
    DATABASE_UNAVAILABLE,
    end_jobs_of,
    jobs_asked_to_cancel,
    release_jobs_of,
    renew_leases,
    rescue_expired_jobs,
)
from django_quickworker.models import WorkerJob
from django_quickworker.protocol import (
    Idle,
    JobFinished,
    JobStarted,
    Live,
    Message,
    Stop,
    Wake,
    WorkerError,
    WorkerStarted,
)
from django_quickworker.relay import Relay

if TYPE_CHECKING:
    from django_quickworker.embedded import EmbeddedServer
    from django_quickworker.monitor import Monitor
    from django_quickworker.supervisor_metrics import SupervisorMetrics

logger = logging.getLogger(__name__)

T = TypeVar("T")

TICK = 0.1  # seconds between checks of timeouts, restarts and the shutdown deadline
KILL_GRACE = 5.0  # seconds a child gets to end its job (SIGUSR1) before SIGKILL
CANCEL_CHECK_INTERVAL = 1.0  # seconds between looks for running jobs an operator cancelled
FIRST_RESTART_DELAY = 0.5  # seconds; doubles with each crash in a row
MAX_RESTART_DELAY = 30.0  # seconds
STABLE_AFTER = 10.0  # seconds a child (or task) must live for its crash not to count as a loop
MAX_TASK_FAILURES = 5  # failures in a row after which a supervisor task cannot go on
TASK_RESTART_DELAY = 1.0  # seconds before a failed supervisor task starts again


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


class Supervisor:
    """Runs ``workers`` worker processes until stopped (or, with ``burst``, until idle).

    With a ``web_server`` (embedded mode) it also serves the project's ASGI application from
    its own event loop, so web, websockets and workers run from one command.
    """

    def __init__(
        self,
        workers: int,
        queues: list[str] | None = None,
        burst: bool = False,
        shutdown_timeout: float | None = None,
        log_level: str = "info",
        web_server: "EmbeddedServer | None" = None,
        monitor_address: tuple[str, int] | None = None,
    ) -> None:
        self.workers = workers
        self.queues = queues
        self.burst = burst
        self.shutdown_timeout = (
            conf.shutdown_timeout.total_seconds() if shutdown_timeout is None else shutdown_timeout
        )
        self.log_level = log_level
        self.web_server = web_server
        self.monitor_address = monitor_address
        self.metrics: SupervisorMetrics | None = None  # set with a monitor (--metrics)
        self.last_heartbeat = time.monotonic()
        self.children: dict[int, Child] = {}
        self.crashes: dict[int, int] = {}  # crashes in a row, by slot
        self.restart_at: dict[int, float] = {}  # slot -> when to start it again
        self.stopping = False
        self.stopping_now = False
        self.exit_code = 0
        self.deadline = 0.0
        self.spawn = multiprocessing.get_context("spawn")  # no inherited connections or threads

    def run(self) -> int:
        """Supervise until stopped; return the exit code."""
        return asyncio.run(self.main())

    async def main(self) -> int:
        self.loop = asyncio.get_running_loop()
        self.done = asyncio.Event()
        self.exits_in_progress = 0
        self.exit_tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        self.db = ThreadPoolExecutor(1, thread_name_prefix="quickworker-db")
        self.relay = Relay()
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self.on_signal, signum)
        with self.unless_stopped_by_an_outage("start"):
            # Registered first: what this runworkers declares counts in the cron check.
            await self.in_db(processes.register, self.workers, self.queues)
            await self.in_db(ensure_cron_jobs)
        if not self.stopping:  # a signal may have come during the cron check
            for slot in range(self.workers):
                self.start(slot)
        db = database(router.db_for_write(WorkerJob))
        tasks: dict[str, Callable[[], Awaitable[None]]] = {
            "tick": self.tick,
            "maintain_leases": self.maintain_leases,
            "watch_cancellations": self.watch_cancellations,
            "relay": self.relay.run,
            "watch_for_jobs": lambda: db.watch_for_jobs(self.wake, self.in_db),
        }
        running = [
            self.loop.create_task(self.keep_running(*task), name=task[0]) for task in tasks.items()
        ]
        if self.monitor_address:
            monitor = self.start_monitor(*self.monitor_address)
            running.append(self.loop.create_task(monitor.serve()))
        web = self.loop.create_task(self.web_server.serve()) if self.web_server else None
        await self.done.wait()
        if self.web_server and web:
            self.web_server.should_exit = True
            await web
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        with self.unless_stopped_by_an_outage("exit"):
            await self.in_db(processes.unregister)
        self.db.shutdown(wait=True)
        logger.info("runworkers stopped")
        return self.exit_code

    async def keep_running(self, name: str, task: Callable[[], Awaitable[None]]) -> None:
        """Run the long-lived ``task``, restarting it after any exception it raises.

        One that keeps failing as soon as it starts cannot go on: runworkers then stops its
        workers (their jobs go back to the queue) and exits with status 1, so that the
        service manager restarts it, rather than living on half-dead.
        """
        failures = 0
        while True:
            started = time.monotonic()
            try:
                await task()
                return  # it has nothing (more) to do, as the wake-up watch on SQLite
            except Exception as error:
                if self.stopping:  # e.g. the database went away: nothing left to keep up
                    logger.warning("supervisor task %s ended while stopping: %r", name, error)
                    return
                failures = 1 if time.monotonic() - started > STABLE_AFTER else failures + 1
                if failures >= MAX_TASK_FAILURES:
                    logger.critical(
                        "supervisor task %s failed %d times in a row; stopping runworkers "
                        "(exit status 1) so that it is restarted",
                        name,
                        failures,
                        exc_info=True,
                    )
                    self.exit_code = 1
                    self.stop_now()
                    return
                logger.error(
                    "supervisor task %s failed; restarting it in %gs",
                    name,
                    TASK_RESTART_DELAY,
                    exc_info=True,
                )
            await asyncio.sleep(TASK_RESTART_DELAY)

    def start_monitor(self, host: str, port: int) -> "Monitor":
        from django_quickworker.monitor import Monitor  # needs prometheus_client, an extra

        monitor = Monitor(self, host, port)
        self.metrics = monitor.metrics
        return monitor

    # Children

    def start(self, slot: int) -> None:
        parent_end, child_end = self.spawn.Pipe()
        end_request = self.spawn.RawValue(ctypes.c_longlong, 0)  # see Worker.on_sigusr1
        process = self.spawn.Process(
            target=child_process.main,
            args=(
                slot,
                self.queues,
                child_end,
                end_request,
                self.burst,
                self.log_level,
                processes.START_TOKEN,
            ),
            name=f"quickworker-{slot}",
        )
        process.start()
        child_end.close()
        assert process.pid is not None
        child = Child(
            slot,
            process,
            parent_end,
            worker.worker_id(slot, processes.START_TOKEN, process.pid),
            time.monotonic(),
            end_request,
        )
        self.children[slot] = child
        self.loop.add_reader(parent_end.fileno(), self.on_message, child)
        self.loop.add_reader(process.sentinel, self.on_exit, child)
        logger.debug("started worker %s", child.worker)

    def on_message(self, child: Child) -> None:
        try:
            while child.pipe.poll():
                self.handle(child, child.pipe.recv())
        except (EOFError, OSError):
            self.loop.remove_reader(child.pipe.fileno())  # its exit sentinel follows

    def handle(self, child: Child, message: Message) -> None:
        match message:
            case Idle():
                child.idle = True
            case JobStarted():
                child.idle = False
                child.job_id = message.job_id
                child.job_started_at = time.monotonic()
                child.job_timeout = message.timeout
                if self.metrics:
                    self.metrics.job_started(child.slot, message)
            case JobFinished():
                child.job_id = None
                child.ran_a_job = True
                if child.ended_job_id == message.job_id:  # it finished before the signal came
                    child.ended_at = child.end_reason = child.ended_job_id = None
                if self.metrics:
                    self.metrics.job_finished(child.slot, message.success)
            case Live():
                self.relay.put(message.group, message.event)
            case WorkerError():
                logger.error("worker %s failed: %s", child.worker, message.traceback)
            case WorkerStarted():
                logger.debug("worker %s ready", child.worker)

    def on_exit(self, child: Child) -> None:
        self.loop.remove_reader(child.process.sentinel)
        self.on_message(child)  # what it said last (a final progress report, a message)
        self.loop.remove_reader(child.pipe.fileno())
        child.process.join()
        child.pipe.close()
        del self.children[child.slot]
        if self.metrics:
            self.metrics.worker_exited(child.slot)
        self.exits_in_progress += 1
        task = self.loop.create_task(self.after_exit(child))
        self.exit_tasks.add(task)
        task.add_done_callback(self.exit_tasks.discard)

    async def after_exit(self, child: Child) -> None:
        try:
            with self.unless_stopped_by_an_outage(f"the exit of worker {child.worker}"):
                await self.settle_jobs_of(child)
        except Exception:  # the slot must be restarted whatever happened to its jobs
            logger.error("settling the jobs of worker %s failed", child.worker, exc_info=True)
        finally:
            self.exits_in_progress -= 1
        code = child.process.exitcode
        assert code is not None
        if not (self.stopping or (self.burst and code == 0)):
            self.schedule_restart(child, code)
        self.finish_if_idle()

    async def settle_jobs_of(self, child: Child) -> None:
        """Put back or fail whatever job the child left running."""
        code = child.process.exitcode
        assert code is not None
        if self.stopping_now:
            released = await self.in_db(release_jobs_of, child.worker)
            if released:
                logger.info(
                    "put %d interrupted job(s) of %s back in the queue", released, child.worker
                )
        else:
            # Even a clean exit can leave a job behind (the job called sys.exit()).
            reason = child.end_reason or describe_exit(code)
            if code != 0:
                logger.warning("worker %s exited: %s", child.worker, reason)
            if await self.in_db(end_jobs_of, child.worker, reason):
                self.wake()  # a retry may be due now

    def finish_if_idle(self) -> None:
        """End the run once every child is gone and none will be restarted."""
        if self.children or self.restart_at or self.exits_in_progress:
            return
        if self.stopping or self.burst:
            self.done.set()

    def schedule_restart(self, child: Child, code: int) -> None:
        lived = time.monotonic() - child.started_at
        crashed_early = code != 0 and not child.end_reason and not child.ran_a_job
        crashed_early = crashed_early and lived < STABLE_AFTER
        crashes = self.crashes.get(child.slot, 0) + 1 if crashed_early else 0
        self.crashes[child.slot] = crashes
        if self.metrics:
            self.metrics.worker_restarting(child.end_reason, code)
        delay = min(FIRST_RESTART_DELAY * 2**crashes, MAX_RESTART_DELAY)
        if crashes >= 3:
            logger.error(
                "worker slot %d crashed %d times in a row at start (%s); restarting in %.1fs",
                child.slot,
                crashes,
                describe_exit(code),
                delay,
            )
        self.restart_at[child.slot] = time.monotonic() + delay

    # Waking, timeouts and leases

    def wake(self, queue: str | None = None) -> None:
        """Tell idle children to look for jobs (those of ``queue``, if given)."""
        if queue is not None and self.queues is not None and queue not in self.queues:
            return
        for child in self.children.values():
            if child.idle:
                child.idle = False
                self.send(child, Wake())

    def send(self, child: Child, message: Message) -> None:
        with contextlib.suppress(OSError):  # the child is gone; its exit sentinel tells the rest
            child.pipe.send(message)

    async def tick(self) -> None:
        while True:
            now = time.monotonic()
            for slot, when in list(self.restart_at.items()):
                if now >= when:
                    del self.restart_at[slot]
                    self.start(slot)
            for child in list(self.children.values()):
                self.enforce_timeout(child, now)
            if self.stopping and not self.stopping_now and now >= self.deadline:
                logger.warning("shutdown timeout reached: stopping the running jobs")
                self.stop_now()
            await asyncio.sleep(TICK)

    def enforce_timeout(self, child: Child, now: float) -> None:
        if child.ended_at is not None:
            if now - child.ended_at > KILL_GRACE:
                child.process.kill()
            return
        if child.job_id is None or child.job_timeout is None:
            return
        if now - child.job_started_at > child.job_timeout:
            self.end_job(child, f"Job timed out after {child.job_timeout:g}s.", "timed_out")

    def end_job(self, child: Child, reason: str, outcome: str) -> None:
        """Make ``child`` abandon its job and exit (SIGUSR1), and SIGKILL it if it lingers.

        Not SIGTERM: service managers and terminals send that to the whole process group,
        and then children should finish their jobs, not drop them.
        """
        logger.warning("job id=%s on %s: %s Ending the worker.", child.job_id, child.worker, reason)
        child.end_reason = reason
        if self.metrics:
            self.metrics.job_ending(child.slot, outcome)
        child.ended_at = time.monotonic()
        child.ended_job_id = child.job_id
        child.end_request.value = child.job_id or 0
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.process.pid or 0, signal.SIGUSR1)

    async def watch_cancellations(self) -> None:
        """End the workers whose running job an operator cancelled (in the admin)."""
        while True:
            await asyncio.sleep(CANCEL_CHECK_INTERVAL)
            busy = {c.worker: c for c in self.children.values() if c.job_id and not c.ended_at}
            if busy:
                for worker_name, job_id in await self.in_db(jobs_asked_to_cancel, list(busy)):
                    child = busy[worker_name]
                    if child.job_id == job_id and not child.ended_at:  # still that job
                        self.end_job(child, "Cancelled by an operator.", "cancelled")

    async def maintain_leases(self) -> None:
        """Renew our children's leases, stop the runs whose lease was lost, then rescue the
        jobs of hosts that stopped renewing theirs.

        In that order, every time: a host back from a partition or an outage renews its own
        leases before it rescues anyone's. And after being cut off for longer than a lease,
        it rescues nothing for one more lease: the other hosts, cut off too, may not have
        reconnected and renewed theirs yet.
        """
        lease = conf.lease.total_seconds()
        rescue_from = 0.0  # monotonic time from which this host may rescue
        next_cron_check = time.monotonic() + lease
        while True:
            await self.in_db(processes.heartbeat)
            now = time.monotonic()
            if now - self.last_heartbeat > lease:
                logger.warning(
                    "cut off from the database for %.1fs; rescuing no other host's jobs for "
                    "%gs, while they reconnect",
                    now - self.last_heartbeat,
                    lease,
                )
                rescue_from = now + lease
            self.last_heartbeat = now
            await self.renew_our_leases()
            if time.monotonic() >= rescue_from:
                rescued = await self.in_db(rescue_expired_jobs)
                if rescued:
                    if self.metrics:
                        self.metrics.rescued.inc(rescued)
                    self.wake()
            if time.monotonic() >= next_cron_check:  # see ensure_cron_jobs: once per lease
                await self.in_db(ensure_cron_jobs)
                next_cron_check = time.monotonic() + lease
            await asyncio.sleep(lease / 4)

    async def renew_our_leases(self) -> None:
        """Renew the leases of our children's jobs; end the runs whose row is no longer
        leased to them (rescued or ended elsewhere): their outcome could not land anyway."""
        children = list(self.children.values())
        if not children:
            return
        running = {child.job_id for child in children if child.job_id is not None}
        workers = [child.worker for child in children]
        lost = await self.in_db(renew_leases, workers, running, conf.lease)
        for child in list(self.children.values()):
            # Still that job (it may have finished, or the child exited, meanwhile).
            if child.job_id in lost and not child.ended_at:
                reason = "Its lease was lost: another host rescued or ended the job."
                self.end_job(child, reason, "lease_lost")

    @contextlib.contextmanager
    def unless_stopped_by_an_outage(self, what: str) -> Iterator[None]:
        """Give up the database work inside when a signal came while the database is down:
        stopping must not wait for it; running jobs are left to lease rescue."""
        try:
            yield
        except DATABASE_UNAVAILABLE as error:
            if not self.stopping:
                raise
            running = [c.job_id for c in self.children.values() if c.job_id]
            logger.warning(
                "database unavailable during %s while stopping; giving up (jobs left to lease "
                "rescue: %s): %s",
                what,
                running or "none running",
                error,
            )

    async def in_db(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function`` on the database thread, retrying while the database is down
        (until a signal asks runworkers to stop)."""
        return await self.loop.run_in_executor(
            self.db,
            worker.retry_on_db_error,
            lambda: function(*args),
            function.__name__,
            lambda: self.stopping,
        )

    # Stopping

    def on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.stopping:
            logger.warning("%s again: stopping now; running jobs go back to the queue", name)
            self.stop_now()
            return
        logger.info(
            "%s: finishing running jobs (up to %gs), then exiting; send it again to stop now",
            name,
            self.shutdown_timeout,
        )
        self.stopping = True
        self.deadline = time.monotonic() + self.shutdown_timeout
        self.restart_at.clear()
        for child in self.children.values():
            self.send(child, Stop())
        self.finish_if_idle()

    def stop_now(self) -> None:
        self.stopping = self.stopping_now = True
        self.restart_at.clear()
        for child in self.children.values():
            child.process.kill()
        self.finish_if_idle()


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
