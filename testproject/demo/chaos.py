"""The chaos run behind ``manage.py chaos``: a job mix through real ``runworkers`` processes
on a throwaway PostgreSQL or MariaDB server, while children, a parent and the server are
killed; with several hosts (demo/hosts.py: each its own proxy to the server), also a whole
host killed, one cut off for longer than the lease, and one with its clock off."""

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from demo.dbserver import DatabaseServer
from demo.hosts import Proxy, proxy_to, skewed_clock

MANAGE = Path(__file__).resolve().parent.parent / "manage.py"
DATABASE = "quickworker_chaos"
LEASE = 5  # seconds: a short lease keeps a run short, each rescue waiting about this long
SETTINGS = {"POLL_INTERVAL": 0.2, "LEASE": LEASE}
CUT = 2 * LEASE  # how long a partition lasts: long enough for the others to rescue its jobs
SKEW = 300  # seconds the last host's clock is ahead, with several hosts


@dataclass
class Report:
    submitted: int = 0
    succeeded: int = 0
    lost: int = 0
    run_more_than_once: int = 0
    in_flight_at_faults: int = 0  # jobs running on what was killed or cut off
    longest_orphaned_s: float = 0.0
    hosts: int = 1
    clock_skew_s: int = 0
    faults: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Fault:
    """One fault being recovered from: done once every job it caught in flight has left
    ``running`` (finished elsewhere, rescued, or failed by its parent) and jobs run again."""

    name: str
    in_flight: set[int]
    executions_before: int
    moment: float = field(default_factory=time.monotonic)
    figures: dict[str, Any] = field(default_factory=dict)


class Host:
    """A runworkers tree standing for a host of its own: the environment (database URL,
    clock) it runs with, and the proxy it reaches the server through (none on one host)."""

    def __init__(self, env: dict[str, str], workers: int, proxy: Proxy | None) -> None:
        self.env = env
        self.workers = workers
        self.proxy = proxy
        self.process = self.start()

    def start(self) -> "subprocess.Popen[bytes]":
        command = [sys.executable, str(MANAGE), "runworkers", "--workers", str(self.workers)]
        return subprocess.Popen(
            [*command, "--log-level", "error"], env=self.env, start_new_session=True
        )

    def worker_pids(self) -> set[int]:
        return {
            child.pid
            for child in psutil.Process(self.process.pid).children()
            if "spawn_main" in " ".join(child.cmdline())
        }

    def replace_parent(self) -> None:
        """SIGKILL the parent alone (its children notice and exit), start a new one."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = self.start()

    def kill_and_restart(self) -> None:
        """SIGKILL the whole tree at once, as a host dies; then boot it again."""
        self.kill()
        self.process = self.start()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


class Chaos:
    """One run: submit, start the hosts, inflict faults, wait for the queue to drain, count."""

    def __init__(
        self,
        cluster: DatabaseServer,
        jobs: int,
        workers: int,
        child_kill_every: float,
        hosts: int = 1,
    ) -> None:
        self.cluster = cluster
        self.jobs = jobs
        self.workers = workers
        self.child_kill_every = child_kill_every
        self.host_count = hosts
        self.hosts: list[Host] = []
        self.report = Report(submitted=jobs, hosts=hosts, clock_skew_s=SKEW if hosts > 1 else 0)
        self.orphaned_since: dict[int, float] = {}
        self.fault_in_progress: Fault | None = None
        self.env = {
            **os.environ,
            "DATABASE_URL": cluster.url(DATABASE),
            "QUICKWORKER": json.dumps(SETTINGS),
        }

    def manage(self, *args: str) -> None:
        subprocess.run([sys.executable, str(MANAGE), *args], env=self.env, check=True)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            with contextlib.closing(self.cluster.connect(DATABASE)) as connection:
                cursor = connection.cursor()  # psycopg's and MySQLdb's alike
                cursor.execute(sql)
                return list(cursor.fetchall())
        except Exception:  # the server is down for a moment: the caller samples again
            return []

    def run(self) -> Report:
        self.manage("migrate", "--verbosity", "0")
        self.manage(
            "shell",
            "-c",
            "from django_quickworker import submit_jobs\n"
            "import random\n"
            f"submit_jobs([{{'tag': f'chaos:{{i}}', 'type': 'demo.record', 'max_attempts': 10, "
            f"'data': {{'seconds': random.uniform(0, 0.2)}}}} for i in range({self.jobs})])",
        )
        with contextlib.ExitStack() as proxies:
            if self.host_count == 1:
                self.hosts = [Host(self.env, self.workers, None)]
            else:
                for index in range(self.host_count):
                    proxy = proxies.enter_context(proxy_to(self.cluster.url(DATABASE)))
                    clock = skewed_clock(SKEW) if index == self.host_count - 1 else {}
                    env = {**self.env, "DATABASE_URL": proxy.url(self.cluster.url(DATABASE))}
                    self.hosts.append(Host({**env, **clock}, self.workers, proxy))
            try:
                self.inflict_faults()
                for host in self.hosts:
                    host.process.send_signal(signal.SIGTERM)
                for host in self.hosts:
                    exit_code = host.process.wait(60)
                    self.report.faults.append(
                        {"fault": "SIGTERM at the end", "exit_code": exit_code}
                    )
            finally:
                for host in self.hosts:
                    host.kill()
        self.count()
        return self.report

    def plan(self) -> list[tuple[float, str, Callable[[], None]]]:
        """When (as a share of the jobs done) to inflict each one-off fault, and how."""
        faults = [
            (0.3, "parent killed, new runworkers", lambda: self.kill(whole_host=False)),
            (0.45, "server restarted", self.restart_server),
        ]
        if self.host_count > 1:
            faults += [
                (0.15, "host killed (SIGKILL of its tree)", lambda: self.kill(whole_host=True)),
                (0.6, f"host cut off for {CUT} s", self.partition),
            ]
        return sorted(faults, key=lambda fault: fault[0])

    def inflict_faults(self) -> None:
        plan = self.plan()
        started = time.monotonic()
        next_child_kill = started + self.child_kill_every
        while self.pending() != 0:
            now = time.monotonic()
            if now - started > 600:
                raise RuntimeError("the queue did not drain within 10 minutes")
            if plan and self.executions() / self.jobs >= plan[0][0]:
                _, name, act = plan.pop(0)
                self.fault(name, act)
            elif now >= next_child_kill and self.executions() > 0:  # once workers are up
                next_child_kill = now + self.child_kill_every
                self.fault("child killed", self.kill_a_child)
            self.watch()
            time.sleep(0.1)

    def fault(self, name: str, act: Callable[[], None]) -> None:
        """Inflict a fault and wait (watching) until the jobs it caught in flight are over."""
        self.fault_in_progress = fault = Fault(name, self.running_ids(), self.executions())
        act()
        while self.fault_in_progress is not None and time.monotonic() - fault.moment < 120:
            self.watch()
            time.sleep(0.05)
        self.report.in_flight_at_faults += len(fault.in_flight)
        self.report.faults.append(
            {"fault": name, "in_flight": len(fault.in_flight), **fault.figures}
        )

    def running_ids(self, pids: set[int] | None = None) -> set[int]:
        """The running jobs (of the workers ``pids``, or all)."""
        rows = self.query("SELECT id, worker FROM quickworker_workerjob WHERE status = 'running'")
        return {job_id for job_id, worker in rows if pids is None or _pid(worker) in pids}

    def caught(self, pids: set[int]) -> None:
        """The fault in progress catches the jobs of the workers ``pids`` only."""
        assert self.fault_in_progress is not None
        self.fault_in_progress.in_flight = self.running_ids(pids)

    def caught_busy(self, host: Host) -> None:
        """Wait (up to 10 s) until ``host`` runs jobs, so that the fault catches some."""
        deadline = time.monotonic() + 10
        while not self.running_ids(host.worker_pids()) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.caught(host.worker_pids())
        assert self.fault_in_progress is not None
        self.fault_in_progress.moment = time.monotonic()

    def kill(self, whole_host: bool) -> None:
        """Kill the first host's parent, or its whole tree; then start it again."""
        host = self.hosts[0]
        self.caught_busy(host)
        if whole_host:
            host.kill_and_restart()
        else:
            host.replace_parent()

    def kill_a_child(self) -> None:
        """SIGKILL a worker that runs a job (any worker, if none does)."""
        workers: set[int] = set().union(*(host.worker_pids() for host in self.hosts))
        rows = self.query("SELECT worker FROM quickworker_workerjob WHERE status = 'running'")
        busy = workers.intersection(_pid(worker) for (worker,) in rows)
        victim = {random.choice(sorted(busy or workers))} if workers else set()
        self.caught(victim)
        for pid in victim:
            os.kill(pid, signal.SIGKILL)

    def restart_server(self) -> None:
        self.cluster.stop("fast")
        time.sleep(1)
        self.cluster.start()

    def partition(self) -> None:
        """Cut the second host off for CUT seconds, then let it back; time its return (its
        next heartbeat; its jobs' rescue by the others is the recovery)."""
        host, fault = self.hosts[1], self.fault_in_progress
        assert host.proxy is not None and fault is not None
        self.caught_busy(host)
        moment = time.monotonic()
        host.proxy.cut()
        while time.monotonic() - moment < CUT:
            self.watch()
            time.sleep(0.05)
        beat = self.heartbeat_of(host)
        host.proxy.restore()
        restored = time.monotonic()
        while self.heartbeat_of(host) == beat:
            if time.monotonic() - restored > 60:
                raise RuntimeError("the cut-off host did not come back within 60 s")
            self.watch()
            time.sleep(0.05)
        fault.figures["back_s"] = time.monotonic() - restored

    def heartbeat_of(self, host: Host) -> object:
        rows = self.query(
            "SELECT heartbeat FROM quickworker_workerprocess "
            f"WHERE name LIKE '%:{host.process.pid}:%'"
        )
        return rows[0][0] if rows else None

    def watch(self) -> None:
        """Track how long each running job's worker has been dead, and whether the fault in
        progress is over."""
        now = time.monotonic()
        rows = self.query("SELECT id, worker FROM quickworker_workerjob WHERE status = 'running'")
        orphans = {job_id for job_id, worker in rows if not _alive(worker)}
        for job_id in orphans:
            since = self.orphaned_since.setdefault(job_id, now)
            self.report.longest_orphaned_s = max(self.report.longest_orphaned_s, now - since)
        for job_id in set(self.orphaned_since) - orphans:
            del self.orphaned_since[job_id]
        fault = self.fault_in_progress
        # While the server is down, rows is empty and executions() is 0: not over yet.
        running = {job_id for job_id, _ in rows}
        if fault and not fault.in_flight & running and self.executions() > fault.executions_before:
            fault.figures["recovery_s"] = now - fault.moment
            self.fault_in_progress = None

    def pending(self) -> int:
        rows = self.query(
            "SELECT count(*) FROM quickworker_workerjob WHERE type = 'demo.record' "
            "AND status IN ('scheduled', 'running')"
        )
        return rows[0][0] if rows else -1

    def executions(self, where: str = "") -> int:
        rows = self.query(f"SELECT count(*) FROM demo_execution {where}")
        return rows[0][0] if rows else 0

    def count(self) -> None:
        succeeded = self.query(
            "SELECT count(DISTINCT tag) FROM quickworker_workerjob "
            "WHERE type = 'demo.record' AND status = 'succeeded'"
        )[0][0]
        self.report.succeeded = succeeded
        self.report.lost = self.jobs - succeeded
        self.report.run_more_than_once = self.query(
            "SELECT count(*) FROM (SELECT j.tag FROM demo_execution e "
            "JOIN quickworker_workerjob j ON j.id = e.job_id GROUP BY j.tag "
            "HAVING count(*) > 1) AS repeated"
        )[0][0]


def _pid(worker: str) -> int | None:
    """The PID in a worker name, host:pid:token:slot."""
    try:
        return int(worker.split(":")[1])
    except (IndexError, ValueError):
        return None


def _alive(worker: str) -> bool:
    """Whether the worker process named host:pid:token:slot is still running (here)."""
    pid = _pid(worker)
    try:
        return pid is not None and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
