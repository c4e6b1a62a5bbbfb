"""SQLite: one writer at a time, so one ``UPDATE … RETURNING`` claims atomically."""

from collections.abc import Sequence

from django.conf import settings
from django.core.checks import CheckMessage, Warning

from django_quickworker.databases.base import ReturningClaim
from django_quickworker.models import CLAIMABLE_INDEX


class SQLite(ReturningClaim):
    vendor = "sqlite"
    # SQLite, without statistics, would rather sort every scheduled row than walk the index
    # that is already in claim order; name it.
    claim_index_hint = f"INDEXED BY {CLAIMABLE_INDEX}"
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
