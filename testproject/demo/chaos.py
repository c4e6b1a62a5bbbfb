"""The chaos run behind ``manage.py chaos``: a job mix through real ``runworkers`` processes
on a throwaway PostgreSQL or MariaDB server, while children, the parent and the server are
killed."""

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

from demo.mariadbserver import MariaDBServer
from demo.pgcluster import Cluster

MANAGE = Path(__file__).resolve().parent.parent / "manage.py"
DATABASE = "quickworker_chaos"
SETTINGS = {"POLL_INTERVAL": 0.2, "LEASE": 10}


@dataclass
class Report:
    submitted: int = 0
    succeeded: int = 0
    lost: int = 0
    run_more_than_once: int = 0
    running_when_killed: int = 0
    longest_orphaned_s: float = 0.0
    faults: list[dict[str, Any]] = field(default_factory=list)


class Chaos:
    """One run: submit, start workers, inflict faults, wait for the queue to drain, count."""

    def __init__(
        self, cluster: Cluster | MariaDBServer, jobs: int, workers: int, child_kill_every: float
    ) -> None:
        self.cluster = cluster
        self.jobs = jobs
        self.workers = workers
        self.child_kill_every = child_kill_every
        self.report = Report(submitted=jobs)
        self.orphaned_since: dict[int, float] = {}
        self.env = {
            **os.environ,
            "DATABASE_URL": cluster.url(DATABASE),
            "QUICKWORKER": json.dumps(SETTINGS),
        }

    def manage(self, *args: str) -> None:
        subprocess.run([sys.executable, str(MANAGE), *args], env=self.env, check=True)

    def runworkers(self) -> subprocess.Popen[bytes]:
        command = [sys.executable, str(MANAGE), "runworkers", "--workers", str(self.workers)]
        return subprocess.Popen(
            [*command, "--log-level", "error"], env=self.env, start_new_session=True
        )

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
        self.parent = self.runworkers()
        started = time.monotonic()
        plan = {"parent": 0.3, "server": 0.6}  # when, as a share of the jobs done
        next_child_kill = started + self.child_kill_every
        while self.pending() != 0:
            now = time.monotonic()
            if now - started > 600:
                raise RuntimeError("the queue did not drain within 10 minutes")
            done = self.executions() / self.jobs
            if "parent" in plan and done >= plan["parent"]:
                del plan["parent"]
                self.fault("parent killed, new runworkers", self.replace_parent)
            elif "server" in plan and done >= plan["server"]:
                del plan["server"]
                self.fault("server restarted", self.restart_server)
            elif now >= next_child_kill:
                next_child_kill = now + self.child_kill_every
                self.fault("child killed", self.kill_a_child)
            self.watch_orphans()
            time.sleep(0.1)
        os.kill(self.parent.pid, signal.SIGTERM)
        exit_code = self.parent.wait(60)
        self.report.faults.append({"fault": "SIGTERM at the end", "exit_code": exit_code})
        self.count()
        return self.report

    def fault(self, name: str, act: Callable[[], None]) -> None:
        running = len(self.query("SELECT id FROM quickworker_workerjob WHERE status = 'running'"))
        before = self.executions()
        moment = time.monotonic()
        act()
        self.report.running_when_killed += running
        while self.executions() <= before and time.monotonic() - moment < 120:
            self.watch_orphans()
            time.sleep(0.05)
        recovery = time.monotonic() - moment
        self.report.faults.append({"fault": name, "running": running, "recovery_s": recovery})

    def replace_parent(self) -> None:
        os.kill(self.parent.pid, signal.SIGKILL)
        self.parent.wait()
        self.parent = self.runworkers()

    def kill_a_child(self) -> None:
        children = [
            child
            for child in psutil.Process(self.parent.pid).children()
            if "spawn_main" in " ".join(child.cmdline())
        ]
        if children:
            random.choice(children).kill()

    def restart_server(self) -> None:
        self.cluster.stop("fast")
        time.sleep(1)
        self.cluster.start()

    def watch_orphans(self) -> None:
        """Track how long each running job's worker has been dead."""
        now = time.monotonic()
        rows = self.query("SELECT id, worker FROM quickworker_workerjob WHERE status = 'running'")
        orphans = {job_id for job_id, worker in rows if not _alive(worker)}
        for job_id in orphans:
            since = self.orphaned_since.setdefault(job_id, now)
            self.report.longest_orphaned_s = max(self.report.longest_orphaned_s, now - since)
        for job_id in set(self.orphaned_since) - orphans:
            del self.orphaned_since[job_id]

    def pending(self) -> int:
        rows = self.query(
            "SELECT count(*) FROM quickworker_workerjob WHERE type = 'demo.record' "
            "AND status IN ('scheduled', 'running')"
        )
        return rows[0][0] if rows else -1

    def executions(self) -> int:
        rows = self.query("SELECT count(*) FROM demo_execution")
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


def _alive(worker: str) -> bool:
    """Whether the worker process named host:pid:slot is still running (on this host)."""
    try:
        process = psutil.Process(int(worker.split(":")[1]))
        return process.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, IndexError, ValueError):
        return False
