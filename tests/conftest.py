"""Shared fixtures, and the database the run is on.

Tests marked ``postgresql``, ``mysql`` or ``sqlite`` exercise one database's own mechanism
(advisory locks, NOTIFY, lock rows, SQLite's write lock); they run in the tox envs of the
databases they are marked for and are deselected, with a line saying so, in the others.

Tests marked ``heavy`` are long end-to-end runs (several runworkers trees, outages, big
tables). They run wherever ``LEAN_SUITE`` is not ``1``, as in a plain ``pytest``; tox sets it in
every env but the ``py313-dj61`` ones, so CI runs each of them once per database and stays
short.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import psutil
import psycopg
import pytest
from django.conf import settings
from django.db import connection

import django_quickworker
from django_quickworker.databases.postgresql import NOTIFY_CHANNEL
from django_quickworker.registry import JobRegistry, registry

VENDOR_MARKERS = {"mysql", "postgresql", "sqlite"}
# The database's clock decides when jobs are due; SQLite reads it in milliseconds, rounded up,
# so a time it gives may lie up to this much past the host's, and a job start that early.
DATABASE_CLOCK_STEP = timedelta(milliseconds=1)
# A claimed row's ``started`` is the worker's clock, read as it sends its claim; the database
# decides the job is due when the claim arrives, which on a loaded machine is a while later.
CLAIM_IN_FLIGHT = timedelta(milliseconds=500)
# Seconds a test waits for runworkers to be up: starting Django and a child takes well over
# 30 on a loaded machine (another tox env, several hosts starting at once), and a wait ends
# as soon as its condition holds.
STARTUP_WAIT = 120.0
T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    for vendor in sorted(VENDOR_MARKERS):
        config.addinivalue_line("markers", f"{vendor}: runs only when the database is {vendor}")
    config.addinivalue_line("markers", "heavy: a long end-to-end test, left out where LEAN_SUITE=1")
    # The tests' subprocesses (runworkers, manage.py) import the package the tests import,
    # whatever PYTHONPATH the run started with and whether or not a copy is installed:
    # otherwise runworkers dies at start (or runs other code) and jobs just stay scheduled.
    tested = str(Path(django_quickworker.__file__).resolve().parent.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [tested, os.environ.get("PYTHONPATH")]))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    vendor = connection.vendor
    other = [item for item in items if _vendors_of(item) and vendor not in _vendors_of(item)]
    if other:
        config.hook.pytest_deselected(items=other)
        items[:] = [item for item in items if item not in other]
        print(f"\n{len(other)} tests for other databases deselected (this run is on {vendor}).")
    if os.environ.get("LEAN_SUITE") == "1":
        heavy = [item for item in items if item.get_closest_marker("heavy")]
        config.hook.pytest_deselected(items=heavy)
        items[:] = [item for item in items if item not in heavy]
        print(f"\n{len(heavy)} heavy tests deselected (LEAN_SUITE=1; tox runs them in py313-dj61).")


def _vendors_of(item: pytest.Item) -> set[str]:
    """The databases ``item`` is marked for (none: all)."""
    return VENDOR_MARKERS.intersection(mark.name for mark in item.iter_markers())


@pytest.fixture(scope="session", autouse=True)
def database_reachable(django_db_blocker: pytest.FixtureRequest) -> None:
    """Fail the run at once, saying how to fix it, when the database server is down."""
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        try:
            connection.ensure_connection()
        except Exception as error:
            url = settings.DATABASES["default"]
            pytest.exit(
                f"Cannot connect to the {connection.vendor} database "
                f"{url.get('HOST') or ''}:{url.get('PORT') or ''} ({error}). Start it "
                "(PostgreSQL: pg_ctlcluster --skip-systemctl-redirect 15 main start; MariaDB: "
                "start-stop-daemon --start --background --exec /usr/sbin/mariadbd) or point "
                "DATABASE_URL at a running server.",
                returncode=3,
            )


@pytest.fixture
def job_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[JobRegistry]:
    """The job registry, restored after the test so test-only job types do not leak."""
    monkeypatch.setattr(registry, "_types", dict(registry._types))
    yield registry


REPO = Path(__file__).resolve().parent.parent
MANAGE = REPO / "testproject" / "manage.py"


def run_manage(
    *args: str, timeout: float, env: dict[str, str] | None = None
) -> "subprocess.CompletedProcess[str]":
    """Run the test project's ``manage.py`` with ``args``, on the database its settings (and
    ``env``) name, not the test database, and return what it printed."""
    environment = {**os.environ, **(env or {})}
    environment.pop("TEST_DATABASE_NAME", None)
    return subprocess.run(
        [sys.executable, str(MANAGE), *args],
        env=environment,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def database_url(settings_dict: dict[str, Any] | None = None) -> str:
    """A DATABASE_URL for the database the tests use, for subprocesses."""
    db = settings_dict or connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    scheme, port = URL_SCHEMES[db["ENGINE"]]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"{scheme}://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or port}/{db['NAME']}"


# A server database's engine -> its DATABASE_URL scheme and default port.
URL_SCHEMES = {
    "django.db.backends.postgresql": ("postgres", 5432),
    "django.db.backends.mysql": ("mysql", 3306),
}


def run_together(calls: list[Callable[[], object]]) -> None:
    """Run each call in a thread of its own, all released at the same moment; fail with
    whatever any of them raised. Each thread has (and closes) its own database connection."""
    start = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        try:
            connection.ensure_connection()  # connecting first, so that they start together
            start.wait(timeout=10)
            call()
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []


@contextlib.contextmanager
def round_trips() -> Iterator[list[int]]:
    """How many times the client waits for PostgreSQL in the block, appended to the list
    yielded when the block ends: the Query and Sync messages it sends, in libpq's trace."""
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    counted: list[int] = []
    with tempfile.TemporaryFile() as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            yield counted
        finally:
            pgconn.untrace()
        trace.seek(0)
        messages = [line.split("\t") for line in trace.read().decode().splitlines()]
        counted.append(sum(1 for m in messages if m[0] == "F" and m[2] in ("Query", "Sync")))


def wait_until(condition: Callable[[], T], timeout: float = 30.0, what: str = "") -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"Waited {timeout}s for {what or condition}, in vain.")
        time.sleep(0.05)


@dataclass
class Runworkers:
    """A real ``manage.py runworkers`` process started by a test."""

    process: subprocess.Popen[bytes]
    log: Path

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def children(self) -> list[psutil.Process]:
        """The live worker processes (not multiprocessing's resource tracker).

        Children come and go while they are listed: a worker that just exited, or a
        short-lived helper (importing croniter runs ``file -b`` through
        ``platform.architecture()``), is a zombie or gone by the time its command line is
        read, and is no worker to count.
        """
        workers = []
        for child in psutil.Process(self.process.pid).children():
            try:
                if "spawn_main" in " ".join(child.cmdline()):
                    workers.append(child)
            except psutil.NoSuchProcess:  # includes ZombieProcess
                continue
        return workers

    def send(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            message = f"runworkers still running after {timeout}s:\n{self.output}"
            raise AssertionError(message) from None


StartRunworkers = Callable[..., Runworkers]


def settings_env(module: str, **variables: str) -> dict[str, str]:
    """Environment for runworkers on the settings module ``module`` of this folder (e.g.
    ``tests.sentry_settings``), polling fast, with ``variables`` (the files it writes to)."""
    return {
        "DJANGO_SETTINGS_MODULE": module,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "QUICKWORKER": '{"POLL_INTERVAL": 0.1}',
        **variables,
    }


@pytest.fixture
def start_runworkers(transactional_db: None, tmp_path: Path) -> Iterator[StartRunworkers]:
    """Start real runworkers processes on the test database; all are killed at teardown.

    Keyword ``env`` adds environment variables (e.g. QUICKWORKER='{"LEASE": 5}').
    """
    started: list[Runworkers] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Runworkers:
        log = tmp_path / f"runworkers-{len(started)}.log"
        environment = {**os.environ, "DATABASE_URL": database_url(), **(env or {})}
        environment.pop("TEST_DATABASE_NAME", None)
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, str(MANAGE), "runworkers", *args],
                env=environment,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so teardown reaches the children
            )
        runner = Runworkers(process, log)
        started.append(runner)
        return runner

    yield start
    for runner in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(runner.process.pid, signal.SIGKILL)
        runner.process.wait()


@pytest.fixture
def listener() -> Iterator[psycopg.Connection[Any]]:
    """A separate autocommit connection to the test database, listening for wake-ups."""
    params = connection.settings_dict
    with psycopg.connect(
        dbname=params["NAME"],
        user=params["USER"] or None,
        password=params["PASSWORD"] or None,
        host=params["HOST"] or None,
        port=str(params["PORT"]) if params["PORT"] else None,
        autocommit=True,
    ) as conn:
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        yield conn


def plan_nodes(plan: Any) -> list[tuple[str, str]]:
    """Each node of an EXPLAIN (FORMAT JSON) plan as (node type, index name or "")."""
    if isinstance(plan, str):
        plan = json.loads(plan)
    nodes, stack = [], [plan[0]["Plan"]]
    while stack:
        node = stack.pop()
        nodes.append((node["Node Type"], node.get("Index Name", "")))
        stack.extend(node.get("Plans", []))
    return nodes
