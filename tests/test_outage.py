"""End to end: the database server (PostgreSQL or MariaDB) restarts under a running
``runworkers``.

The requirement: the parent and its children reconnect with backoff and carry on; no job is
lost, and only jobs that were running at that moment may run again.

The tests never touch the shared server: each starts a throwaway one of the run's database
(demo/dbserver.py), migrates a database in it, and restarts that server while the workers are
busy.
"""

import contextlib
import itertools
import re
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import psutil
import pytest
from django.db import connection

from demo.dbserver import DatabaseServer, MissingServer, throwaway
from demo.mariadbserver import MariaDBServer
from demo.models import Execution
from demo.pgcluster import PostgreSQLServer
from django_quickworker.models import WorkerJob
from tests.conftest import Runworkers, run_manage, wait_until

pytestmark = pytest.mark.heavy  # several runworkers, outages: see conftest

JOBS = 200
WORKERS = 2
TAGS = [f"outage:{i}" for i in range(JOBS)]
DATABASE = "quickworker_outage"
OUTAGE = 1.0  # seconds the server stays down, so that every process sees it gone

# Submitted through the public API, exactly as a project would.
SUBMIT = (
    "from django_quickworker import submit_jobs\n"
    f"submit_jobs([{{'tag': tag, 'type': 'demo.record', 'data': {{'seconds': 0.02}}, "
    f"'max_attempts': 3}} for tag in {TAGS!r}])\n"
)


Server = DatabaseServer


@pytest.fixture
def cluster() -> Iterator[Server]:
    """A server of our own, of the run's database (PostgreSQL or MariaDB), on a free port;
    stopped and deleted at teardown."""
    kind = MariaDBServer if connection.vendor == "mysql" else PostgreSQLServer
    try:
        with throwaway(kind, DATABASE) as server:
            yield server
    except MissingServer as error:
        pytest.fail(str(error))


def manage(cluster: Server, *args: str) -> None:
    """Run ``manage.py`` on the throwaway database."""
    result = run_manage(*args, timeout=120, env={"DATABASE_URL": cluster.url(DATABASE)})
    assert result.returncode == 0, f"manage.py {args[0]} failed:\n{result.stdout}{result.stderr}"


def wait_for(
    runner: Runworkers, condition: Callable[[], object], what: str, timeout: float = 30.0
) -> None:
    """``wait_until``, failing with the runworkers log as it is at the end of the wait."""
    try:
        wait_until(condition, timeout=timeout, what=what)
    except AssertionError as error:
        raise AssertionError(f"{error}\nrunworkers log:\n{runner.output}") from None


def query(cluster: Server, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(cluster.connect(DATABASE)) as connection:
        cursor = connection.cursor()  # psycopg's and MySQLdb's alike
        cursor.execute(sql)
        return list(cursor.fetchall())


def count(cluster: Server, sql: str) -> int:
    """A count from the throwaway database, or -1 while it cannot be reached."""
    try:
        return int(query(cluster, sql)[0][0])
    except cluster.connection_errors:
        return -1


JOB_TABLE = WorkerJob._meta.db_table
EXECUTION_TABLE = Execution._meta.db_table
# Only the demo jobs: the built-in cron jobs always keep one scheduled row of their own.
OURS = f"{JOB_TABLE} WHERE type = 'demo.record'"
UNFINISHED = f"SELECT count(*) FROM {OURS} AND status IN ('scheduled', 'running')"
LISTENING = "SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'LISTEN %'"


def server_connections(pid: int, port: int) -> int:
    """How many open TCP connections process ``pid`` has to the server on ``port``."""
    process = psutil.Process(pid)
    list_connections = getattr(process, "net_connections", None) or process.connections
    return sum(
        1
        for connection in list_connections(kind="tcp")
        if connection.raddr
        and connection.raddr[1] == port
        and connection.status == psutil.CONN_ESTABLISHED
    )


@pytest.mark.postgresql
@pytest.mark.mysql
def test_a_restart_loses_no_job(
    cluster: Server, start_runworkers: Callable[..., Runworkers]
) -> None:
    manage(cluster, "migrate", "--verbosity", "0")
    manage(cluster, "shell", "--no-imports", "-c", SUBMIT)
    assert count(cluster, UNFINISHED) == JOBS

    # A short lease makes the parent use its database thread (lease renewal) every 1.5 s, so
    # that connection meets the restart within the test too (at the default 60 s lease it
    # would wait 15 s). The outage (~2 s) plus the reconnect backoff stays well inside 6 s,
    # and the parent renews its children's leases before it rescues expired ones.
    runner = start_runworkers(
        "--workers",
        str(WORKERS),
        env={
            "DATABASE_URL": cluster.url(DATABASE),
            "QUICKWORKER": '{"POLL_INTERVAL": 0.2, "LEASE": 6}',
        },
    )
    wait_for(
        runner,
        lambda: count(cluster, f"SELECT count(*) FROM {EXECUTION_TABLE}") >= 20,
        "the workers to run some jobs",
    )

    # The restart: a fast shutdown ends every connection (rolling back whatever they were
    # doing), then the server stays down for a moment before it comes back.
    running_before = count(cluster, f"SELECT count(*) FROM {OURS} AND status = 'running'")
    children = {child.pid for child in runner.children()}
    assert len(children) == WORKERS, runner.output
    cluster.stop("fast")
    outage_started = time.monotonic()
    time.sleep(OUTAGE)
    assert runner.process.poll() is None, f"runworkers died with the database:\n{runner.output}"
    cluster.start()
    restarted = datetime.now(timezone.utc)
    assert count(cluster, UNFINISHED) > 0, (
        "every job had finished before the restart, so it proved nothing; submit more jobs"
    )

    wait_for(runner, lambda: count(cluster, UNFINISHED) == 0, "the queue to drain", 90)
    recovery = time.monotonic() - outage_started

    # Everyone reconnected. Every connection to this server was opened after the restart, so:
    # each child (the same processes as before: none died over it) is connected again...
    assert runner.process.poll() is None, f"runworkers crashed after the restart:\n{runner.output}"
    assert {child.pid for child in runner.children()} == children, runner.output
    wait_for(
        runner,
        lambda: all(server_connections(pid, cluster.port) >= 1 for pid in children),
        "every child to reconnect",
    )
    # ...and so is the parent: its database thread, and on PostgreSQL its LISTEN connection.
    listens = connection.vendor == "postgresql"
    wait_for(
        runner,
        lambda: server_connections(runner.process.pid, cluster.port) >= 1 + listens,
        "the parent's database thread to reconnect",
        15,
    )
    log = runner.output
    if listens:
        wait_for(runner, lambda: count(cluster, LISTENING) >= 1, "the parent to LISTEN again", 15)
        assert "LISTEN connection lost" in log, log
    assert "database unavailable during " in log, log
    assert not re.search(r"worker \S+ (exited|failed): ", log), log

    rows = query(
        cluster, f"SELECT id, tag, status, attempt, rescheduled_from_id FROM {OURS} ORDER BY id"
    )
    executions = query(cluster, f"SELECT job_id, started FROM {EXECUTION_TABLE} ORDER BY id")

    # No job lost: every submitted tag's chain (its first row and the retries linked to it by
    # rescheduled_from) ends in exactly one success; nothing is left scheduled or running.
    by_id = {row[0]: row for row in rows}
    chains: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        chains[row[1]].append(row)
    assert sorted(chains) == sorted(TAGS)
    assert {row[2] for row in rows} <= {"succeeded", "failed"}, rows
    for tag, chain in chains.items():
        statuses = [row[2] for row in chain]
        assert statuses.count("succeeded") == 1, (tag, chain)
        assert statuses[-1] == "succeeded", (tag, chain)
        assert chain[0][4] is None, (tag, chain)
        for previous, retry in itertools.pairwise(chain):
            # A retry follows a failed run of the same tag, and counts as one more attempt.
            assert retry[4] == previous[0], (tag, chain)
            assert previous[2] == "failed" and retry[3] == previous[3] + 1, (tag, chain)

    # Every success ran: its row has the execution the job itself recorded; no row ran twice.
    executed = Counter(job_id for job_id, _ in executions)
    assert set(executed) <= set(by_id), "an execution of a row that is not ours"
    assert all(executed[row[0]] >= 1 for row in rows if row[2] == "succeeded")
    assert all(times == 1 for times in executed.values()), executed.most_common(3)

    # Only jobs that were running at the restart may run again. Each worker runs one job at a
    # time and cannot claim another while the server is down, so at most one job per worker
    # is in flight across the outage: at most WORKERS tags may have been retried, or have run
    # more than once (a run that recorded its execution, then failed on the dead connection
    # and was retried), and such a tag's first run started before the server came back.
    runs_by_tag: dict[str, list[datetime]] = defaultdict(list)
    for job_id, started in executions:
        runs_by_tag[by_id[job_id][1]].append(started)
    repeated = {tag: runs for tag, runs in runs_by_tag.items() if len(runs) > 1}
    retried = [tag for tag, chain in chains.items() if len(chain) > 1]
    print(
        f"\nrestart with {running_before} job(s) running: queue drained {recovery:.1f}s after "
        f"the stop; {len(retried)} tag(s) retried, {len(repeated)} run more than once"
    )
    assert len(retried) <= WORKERS, [chains[tag] for tag in retried]
    assert len(repeated) <= WORKERS, repeated
    for tag, runs in repeated.items():
        assert min(runs) <= restarted, (tag, runs, restarted)

    runner.send(signal.SIGTERM)
    assert runner.wait(timeout=30) == 0, runner.output
    assert "runworkers stopped" in runner.output


def stop_during_an_outage(
    cluster: Server, start_runworkers: Callable[..., Runworkers], *args: str
) -> Runworkers:
    """runworkers on the throwaway server, with a job running, then the server stopped."""
    manage(cluster, "migrate", "--verbosity", "0")
    submit = (
        "from django_quickworker import submit_job\n"
        "submit_job(tag='long', type='demo.record', data={'seconds': 60})\n"
    )
    manage(cluster, "shell", "--no-imports", "-c", submit)
    runner = start_runworkers(
        "--workers",
        "2",
        *args,
        env={
            "DATABASE_URL": cluster.url(DATABASE),
            "QUICKWORKER": '{"POLL_INTERVAL": 0.2, "LEASE": 2}',
        },
    )
    running = f"SELECT count(*) FROM {OURS} AND status = 'running'"
    wait_for(runner, lambda: count(cluster, running) == 1, "the job to start", 90)
    cluster.stop("fast")
    # Long enough for the idle worker, and the parent's lease loop, to be retrying.
    wait_for(runner, lambda: runner.output.count("database unavailable") >= 2, "the retries")
    return runner


@pytest.mark.postgresql
@pytest.mark.mysql
def test_a_first_signal_during_an_outage_exits_within_the_shutdown_timeout(
    cluster: Server, start_runworkers: Callable[..., Runworkers]
) -> None:
    runner = stop_during_an_outage(cluster, start_runworkers, "--shutdown-timeout", "3")
    sent = time.monotonic()
    runner.send(signal.SIGTERM)
    assert runner.wait(timeout=30) == 0, runner.output
    took = time.monotonic() - sent
    assert took < 3 + 5, f"{took:.1f}s\n{runner.output}"
    assert "left to lease rescue" in runner.output, runner.output


@pytest.mark.postgresql
@pytest.mark.mysql
def test_a_second_signal_during_an_outage_exits_at_once(
    cluster: Server, start_runworkers: Callable[..., Runworkers]
) -> None:
    runner = stop_during_an_outage(cluster, start_runworkers, "--shutdown-timeout", "120")
    runner.send(signal.SIGTERM)
    wait_for(runner, lambda: "send it again" in runner.output, "the drain message")
    sent = time.monotonic()
    runner.send(signal.SIGTERM)
    assert runner.wait(timeout=30) == 0, runner.output
    took = time.monotonic() - sent
    assert took < 3, f"{took:.1f}s\n{runner.output}"
