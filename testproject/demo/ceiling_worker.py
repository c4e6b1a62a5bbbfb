"""The raw SQL ceilings: no Django, just the statements any database queue needs — claim and
finish for running jobs (in spawned processes), one INSERT and its commit for enqueueing."""

import sqlite3
import time
from typing import Any


def run(vendor: str, settings_dict: dict[str, Any], name: str, start_at: float) -> None:
    """The ceiling: claim with one UPDATE … RETURNING, finish with another, nothing else;
    from ``start_at`` (a UNIX time), when the jobs fall due."""
    if vendor == "mysql":
        run_mysql(settings_dict, name, start_at)
        return
    table = "quickworker_workerjob"
    claim = (
        f"UPDATE {table} SET status = 'running', started = {{now}}, worker = {{p}}, "
        f"attempt = attempt + 1 WHERE id = (SELECT id FROM {table} WHERE status = 'scheduled' "
        f"AND due <= {{now}} ORDER BY priority DESC, due, id LIMIT 1 {{lock}}) RETURNING id"
    )
    finish = (
        f"UPDATE {table} SET status = 'succeeded', finished = {{now}}, success = true, "
        f"result = 'null' WHERE id = {{p}}"
    )
    db, parts = connect(vendor, settings_dict)
    claim_sql, finish_sql = claim.format(**parts), finish.format(**parts)
    time.sleep(max(0.0, start_at - time.time()) + 0.01)
    while True:
        row = db.execute(claim_sql, (name,)).fetchone()
        if row is None:
            return
        db.execute(finish_sql, (row[0],))


def run_mysql(settings_dict: dict[str, Any], name: str, start_at: float) -> None:
    """MySQL's ceiling, without UPDATE … RETURNING: lock the next row (skipping locked ones)
    and update it by id in one transaction, then finish it with an UPDATE of its own."""
    table = "quickworker_workerjob"
    pick = (
        f"SELECT id FROM {table} FORCE INDEX (quickworker_claimable) WHERE status = 'scheduled' "
        "AND due <= UTC_TIMESTAMP(6) ORDER BY priority DESC, due, id LIMIT 1 "
        "FOR UPDATE SKIP LOCKED"
    )
    claim = (
        f"UPDATE {table} SET status = 'running', started = UTC_TIMESTAMP(6), worker = %s, "
        "attempt = attempt + 1 WHERE id = %s"
    )
    finish = (
        f"UPDATE {table} SET status = 'succeeded', finished = UTC_TIMESTAMP(6), success = true, "
        "result = 'null' WHERE id = %s"
    )
    db, _ = connect("mysql", settings_dict)
    cursor = db.cursor()
    time.sleep(max(0.0, start_at - time.time()) + 0.01)
    while True:
        cursor.execute("START TRANSACTION")
        cursor.execute(pick)
        row = cursor.fetchone()
        if row is None:
            cursor.execute("COMMIT")
            return
        cursor.execute(claim, (name, row[0]))
        cursor.execute("COMMIT")
        cursor.execute(finish, (row[0],))


def insert_one_by_one(vendor: str, settings_dict: dict[str, Any], count: int) -> float:
    """Enqueue ``count`` jobs as single-row INSERTs, each its own transaction; return jobs/s."""
    db, parts = connect(vendor, settings_dict)
    insert = (
        "INSERT INTO quickworker_workerjob (tag, type, data, queue, priority, status, due, "
        "error_traceback, attempt, max_attempts, worker, cron_schedule, "
        "auto_reschedule_on_failure, auto_reschedule_on_failure_delay, retry_backoff, "
        "persistent, created_at, updated_at) VALUES ({p}, 'demo.noop', '{{}}', 'default', 0, "
        "'scheduled', {now}, '', 0, 1, '', '', false, {zero}, 'fixed', false, {now}, {now})"
    ).format(**parts)
    cursor = db.cursor()  # sqlite3 and psycopg connections have execute(); MySQLdb's do not
    started = time.perf_counter()
    for i in range(count):
        cursor.execute(insert, (f"bench:raw-insert:{i}",))
    return count / (time.perf_counter() - started)


def connect(vendor: str, settings_dict: dict[str, Any]) -> tuple[Any, dict[str, str]]:
    """An autocommit connection, and the SQL spellings that differ by database."""
    if vendor == "postgresql":
        import psycopg

        parts = {"now": "now()", "p": "%s", "lock": "FOR UPDATE SKIP LOCKED", "zero": "'0'"}
        postgres = psycopg.connect(
            dbname=settings_dict["NAME"],
            user=settings_dict["USER"],
            password=settings_dict["PASSWORD"] or None,
            host=settings_dict["HOST"],
            port=settings_dict["PORT"] or 5432,
            autocommit=True,
        )
        return postgres, parts
    if vendor == "mysql":
        import MySQLdb

        parts = {"now": "UTC_TIMESTAMP(6)", "p": "%s", "lock": "", "zero": "0"}
        mysql = MySQLdb.connect(
            database=settings_dict["NAME"],
            user=settings_dict["USER"],
            password=settings_dict["PASSWORD"],
            host=settings_dict["HOST"],
            port=int(settings_dict["PORT"] or 3306),
            charset="utf8mb4",
            autocommit=True,
        )
        # What Django's connections run at, so both sides pay the same locks.
        mysql.cursor().execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        return mysql, parts
    now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
    parts = {"now": now, "p": "?", "lock": "", "zero": "0"}
    db = sqlite3.connect(settings_dict["NAME"], timeout=20, isolation_level=None)
    # The connection settings Django's connections get, so both sides pay the same commits.
    for pragma in settings_dict.get("OPTIONS", {}).get("init_command", "").split(";"):
        if pragma.strip():
            db.execute(pragma)
    return db, parts
