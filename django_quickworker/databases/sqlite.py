"""SQLite: one writer at a time, so one ``UPDATE … RETURNING`` claims atomically; wake-ups
from watching the database's files."""

import asyncio
import os
from collections.abc import Sequence

from django.conf import settings
from django.core.checks import CheckMessage, Warning

from django_quickworker.databases.base import InDb, ReturningClaim, Wake
from django_quickworker.models import CLAIMABLE_INDEX, PENDING_TAG_INDEX

# Seconds between looks at the database's files. A look is a stat() of two files, no query,
# and costs the parent about 0.2 ms of CPU with the event loop's wake-up: 0.4% of a core.
WATCH_INTERVAL = 0.05
FileState = tuple[tuple[int, int] | None, ...]  # (modified ns, size) of each file, if any


class SQLite(ReturningClaim):
    vendor = "sqlite"
    # SQLite, without statistics, would rather sort every scheduled row than walk the index
    # that is already in claim order; name it.
    claim_index_hint = f"INDEXED BY {CLAIMABLE_INDEX}"
    # Likewise, it would rather read every scheduled job through the status index than look
    # their tags up in this one, on every replace: 1.8 ms a submission with 6,000 scheduled.
    pending_tag_index_hint = f"INDEXED BY {PENDING_TAG_INDEX}"
    claim_lock = ""  # the write lock, taken at BEGIN IMMEDIATE, serializes claimers

    def now_sql(self) -> str:
        # SQLite's clock counts milliseconds: rounded up, so that a job due at a moment
        # written in microseconds (by this host, just now) is due once that moment passed.
        sql, params = self.later_sql(0.001)
        return sql.replace("%s", f"'{params[0]}'")

    def later_sql(self, seconds: float) -> tuple[str, list[object]]:
        # Django stores datetimes as text, 'YYYY-MM-DD HH:MM:SS[.ffffff]' (UTC with USE_TZ,
        # else local time), and they compare as text. SQLite gives milliseconds: padded to
        # Django's six digits, or '…05.123' would sort before the '…05.123000' it equals.
        zone = "" if settings.USE_TZ else ", 'localtime'"
        sql = f"(strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', %s{zone}) || '000')"
        return sql, [f"{seconds:+f} seconds"]

    def lock_tags(self, tags: list[str]) -> None:
        """Nothing to do: SQLite's single write lock, taken from the transaction's start with
        ``transaction_mode="IMMEDIATE"`` (check quickworker.W001), serializes submissions."""

    async def watch_for_jobs(self, wake: Wake, in_db: InDb) -> None:
        """Wake the workers when the highest job id grows, looked up only when the database
        or its write-ahead log changed on disk: every commit changes one of them."""
        files = self.files()
        if not files:  # an in-memory database: no other process can submit to it
            return
        state = file_state(files)  # before the query: a commit in between is then counted
        highest = await in_db(self.highest_job_id)
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            latest_state = file_state(files)
            if latest_state != state:
                state = latest_state
                highest = self.wake_if_higher(wake, highest, await in_db(self.highest_job_id))

    def files(self) -> list[str]:
        """The files a commit changes: the database, and its log in WAL mode ([] in memory)."""
        name = str(self.connection.settings_dict["NAME"])
        if self.connection.creation.is_in_memory_db(name):  # type: ignore[attr-defined]
            return []
        path = name.removeprefix("file:").split("?")[0]
        return [path, f"{path}-wal"]

    def check(self, databases: Sequence[str] | None) -> list[CheckMessage]:
        """Warn when transactions start deferred, which makes concurrent writers fail."""
        mode = self.connection.settings_dict.get("OPTIONS", {}).get("transaction_mode")
        if isinstance(mode, str) and mode.upper() == "IMMEDIATE":  # Django accepts any case
            return []
        alias = self.alias
        return [
            Warning(
                f"The SQLite database {alias!r} starts transactions in {mode or 'DEFERRED'} "
                "mode, so workers and submissions writing at once fail with 'database is locked'.",
                hint=f"Set DATABASES[{alias!r}]['OPTIONS']['transaction_mode'] = 'IMMEDIATE'.",
                id="quickworker.W001",
            )
        ]


def file_state(paths: list[str]) -> FileState:
    """When each of ``paths`` was last modified, and its size (None: it does not exist)."""
    states: list[tuple[int, int] | None] = []
    for path in paths:
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            states.append(None)
        else:
            states.append((stat.st_mtime_ns, stat.st_size))
    return tuple(states)
