"""The raw SQL ceilings: no Django, just the statements any database queue needs — claim and
finish for running jobs (in spawned processes), one INSERT and its commit for enqueueing."""

import sqlite3
import time
from typing import Any

MINIMAL_TABLE = "bench_minimal_queue"


def run(vendor: str, settings_dict: dict[str, Any], name: str, start_at: float, table: str) -> None:
    """The ceiling: claim with one UPDATE … RETURNING, finish with another, nothing else;
    from ``start_at`` (a UNIX time), when the jobs fall due. ``table``: "same", the queue's
    own table with its indexes; "minimal", :data:`MINIMAL_TABLE` (see create_minimal)."""
    if vendor == "mysql":
        run_mysql(settings_dict, name, start_at, table)
        return
    if table == "minimal":
        claim = (
            f"UPDATE {MINIMAL_TABLE} SET state = 'running' WHERE id = (SELECT id FROM "
            f"{MINIMAL_TABLE} WHERE state = 'scheduled' AND due <= {{now}} ORDER BY due, id "
            "LIMIT 1 {lock}) RETURNING id"
        )
        finish = f"UPDATE {MINIMAL_TABLE} SET state = 'done', finished = {{now}} WHERE id = {{p}}"
    else:
        claim = (
            f"UPDATE {SAME_TABLE} SET status = 'running', started = {{now}}, worker = {{p}}, "
            f"attempt = attempt + 1 WHERE id = (SELECT id FROM {SAME_TABLE} WHERE status = "
            "'scheduled' AND due <= {now} ORDER BY priority DESC, due, id LIMIT 1 {lock}) "
            "RETURNING id"
        )
        finish = (
            f"UPDATE {SAME_TABLE} SET status = 'succeeded', finished = {{now}}, success = true, "
            "result = 'null' WHERE id = {p}"
        )
    db, parts = connect(vendor, settings_dict)
    claim_sql, finish_sql = claim.format(**parts), finish.format(**parts)
    claim_params: tuple[str, ...] = () if table == "minimal" else (name,)
    plans = vendor == "postgresql" and table == "same"
    if plans:
        # Planned as the queue's claim is (sorting off, as in quickworker_claim), in the same
        # round trip, so that stale statistics cost neither side. Several statements in one
        # call take no parameters: the name (ours, "raw:N") is written in.
        claim_sql = "SET LOCAL enable_sort = off; " + claim.format(**{**parts, "p": f"'{name}'"})
        claim_params = ()
    time.sleep(max(0.0, start_at - time.time()) + 0.01)
    while True:
        cursor = db.execute(claim_sql, claim_params)
        if plans:
            cursor.nextset()
        row = cursor.fetchone()
        if row is None:
            return
        db.execute(finish_sql, (row[0],))


SAME_TABLE = "quickworker_workerjob"


def run_mysql(settings_dict: dict[str, Any], name: str, start_at: float, table: str) -> None:
    """MySQL's ceiling, without UPDATE … RETURNING: lock the next row (skipping locked ones)
    and update it by id in one transaction, then finish it with an UPDATE of its own."""
    if table == "minimal":
        pick = (
            f"SELECT id FROM {MINIMAL_TABLE} FORCE INDEX (bench_minimal_claimable) WHERE "
            "state = 'scheduled' AND due <= UTC_TIMESTAMP(6) ORDER BY due, id LIMIT 1 "
            "FOR UPDATE SKIP LOCKED"
        )
        claim = f"UPDATE {MINIMAL_TABLE} SET state = 'running' WHERE id = %s"
        finish = (
            f"UPDATE {MINIMAL_TABLE} SET state = 'done', finished = UTC_TIMESTAMP(6) WHERE id = %s"
        )
    else:
        pick = (
            f"SELECT id FROM {SAME_TABLE} FORCE INDEX (quickworker_claimable) WHERE status = "
            "'scheduled' AND due <= UTC_TIMESTAMP(6) ORDER BY priority DESC, due, id LIMIT 1 "
            "FOR UPDATE SKIP LOCKED"
        )
        claim = (
            f"UPDATE {SAME_TABLE} SET status = 'running', started = UTC_TIMESTAMP(6), "
            "worker = %s, attempt = attempt + 1 WHERE id = %s"
        )
        finish = (
            f"UPDATE {SAME_TABLE} SET status = 'succeeded', finished = UTC_TIMESTAMP(6), "
            "success = true, result = 'null' WHERE id = %s"
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
        cursor.execute(claim, (row[0],) if table == "minimal" else (name, row[0]))
        cursor.execute("COMMIT")
        cursor.execute(finish, (row[0],))


def create_minimal(cursor: Any, vendor: str, count: int, due: str) -> None:
    """A fresh minimal queue table (id, state, two timestamps, one partial index: what any
    queue needs) holding ``count`` jobs due at ``due`` (the database's datetime text)."""
    cursor.execute(f"DROP TABLE IF EXISTS {MINIMAL_TABLE}")
    key = {
        "postgresql": "bigserial PRIMARY KEY",
        "mysql": "bigint AUTO_INCREMENT PRIMARY KEY",
        "sqlite": "integer PRIMARY KEY AUTOINCREMENT",
    }[vendor]
    stamp = "timestamp with time zone" if vendor == "postgresql" else "datetime(6)"
    stamp = "datetime" if vendor == "sqlite" else stamp
    cursor.execute(
        f"CREATE TABLE {MINIMAL_TABLE} (id {key}, state varchar(10) NOT NULL, "
        f"due {stamp} NOT NULL, finished {stamp} NULL)"
    )
    if vendor == "mysql":  # no partial indexes: the full one led by the state
        cursor.execute(f"CREATE INDEX bench_minimal_claimable ON {MINIMAL_TABLE} (state, due, id)")
    else:
        cursor.execute(
            f"CREATE INDEX bench_minimal_claimable ON {MINIMAL_TABLE} (due, id) "
            "WHERE state = 'scheduled'"
        )
    series = f"WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {count})"
    if vendor == "postgresql":
        cursor.execute(
            f"INSERT INTO {MINIMAL_TABLE} (state, due) SELECT 'scheduled', %s "
            f"FROM generate_series(1, {int(count)})",
            [due],
        )
    elif vendor == "mysql":
        cursor.execute(f"SET SESSION max_recursive_iterations = {int(count)}")  # MariaDB
        cursor.execute(
            f"INSERT INTO {MINIMAL_TABLE} (state, due) {series} SELECT 'scheduled', %s FROM s",
            [due],
        )
    else:
        cursor.execute(
            f"{series} INSERT INTO {MINIMAL_TABLE} (state, due) SELECT 'scheduled', %s FROM s",
            [due],
        )


LATENCY_CHANNEL = "bench_latency"


def listen_and_claim(settings_dict: dict[str, Any], jobs: int, listening: Any) -> None:
    """The latency floor's worker (PostgreSQL): LISTEN, and at each notification claim what
    is due in the minimal table with one UPDATE … RETURNING, stamping when each claim came
    back as its finish (where a job's first line would run); until ``jobs`` are done.
    ``listening``, an Event, is set once notifications can arrive."""
    db, _ = connect("postgresql", settings_dict)
    db.execute(f"LISTEN {LATENCY_CHANNEL}")
    listening.set()
    claim = (
        f"UPDATE {MINIMAL_TABLE} SET state = 'running' WHERE id = (SELECT id FROM "
        f"{MINIMAL_TABLE} WHERE state = 'scheduled' AND due <= now() ORDER BY due, id "
        "LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id"
    )
    finish = f"UPDATE {MINIMAL_TABLE} SET state = 'done', finished = to_timestamp(%s) WHERE id = %s"
    done = 0
    while done < jobs:
        # Queries wait for the generator to end: the first notification ends it.
        if not list(db.notifies(timeout=60, stop_after=1)):
            return
        while (row := db.execute(claim).fetchone()) is not None:
            db.execute(finish, (time.time(), row[0]))
            done += 1


def submit_with_notify(db: Any) -> int:
    """One row into the minimal table and a NOTIFY, in one autocommit statement, as the
    queue submits on PostgreSQL; return its id."""
    (pk,) = db.execute(
        f"WITH new AS (INSERT INTO {MINIMAL_TABLE} (state, due) VALUES ('scheduled', now()) "
        f"RETURNING id) SELECT new.id FROM new, (SELECT pg_notify(%s, '')) AS woken",
        [LATENCY_CHANNEL],
    ).fetchone()
    return int(pk)


def drop_minimal(cursor: Any) -> None:
    cursor.execute(f"DROP TABLE IF EXISTS {MINIMAL_TABLE}")


# One row of the raw INSERTs: what submit_job writes for a no-op, in literal SQL but the tag.
INSERT_COLUMNS = (
    "tag, type, data, queue, priority, status, due, error_traceback, attempt, max_attempts, "
    "worker, cron_schedule, auto_reschedule_on_failure, auto_reschedule_on_failure_delay, "
    "retry_backoff, persistent, created_at, updated_at"
)
INSERT_ROW = (
    "({p}, 'demo.noop', '{{}}', 'default', 0, 'scheduled', {now}, '', 0, 1, '', '', false, "
    "{zero}, 'fixed', false, {now}, {now})"
)


class Inserter:
    """A connection of its own that writes no-op rows in plain SQL: the floors under
    ``submit_job`` (one INSERT and its commit per row) and ``submit_jobs`` (multi-row)."""

    def __init__(self, vendor: str, settings_dict: dict[str, Any]) -> None:
        self.db, self.parts = connect(vendor, settings_dict)
        self.cursor = self.db.cursor()  # sqlite3 and psycopg have execute(); MySQLdb not
        self.row = INSERT_ROW.format(**self.parts)

    def one_by_one(self, tags: list[str]) -> None:
        """Each tag as a single-row INSERT, each its own transaction (autocommit)."""
        sql = f"INSERT INTO {SAME_TABLE} ({INSERT_COLUMNS}) VALUES {self.row}"
        for tag in tags:
            self.cursor.execute(sql, (tag,))

    def multi_row(self, tags: list[str], rows_per_statement: int = 1000) -> None:
        """All tags in one transaction, ``rows_per_statement`` rows per INSERT."""
        self.cursor.execute("BEGIN")
        for start in range(0, len(tags), rows_per_statement):
            chunk = tags[start : start + rows_per_statement]
            values = ", ".join([self.row] * len(chunk))
            self.cursor.execute(
                f"INSERT INTO {SAME_TABLE} ({INSERT_COLUMNS}) VALUES {values}", chunk
            )
        self.cursor.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


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
