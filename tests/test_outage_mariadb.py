"""End to end: MariaDB restarts under a running ``runworkers`` (as test_outage does for
PostgreSQL): the parent and its children reconnect and carry on; no job is lost, and only
jobs that were running at that moment may run again.

The test never touches the shared server: it starts a throwaway one of its own.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from demo.mariadbserver import MariaDBServer, throwaway_mariadb
from demo.models import Execution
from demo.pgcluster import MissingServer
from django_quickworker.models import WorkerJob
from tests.conftest import MANAGE, REPO, Runworkers, wait_until

pytestmark = pytest.mark.heavy  # several runworkers, outages: see conftest

JOBS = 200
WORKERS = 2
TAGS = [f"outage:{i}" for i in range(JOBS)]
DATABASE = "quickworker_outage"
OUTAGE = 1.0  # seconds the server stays down, so that every process sees it gone
SUBMIT = (
    "from django_quickworker import submit_jobs\n"
    f"submit_jobs([{{'tag': tag, 'type': 'demo.record', 'data': {{'seconds': 0.02}}, "
    f"'max_attempts': 3}} for tag in {TAGS!r}])\n"
)
OURS = f"{WorkerJob._meta.db_table} WHERE type = 'demo.record'"
UNFINISHED = f"SELECT count(*) FROM {OURS} AND status IN ('scheduled', 'running')"


@pytest.fixture
def server() -> Iterator[MariaDBServer]:
    try:
        with throwaway_mariadb(DATABASE) as mariadb:
            yield mariadb
    except MissingServer as error:
        pytest.fail(str(error))


def manage(server: MariaDBServer, *args: str) -> None:
    environment = {**os.environ, "DATABASE_URL": server.url(DATABASE)}
    environment.pop("TEST_DATABASE_NAME", None)
    result = subprocess.run(
        [sys.executable, str(MANAGE), *args],
        env=environment,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"manage.py {args[0]} failed:\n{result.stdout}{result.stderr}"


def query(server: MariaDBServer, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(server.connect(DATABASE)) as connection:
        cursor = connection.cursor()
        cursor.execute(sql)
        return list(cursor.fetchall())


def count(server: MariaDBServer, sql: str) -> int:
    """A count from the throwaway database, or -1 while it cannot be reached."""
    try:
        return int(query(server, sql)[0][0])
    except Exception:  # MySQLdb's errors while the server is down
        return -1


def wait_for(
    runner: Runworkers, condition: Callable[[], object], what: str, timeout: float = 30.0
) -> None:
    try:
        wait_until(condition, timeout=timeout, what=what)
    except AssertionError as error:
        raise AssertionError(f"{error}\nrunworkers log:\n{runner.output}") from None


@pytest.mark.mysql
def test_a_mariadb_restart_loses_no_job(
    server: MariaDBServer, start_runworkers: Callable[..., Runworkers]
) -> None:
    manage(server, "migrate", "--verbosity", "0")
    manage(server, "shell", "--no-imports", "-c", SUBMIT)
    assert count(server, UNFINISHED) == JOBS
    runner = start_runworkers(
        "--workers",
        str(WORKERS),
        env={
            "DATABASE_URL": server.url(DATABASE),
            "QUICKWORKER": '{"POLL_INTERVAL": 0.2, "LEASE": 6}',
        },
    )
    executions_table = Execution._meta.db_table
    wait_for(
        runner,
        lambda: count(server, f"SELECT count(*) FROM {executions_table}") >= 20,
        "the workers to run some jobs",
    )

    children = {child.pid for child in runner.children()}
    assert len(children) == WORKERS, runner.output
    server.stop()
    time.sleep(OUTAGE)
    assert runner.process.poll() is None, f"runworkers died with the database:\n{runner.output}"
    server.start()
    assert count(server, UNFINISHED) > 0, "every job had finished before the restart"

    wait_for(runner, lambda: count(server, UNFINISHED) == 0, "the queue to drain", 90)
    assert runner.process.poll() is None, f"runworkers crashed after the restart:\n{runner.output}"
    assert {child.pid for child in runner.children()} == children, runner.output
    assert "database unavailable" in runner.output, runner.output

    rows = query(server, f"SELECT id, tag, status, attempt, rescheduled_from_id FROM {OURS}")
    executions = [job_id for (job_id,) in query(server, f"SELECT job_id FROM {executions_table}")]
    # Every tag's chain (its first row and the retries linked to it) ends in one success.
    chains: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in sorted(rows):
        chains[row[1]].append(row)
    assert sorted(chains) == sorted(TAGS)
    for tag, chain in chains.items():
        statuses = [row[2] for row in chain]
        assert statuses.count("succeeded") == 1 and statuses[-1] == "succeeded", (tag, chain)
    # Every success ran; only the jobs in flight at the restart (one per worker) may have
    # run more than once.
    executed = Counter(executions)
    assert all(executed[row[0]] >= 1 for row in rows if row[2] == "succeeded")
    by_id = {row[0]: row[1] for row in rows}
    runs_by_tag = Counter(by_id[job_id] for job_id in executions)
    assert sum(1 for runs in runs_by_tag.values() if runs > 1) <= WORKERS, runs_by_tag

    runner.send(signal.SIGTERM)
    assert runner.wait(timeout=30) == 0, runner.output
