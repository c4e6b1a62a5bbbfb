"""The supervisor: the ``runworkers`` parent that starts, watches and stops the workers.

It runs one asyncio loop that reads every child's pipe and exit sentinel, watches for new
jobs (PostgreSQL's NOTIFY, or the database's replacement for it), renews the leases of its
children's jobs, rescues jobs of dead hosts, ends children that overrun a job's timeout,
restarts dead children with backoff and drains them on SIGTERM/SIGINT. Database work runs on
one helper thread, off the loop.
"""

import asyncio
import contextlib
import logging
import multiprocessing
import signal
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from django.db import router

from django_quickworker import processes
from django_quickworker.children import STABLE_AFTER, Child, describe_exit, restart_delay
from django_quickworker.conf import conf
from django_quickworker.cron import ensure_cron_jobs
from django_quickworker.databases import database
from django_quickworker.leases import maintain_leases, settle_jobs_of, watch_cancellations
from django_quickworker.models import WorkerJob
from django_quickworker.outages import DatabaseThread
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
    route,
)
from django_quickworker.relay import Relay
from django_quickworker.wakeups import WakeUps

if TYPE_CHECKING:
    from django_quickworker.embedded import EmbeddedServer
    from django_quickworker.supervisor_metrics import SupervisorMetrics

logger = logging.getLogger(__name__)


TICK = 0.1  # seconds between checks of timeouts, restarts and the shutdown deadline
IDLE_TICK = 1.0  # seconds between those checks while there is nothing to time
MAX_TASK_FAILURES = 5  # failures in a row after which a supervisor task cannot go on
TASK_RESTART_DELAY = 1.0  # seconds before a failed supervisor task starts again


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
        self.timing = asyncio.Event()  # something for the tick to time began: see until_next_tick
        self.db = DatabaseThread(lambda: self.stopping, self.running_jobs)
        self.in_db = self.db.run
        self.wakeups = WakeUps(self.children.values, queues, lambda child: child.send(Wake()))

    def run(self) -> int:
        """Supervise until stopped; return the exit code."""
        previous = route.transport
        try:
            return asyncio.run(self.main())
        finally:
            route.install(previous)

    async def main(self) -> int:
        self.loop = asyncio.get_running_loop()
        self.done = asyncio.Event()
        self.exits_in_progress = 0
        self.exit_tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        self.relay = Relay(self.loop)
        route.install(self.relay)  # what this process itself says about jobs goes out with it
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self.on_signal, signum)
        with self.db.unless_stopped_by_an_outage("start"):
            # Registered first: what this runworkers declares counts in the cron check.
            await self.in_db(processes.register, self.workers, self.queues)
            await self.in_db(ensure_cron_jobs)
        if not self.stopping:  # a signal may have come during the cron check
            for slot in range(self.workers):
                self.start(slot)
        running = [
            self.loop.create_task(keep_running(self, name, task), name=name)
            for name, task in long_lived_tasks(self).items()
        ]
        if self.monitor_address:
            from django_quickworker.monitor import Monitor  # needs prometheus_client, an extra

            monitor = Monitor(self, *self.monitor_address)
            self.metrics = monitor.metrics
            running.append(self.loop.create_task(monitor.serve()))
        web = self.loop.create_task(self.web_server.serve()) if self.web_server else None
        await self.done.wait()
        if self.web_server and web:
            self.web_server.should_exit = True
            await web
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        with self.db.unless_stopped_by_an_outage("exit"):
            await self.in_db(processes.unregister)
        self.db.shutdown()
        logger.info("runworkers stopped")
        return self.exit_code

    # Children

    def start(self, slot: int) -> None:
        child = Child.spawn(self.spawn, slot, self.queues, self.burst, self.log_level)
        self.children[slot] = child
        self.loop.add_reader(child.pipe.fileno(), self.on_message, child)
        self.loop.add_reader(child.process.sentinel, self.on_exit, child)
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
                self.wakeups.went_idle(child)
            case JobStarted():
                self.timing.set()
                child.job_began(message)
                if self.metrics:
                    self.metrics.job_started(child.slot, message)
            case JobFinished():
                child.job_ended(message)
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
            with self.db.unless_stopped_by_an_outage(f"the exit of worker {child.worker}"):
                await settle_jobs_of(self, child)
        except Exception:  # the slot must be restarted whatever happened to its jobs
            logger.error("settling the jobs of worker %s failed", child.worker, exc_info=True)
        finally:
            self.exits_in_progress -= 1
        code = child.process.exitcode
        assert code is not None
        if not (self.stopping or (self.burst and code == 0)):
            self.schedule_restart(child, code)
        self.finish_if_idle()

    def finish_if_idle(self) -> None:
        """End the run once every child is gone and none will be restarted."""
        if self.children or self.restart_at or self.exits_in_progress:
            return
        if self.stopping or self.burst:
            self.done.set()

    def schedule_restart(self, child: Child, code: int) -> None:
        crashes = self.crashes.get(child.slot, 0) + 1 if child.crashed_early(code) else 0
        self.crashes[child.slot] = crashes
        if self.metrics:
            self.metrics.worker_restarting(child.end_reason, code)
        delay = restart_delay(crashes)
        if crashes >= 3:
            logger.error(
                "worker slot %d crashed %d times in a row at start (%s); restarting in %.1fs",
                child.slot,
                crashes,
                describe_exit(code),
                delay,
            )
        self.restart_at[child.slot] = time.monotonic() + delay
        self.timing.set()

    # Timeouts

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
            await self.until_next_tick()

    async def until_next_tick(self) -> None:
        """Sleep a TICK while there is something to time (a job, a restart, a child told to
        end, a drain), else up to IDLE_TICK, until ``timing`` says there is: an idle pool
        then wakes its parent once a second, not ten times."""
        self.timing.clear()
        children = self.children.values()
        if self.stopping or self.restart_at or any(c.job_id or c.ended_at for c in children):
            await asyncio.sleep(TICK)
            return
        with contextlib.suppress(asyncio.TimeoutError):  # not TimeoutError before 3.11
            await asyncio.wait_for(self.timing.wait(), IDLE_TICK)

    def enforce_timeout(self, child: Child, now: float) -> None:
        if child.lingers(now):
            child.process.kill()
        elif child.ended_at is None and child.overran(now):
            self.end_job(child, f"Job timed out after {child.job_timeout:g}s.", "timed_out")

    def end_job(self, child: Child, reason: str, outcome: str) -> None:
        """Make ``child`` abandon its job and exit (see Child.end)."""
        logger.warning("job id=%s on %s: %s Ending the worker.", child.job_id, child.worker, reason)
        if self.metrics:
            self.metrics.job_ending(child.slot, outcome)
        child.end(reason)
        self.timing.set()

    def running_jobs(self) -> list[int]:
        return [child.job_id for child in self.children.values() if child.job_id]

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
        self.timing.set()
        self.restart_at.clear()
        for child in self.children.values():
            child.send(Stop())
        self.finish_if_idle()

    def stop_now(self) -> None:
        self.stopping = self.stopping_now = True
        self.restart_at.clear()
        for child in self.children.values():
            child.process.kill()
        self.finish_if_idle()


def long_lived_tasks(supervisor: "Supervisor") -> dict[str, Callable[[], Awaitable[None]]]:
    """The parent's loops besides reading its children, by name, for keep_running."""
    db = database(router.db_for_write(WorkerJob))
    return {
        "tick": supervisor.tick,
        "maintain_leases": lambda: maintain_leases(supervisor),
        "watch_cancellations": lambda: watch_cancellations(supervisor),
        "relay": supervisor.relay.run,
        "watch_for_jobs": lambda: db.watch_for_jobs(supervisor.wakeups.wake, supervisor.in_db),
        "watch_due_times": lambda: supervisor.wakeups.watch_due_times(supervisor.in_db),
    }


async def keep_running(
    supervisor: "Supervisor", name: str, task: Callable[[], Awaitable[None]]
) -> None:
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
            return  # it has nothing (more) to do, as the wake-up watch of an in-memory SQLite
        except Exception as error:
            if supervisor.stopping:  # e.g. the database went away: nothing left to keep up
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
                supervisor.exit_code = 1
                supervisor.stop_now()
                return
            logger.error(
                "supervisor task %s failed; restarting it in %gs",
                name,
                TASK_RESTART_DELAY,
                exc_info=True,
            )
        await asyncio.sleep(TASK_RESTART_DELAY)
