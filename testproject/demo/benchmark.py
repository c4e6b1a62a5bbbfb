"""Measurements for ``manage.py benchmark``: our queue against the raw SQL ceiling, side by
side on the same database, so that the ratios hold on a shared, noisy machine."""

import multiprocessing
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import Any

import psutil
from django.conf import settings
from django.db import connection, models
from django.db.models import Max, Min
from django.test.utils import override_settings
from django.utils import timezone

from demo import ceiling_worker
from demo import tasks as demo_tasks
from django_quickworker import submit_job, submit_jobs
from django_quickworker.models import WorkerJob, WorkerProcess
from django_quickworker.submit import OnDuplicateTag

MANAGE = Path(__file__).resolve().parent.parent / "manage.py"
TAG = "bench:"  # every row the benchmark writes carries this tag prefix
CHUNK = 5000
FINISHED_ROWS_KEPT = 10_000  # in the table while submissions are measured


def clear() -> None:
    """Remove what earlier measurements left, in chunks so no statement runs for long."""
    while True:
        ids = list(
            WorkerJob.objects.filter(tag__startswith=TAG).values_list("pk", flat=True)[:50_000]
        )
        if not ids:
            break
        delete(ids)
    if connection.vendor == "postgresql":
        # Their dead rows too, so that no measurement pays for the one before it (the
        # server's autovacuum may be slow or off, as on the CI machines).
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM {connection.ops.quote_name(WorkerJob._meta.db_table)}")


def delete(ids: list[Any]) -> None:
    """Delete the rows ``ids`` (a chunk) with one statement, not one per row."""
    WorkerJob.objects.filter(pk__in=ids).update(rescheduled_from=None)
    with connection.cursor() as cursor:
        table = connection.ops.quote_name(WorkerJob._meta.db_table)
        cursor.execute(f"DELETE FROM {table} WHERE id IN ({', '.join(['%s'] * len(ids))})", ids)


# What demo.tasks.noop.enqueue() writes: the same rows, submitted in bulk.
NOOP_TASK_ROW = {
    "type": "demo.tasks.noop",
    "data": {"args": [], "kwargs": {}, "backend": "default"},
}
STARTUP = 5.0  # seconds every worker gets to start before the jobs fall due


def submit_noops(count: int, label: str, kind: str = "job", startup: float = STARTUP) -> datetime:
    """Submit ``count`` no-op jobs, all due once the workers have had time to start.

    So the measurement sees every worker busy from the first claim, not the spawn and
    Django start-up of the later ones. ``kind`` "task": rows of the ``@task`` no-op, as
    its ``enqueue()`` writes them. Returns when they fall due.
    """
    due = timezone.now() + timedelta(seconds=startup)
    row = NOOP_TASK_ROW if kind == "task" else {"type": "demo.noop"}
    for start in range(0, count, CHUNK):
        batch = range(start, min(start + CHUNK, count))
        submit_jobs(
            [{"tag": f"{TAG}{label}:{i}", "due": due, **row} for i in batch],
            on_duplicate_tag="allow",
        )
    return due


def drained_rate(label: str, count: int) -> float:
    """Jobs per second from the first claim to the last finish of the ``label`` batch."""
    rows = WorkerJob.objects.filter(tag__startswith=f"{TAG}{label}:")
    succeeded = rows.succeeded().count()
    if succeeded != count:
        raise RuntimeError(f"{label}: {succeeded} of {count} jobs succeeded")
    span = rows.aggregate(first=Min("started"), last=Max("finished"))
    return count / (span["last"] - span["first"]).total_seconds()


def runworkers(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(MANAGE), "runworkers", "--log-level", "warning", *args],
        # As in production: DEBUG off, or Django keeps a log of every query.
        env={**os.environ, "DEBUG": "false"},
        start_new_session=True,
    )


def throughput(count: int, workers: int, label: str = "throughput") -> dict[str, float]:
    """Drain ``count`` no-op jobs with ``runworkers``; return jobs/s, and the CPU time per job
    (µs) of the parent and of the workers, from their own accounting while the jobs ran."""
    due = submit_noops(count, label)
    with running_workers(workers, settle=0) as process:
        time.sleep(max(0.0, (due - timezone.now()).total_seconds()))
        before = cpu_seconds(process.pid)
        wait_until_drained(label)
        after = cpu_seconds(process.pid)
    return {
        "jobs_per_s": drained_rate(label, count),
        "parent_cpu_us": (after[0] - before[0]) / count * 1e6,
        "worker_cpu_us": (after[1] - before[1]) / count * 1e6,
    }


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) used so far by ``runworkers`` and by its workers."""
    parent = psutil.Process(pid)
    times = parent.cpu_times()
    children = 0.0
    for child in worker_children(parent):
        with _gone():
            child_times = child.cpu_times()
            children += child_times.user + child_times.system
    return times.user + times.system, children


def wait_until_drained(label: str) -> None:
    rows = WorkerJob.objects.filter(tag__startswith=f"{TAG}{label}:")
    wait_for(lambda: not rows.exclude(status="succeeded").exists(), timeout=600)


def noops_side_by_side(count: int, pairs: int, workers: int) -> list[dict[str, float]]:
    """Drain batches of ``count`` ``@job`` no-ops and ``count`` ``@task`` no-ops in turn,
    ``pairs`` times, on one warm ``runworkers``, so that both kinds meet the same load; each
    kind goes first in every other pair. Returns the jobs/s of both kinds, per pair."""
    rates = []
    with running_workers(workers):
        for pair in range(pairs):
            rate = {}
            for kind in ("job", "task") if pair % 2 == 0 else ("task", "job"):
                label = f"side-{kind}-{pair}"
                # Due once every idle worker has polled again, so that all start together.
                submit_noops(count, label, kind, startup=1.5)
                wait_until_drained(label)
                rate[kind] = drained_rate(label, count)
            rates.append(rate)
            clear()
    return rates


def ceiling(count: int, workers: int) -> float:
    """Drain ``count`` jobs of the queue's table with W plain processes doing claim and
    finish in raw SQL."""
    due = submit_noops(count, "ceiling")
    raw_workers(workers, due, "same")
    return drained_rate("ceiling", count)


def minimal_ceiling(count: int, workers: int) -> float:
    """Drain ``count`` jobs of a fresh minimal queue table (ceiling_worker.create_minimal)
    with W plain processes doing claim and finish in raw SQL: what any queue could do."""
    due = timezone.now() + timedelta(seconds=STARTUP)
    with connection.cursor() as cursor:
        moment = str(connection.ops.adapt_datetimefield_value(due))
        ceiling_worker.create_minimal(cursor, connection.vendor, count, moment)
    try:
        raw_workers(workers, due, "minimal")
        table = ceiling_worker.MINIMAL_TABLE
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*), MAX(finished) FROM {table} WHERE state = 'done'")
            done, last = cursor.fetchone()
        if done != count:
            raise RuntimeError(f"minimal ceiling: {done} of {count} jobs done")
        if isinstance(last, str):  # SQLite
            last = datetime.fromisoformat(last)
        if timezone.is_naive(last):  # SQLite, MySQL: UTC
            last = last.replace(tzinfo=dt_timezone.utc)
        return count / (last - due).total_seconds()
    finally:
        with connection.cursor() as cursor:
            ceiling_worker.drop_minimal(cursor)


def raw_workers(workers: int, due: datetime, table: str) -> None:
    """Run ``workers`` raw SQL ceiling processes on ``table`` until they find nothing due."""
    settings_dict = dict(connection.settings_dict)
    spawn = multiprocessing.get_context("spawn")
    processes = [
        spawn.Process(
            target=ceiling_worker.run,
            args=(connection.vendor, settings_dict, f"raw:{i}", due.timestamp(), table),
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=600)


def latency(jobs: int, interval: float, workers: int) -> dict[str, float]:
    """Milliseconds from before a default ``submit_job`` call to the first line of its job,
    for jobs submitted one at a time to an idle pool."""
    submitted = {}
    with running_workers(workers):
        for i in range(jobs):
            before = time.time()
            row = submit_job(tag=f"{TAG}latency:{i}", type="demo.firstLine")
            submitted[row.pk] = before
            time.sleep(interval)
        rows = WorkerJob.objects.filter(tag__startswith=f"{TAG}latency:")
        wait_for(lambda: rows.succeeded().count() == jobs, timeout=60)
    return percentiles(
        [(first_line - submitted[pk]) * 1000 for pk, first_line in rows.values_list("pk", "result")]
    )


def latency_floor(jobs: int, interval: float) -> dict[str, float]:
    """``latency``'s floor on PostgreSQL, in raw SQL on the minimal table: this process
    INSERTs a row with its NOTIFY in one statement; another, LISTENing, claims it with one
    UPDATE and stamps the time. What this machine allows any queue woken by NOTIFY."""
    settings_dict = dict(connection.settings_dict)
    with connection.cursor() as cursor:
        moment = str(connection.ops.adapt_datetimefield_value(timezone.now()))
        ceiling_worker.create_minimal(cursor, connection.vendor, 0, moment)
    spawn = multiprocessing.get_context("spawn")
    listening = spawn.Event()
    listener = spawn.Process(
        target=ceiling_worker.listen_and_claim, args=(settings_dict, jobs, listening)
    )
    listener.start()
    db, _ = ceiling_worker.connect("postgresql", settings_dict)
    try:
        if not listening.wait(timeout=60):
            raise RuntimeError("latency floor: the listener did not start")
        submitted = {}
        for _ in range(jobs):
            before = time.time()
            submitted[ceiling_worker.submit_with_notify(db)] = before
            time.sleep(interval)
        listener.join(timeout=60)
        started = db.execute(
            f"SELECT id, extract(epoch FROM finished) FROM {ceiling_worker.MINIMAL_TABLE} "
            "WHERE state = 'done'"
        ).fetchall()
        if len(started) != jobs:
            raise RuntimeError(f"latency floor: {len(started)} of {jobs} jobs done")
        return percentiles([(float(at) - submitted[pk]) * 1000 for pk, at in started])
    finally:
        listener.kill()
        with connection.cursor() as cursor:
            ceiling_worker.drop_minimal(cursor)
        db.close()


def percentiles(delays: list[float]) -> dict[str, float]:
    """The median, 95th and 99th percentiles of ``delays``."""
    ordered = sorted(delays)
    return {
        "p50": statistics.median(ordered),
        "p95": ordered[int(len(ordered) * 0.95) - 1],
        "p99": ordered[int(len(ordered) * 0.99) - 1],
    }


def enqueue_single(count: int, chunk: int = 100) -> dict[str, float]:
    """Jobs/s of one-row submissions, each its own transaction (autocommit), with unique
    tags: plain SQL INSERT + COMMIT (the floor), ``submit_job`` with ``allow`` and with the
    default ``replace``, and on PostgreSQL ``replace`` with PREPARED_STATEMENTS off,
    alternating in chunks so that all see the same load."""
    raw = ceiling_worker.Inserter(connection.vendor, dict(connection.settings_dict))
    modes: dict[str, tuple[OnDuplicateTag, bool]] = {
        "allow": ("allow", True),
        "replace": ("replace", True),
    }
    if connection.vendor == "postgresql":
        modes["unprepared"] = ("replace", False)
    spent = dict.fromkeys(["floor", *modes], 0.0)
    try:
        for start in range(0, count, chunk):
            batch = range(start, min(start + chunk, count))
            started = time.perf_counter()
            raw.one_by_one([f"{TAG}raw-insert:{i}" for i in batch])
            spent["floor"] += time.perf_counter() - started
            for name, (mode, prepared) in modes.items():
                started = time.perf_counter()
                quickworker = {**settings.QUICKWORKER, "PREPARED_STATEMENTS": prepared}
                with override_settings(QUICKWORKER=quickworker):
                    for i in batch:
                        submit_job(
                            tag=f"{TAG}single-{name}:{i}", type="demo.noop", on_duplicate_tag=mode
                        )
                spent[name] += time.perf_counter() - started
    finally:
        raw.close()
    return {name: count / seconds for name, seconds in spent.items()}


def enqueue_bulk(count: int, rounds: int) -> list[dict[str, float]]:
    """Rows/s of ``submit_jobs`` of ``count`` rows and of a raw multi-row INSERT of the same
    rows, in turn, ``rounds`` times."""
    raw = ceiling_worker.Inserter(connection.vendor, dict(connection.settings_dict))

    def raw_rate(round_: int) -> float:
        started = time.perf_counter()
        raw.multi_row([f"{TAG}raw-bulk:{round_}:{i}" for i in range(count)])
        return count / (time.perf_counter() - started)

    def our_rate(round_: int) -> float:
        started = time.perf_counter()
        submit_jobs(
            [{"tag": f"{TAG}bulk:{round_}:{i}", "type": "demo.noop"} for i in range(count)],
            on_duplicate_tag="allow",
        )
        return count / (time.perf_counter() - started)

    measured = []
    try:
        for round_ in range(rounds):
            # Each side goes first in every other round: the second writes into a table
            # that holds the first one's rows.
            if round_ % 2 == 0:
                floor, ours = raw_rate(round_), our_rate(round_)
            else:
                ours, floor = our_rate(round_), raw_rate(round_)
            clear()
            measured.append({"floor": floor, "ours": ours, "ratio": ours / floor})
    finally:
        raw.close()
    return measured


def enqueue_side_by_side(count: int, chunk: int = 100) -> tuple[float, float]:
    """``count`` ``submit_job`` calls and ``count`` ``task.enqueue()`` calls of the ``@task``
    no-op, each its own transaction, alternating in chunks so that both see the same load.
    Returns both rates, per second."""
    spent = {"submit_job": 0.0, "enqueue": 0.0}
    ids = []
    for start in range(0, count, chunk):
        started = time.perf_counter()
        for i in range(start, min(start + chunk, count)):
            submit_job(tag=f"{TAG}side:{i}", type="demo.noop", on_duplicate_tag="allow")
        between = time.perf_counter()
        ids += [demo_tasks.noop.enqueue().id for _ in range(start, min(start + chunk, count))]
        spent["submit_job"] += between - started
        spent["enqueue"] += time.perf_counter() - between
    for start in range(0, count, CHUNK):
        delete(ids[start : start + CHUNK])  # the task's rows have its own tag, not ours
    return count / spent["submit_job"], count / spent["enqueue"]


def add_finished_rows(count: int) -> None:
    """Fill the table with ``count`` finished rows, as a busy project's would be."""
    table = connection.ops.quote_name(WorkerJob._meta.db_table)
    now = timezone.now()
    columns = (
        "tag, type, data, queue, priority, status, due, started, finished, success, "
        "error_traceback, attempt, max_attempts, worker, cron_schedule, "
        "auto_reschedule_on_failure, auto_reschedule_on_failure_delay, retry_backoff, "
        "persistent, created_at, updated_at"
    )
    values = (
        "{tag}, 'demo.noop', '{{}}', 'default', 0, 'succeeded', %s, %s, %s, true, '', 1, 1, "
        "'old', '', false, %s, 'fixed', true, %s, %s"
    )
    moment = connection.ops.adapt_datetimefield_value(now)
    no_delay = models.DurationField().get_db_prep_value(timedelta(0), connection)
    params = [moment, moment, moment, no_delay]
    params += [moment, moment]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            tag = f"'{TAG}old:' || n"
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT {values.format(tag=tag)} "
                f"FROM generate_series(1, {int(count)}) AS n",
                params,
            )
        elif connection.vendor == "mysql":  # the WITH after the INSERT; no || for strings
            tag = f"CONCAT('{TAG}old:', n)"
            cursor.execute(f"SET SESSION max_recursive_iterations = {int(count)}")  # MariaDB
            cursor.execute(
                f"INSERT INTO {table} ({columns}) WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL "
                f"SELECT n + 1 FROM s WHERE n < {int(count)}) SELECT {values.format(tag=tag)} "
                "FROM s",
                params,
            )
        else:
            tag = f"'{TAG}old:' || n"
            cursor.execute(
                f"WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s "
                f"WHERE n < {int(count)}) INSERT INTO {table} ({columns}) "
                f"SELECT {values.format(tag=tag)} FROM s",
                params,
            )
        if connection.vendor == "postgresql":
            # Statistics, as a busy project's table has: the planner's picture of it would
            # otherwise be the nearly empty table that clear() left.
            cursor.execute(f"ANALYZE {table}")


def memory(count: int, workers: int, checkpoints: tuple[int, ...]) -> dict[str, Any]:
    """RSS of the parent and children while ``count`` jobs run; children's RSS at checkpoints."""
    submit_noops(count, "memory")
    succeeded = WorkerJob.objects.filter(tag__startswith=f"{TAG}memory:", status="succeeded")
    process = runworkers("--workers", str(workers))
    parent = psutil.Process(process.pid)
    peaks = {"parent": 0, "child": 0}
    at: dict[int, list[int]] = {}
    pending = list(checkpoints)
    deadline = time.monotonic() + 1800
    try:
        while pending and time.monotonic() < deadline:
            with _gone():
                rss = [child.memory_info().rss for child in worker_children(parent)]
                peaks["parent"] = max(peaks["parent"], parent.memory_info().rss)
                peaks["child"] = max([peaks["child"], *rss])
                if succeeded.count() >= pending[0]:
                    at[pending.pop(0)] = rss
            time.sleep(0.5)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    if pending:
        raise RuntimeError(f"memory: gave up before {pending[0]} jobs had run")
    return {
        "peak_parent_mb": peaks["parent"] / 2**20,
        "peak_child_mb": peaks["child"] / 2**20,
        "child_mb_at": {n: [r / 2**20 for r in rss] for n, rss in at.items()},
    }


def worker_children(parent: psutil.Process) -> list[psutil.Process]:
    with _gone():
        return [c for c in parent.children() if "spawn_main" in " ".join(c.cmdline())]
    return []


@contextmanager
def _gone() -> Iterator[None]:
    """Ignore processes that exit while we look at them."""
    with suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
        yield


@contextmanager
def running_workers(workers: int, settle: float = 2.0) -> Iterator[subprocess.Popen[bytes]]:
    """``runworkers`` running while the block runs. With ``settle``, each of its children has
    run a job first, and then all idled for ``settle`` seconds: a child's start-up (imports,
    and compiling them where no bytecode is cached) can take longer than any fixed wait."""
    process = runworkers("--workers", str(workers))
    try:
        # This runworkers' own row: one left by a process that died unannounced would not do.
        mine = WorkerProcess.objects.filter(
            name__startswith=f"{socket.gethostname()}:{process.pid}:"
        )
        wait_for(mine.exists, timeout=60)
        if settle:
            every_worker_ran_a_job(workers)
            time.sleep(settle)
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def every_worker_ran_a_job(workers: int, timeout: float = 120) -> None:
    """Submit short sleeps, ``workers`` at a time, until that many children have run one."""
    warm_ups = WorkerJob.objects.filter(tag__startswith=f"{TAG}warm-up:")
    deadline = time.monotonic() + timeout
    batch = 0
    while warm_ups.succeeded().values("worker").distinct().count() < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {workers} workers ran a job in {timeout}s")
        if not (warm_ups.scheduled().exists() or warm_ups.running().exists()):
            sleeps = [
                {
                    "tag": f"{TAG}warm-up:{batch}:{n}",
                    "type": "demo.asyncSleep",
                    "data": {"seconds": 0.2},
                }
                for n in range(workers)
            ]
            submit_jobs(sleeps, on_duplicate_tag="allow")
            batch += 1
        time.sleep(0.05)
    warm_ups.delete()


def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up after {timeout}s")
        time.sleep(0.05)


def idle(workers: int, seconds: float = 10.0, jobs: int = 30) -> dict[str, Any]:
    """What an idle ``runworkers`` costs: CPU of its whole process tree and statements per
    second (counted by the processes, and by the server where it keeps count), then how
    soon a job submitted to the idle pool starts (p50/p99 ms, one job at a time)."""
    statement_log = Path(f"/tmp/quickworker-benchmark-statements-{os.getpid()}")
    statement_log.write_bytes(b"")
    baseline = server_statements_per_s(seconds)  # the rest of the server, without us
    process = subprocess.Popen(
        [
            sys.executable,
            str(MANAGE),
            "runworkers",
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        env={**os.environ, "DEBUG": "false", "DEMO_STATEMENT_LOG": str(statement_log)},
        start_new_session=True,
    )
    try:
        tree = psutil.Process(process.pid)
        wait_for(lambda: len(worker_children(tree)) == workers, timeout=60)
        wait_for(lambda: cpu_over(tree, 1.0) < 0.05, timeout=120)  # every worker up and idle
        cpu_before, counted_before = tree_cpu_seconds(tree), statement_log.stat().st_size
        started = time.monotonic()
        server = server_statements_per_s(seconds)
        elapsed = time.monotonic() - started
        cpu = (tree_cpu_seconds(tree) - cpu_before) / elapsed
        counted = (statement_log.stat().st_size - counted_before) / elapsed
        delays = idle_latencies(jobs)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        statement_log.unlink()
    return {
        "workers": workers,
        "cpu_percent": 100 * cpu,
        "statements_per_s": counted,
        "server_statements_per_s": None if server is None else server - (baseline or 0.0),
        "server_baseline_per_s": baseline,
        "latency_p50_ms": statistics.median(delays),
        "latency_p99_ms": delays[max(0, int(len(delays) * 0.99) - 1)],
    }


def cpu_over(tree: psutil.Process, seconds: float) -> float:
    """The share of one core that ``tree`` used over the next ``seconds``."""
    before = tree_cpu_seconds(tree)
    time.sleep(seconds)
    return (tree_cpu_seconds(tree) - before) / seconds


def tree_cpu_seconds(parent: psutil.Process) -> float:
    """CPU seconds (user and system) used so far by ``parent`` and its live descendants."""
    total = 0.0
    for process in [parent, *parent.children(recursive=True)]:
        with _gone():
            times = process.cpu_times()
            total += times.user + times.system
    return total


def server_statements_per_s(seconds: float) -> float | None:
    """Statements per second the database server counts over the next ``seconds`` (None:
    SQLite, which has no server).

    PostgreSQL counts transactions per database (each autocommit statement is one);
    MariaDB and MySQL count statements for the whole server, other clients included,
    which is why the idle section measures a baseline without runworkers too.
    """
    before = _server_count()
    time.sleep(seconds)
    after = _server_count()
    if before is None or after is None:
        return None
    return (after - before - 1) / seconds  # less our own second look


def _server_count() -> int | None:
    if connection.vendor == "sqlite":
        return None
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database "
                "WHERE datname = current_database()"
            )
            (count,) = cursor.fetchone()
        else:
            cursor.execute("SHOW GLOBAL STATUS LIKE 'Questions'")
            (_, count) = cursor.fetchone()
    return int(count)


def idle_latencies(jobs: int, pause: float = 0.3) -> list[float]:
    """Submit-to-start in ms of ``jobs`` jobs, each submitted to an idle pool, sorted."""
    delays = []
    for i in range(jobs):
        job = submit_job(tag=f"{TAG}idle:{i}", type="demo.noop", on_duplicate_tag="allow")
        rows = WorkerJob.objects.filter(pk=job.pk, started__isnull=False)
        wait_for(rows.exists, timeout=60)
        (started,) = rows.values_list("started", flat=True)
        delays.append((started - job.created_at).total_seconds() * 1000)
        # The workers idle again; a pause of varying length, or it would keep step with the
        # parent's watch interval and measure one phase of it.
        time.sleep(pause * random.uniform(0.5, 1.5))
    return sorted(delays)
