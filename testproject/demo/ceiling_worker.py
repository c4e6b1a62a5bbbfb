"""The raw SQL ceiling, run in spawned processes: no Django, just the two statements per
job that any database queue needs (claim, finish), with nothing else around them."""

import sqlite3
import time
from typing import Any


def run(vendor: str, settings_dict: dict[str, Any], name: str, start_at: float) -> None:
    """The ceiling: claim with one UPDATE … RETURNING, finish with another, nothing else;
    from ``start_at`` (a UNIX time), when the jobs fall due."""
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
    if vendor == "postgresql":
        import psycopg

        parts = {"now": "now()", "p": "%s", "lock": "FOR UPDATE SKIP LOCKED"}
        db: Any = psycopg.connect(
            dbname=settings_dict["NAME"],
            user=settings_dict["USER"],
            password=settings_dict["PASSWORD"] or None,
            host=settings_dict["HOST"],
            port=settings_dict["PORT"] or 5432,
            autocommit=True,
        )
    else:
        parts = {"now": "strftime('%Y-%m-%d %H:%M:%f', 'now')", "p": "?", "lock": ""}
        db = sqlite3.connect(settings_dict["NAME"], timeout=20, isolation_level=None)
    claim_sql, finish_sql = claim.format(**parts), finish.format(**parts)
    time.sleep(max(0.0, start_at - time.time()) + 0.01)
    while True:
        row = db.execute(claim_sql, (name,)).fetchone()
        if row is None:
            return
        db.execute(finish_sql, (row[0],))
