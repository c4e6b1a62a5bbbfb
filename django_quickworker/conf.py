"""Settings, read lazily so that ``override_settings`` and the environment just work.

``WORKER_COUNT`` and ``WORKER_LOG_LEVEL`` come from the environment (as in QuickDapp);
everything else comes from the ``QUICKWORKER`` dict in Django settings.
"""

import logging
import os
import re
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import environ
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from django_quickworker.exceptions import InvalidDuration
from django_quickworker.schedule import to_timedelta

#: Every ``QUICKWORKER`` setting with its default.
DEFAULTS: dict[str, Any] = {
    "POLL_INTERVAL": 1.0,  # seconds, at most, between the parent's looks for due jobs
    "LEASE": 60,  # seconds a claimed job stays leased without renewal before it is rescued
    "SHUTDOWN_TIMEOUT": 30,  # seconds running jobs get to finish after the first SIGTERM
    "RETAIN_SUCCEEDED": 3600,  # seconds a succeeded row is kept after it finished (1 hour)
    "RETAIN_FAILED": 7 * 86400,  # seconds a failed or cancelled row is kept (7 days)
    "MAX_ATTEMPTS": 5,  # runs allowed when retrying on failure and no max_attempts is given
    "RETRY_BACKOFF_MAX": 3600,  # seconds, the longest wait an exponential backoff reaches
    "CLEANUP_BATCH_SIZE": 1000,  # rows removeOldWorkerJobs deletes per statement
    "CRON_TIME_ZONE": None,  # time zone name for cron schedules; None means TIME_ZONE
    "GROUP_PREFIX": "quickworker",  # prefix of the Channels group names
    "MAX_MESSAGE_BYTES": 256 * 1024,  # largest live message, JSON-encoded
    # PostgreSQL: prepare the queue's own statements (submit, claim, finish). Off behind a
    # pooler that cannot keep them, such as PgBouncer in transaction mode before 1.21.
    "PREPARED_STATEMENTS": True,
}

#: Environment variables and their defaults.
ENV_DEFAULTS: dict[str, str] = {
    "WORKER_COUNT": "1",  # "cpus" (one per core) or an integer; 0 runs no workers
    "WORKER_LOG_LEVEL": "info",  # debug, info, warning or error (also trace and warn)
}

LOG_LEVELS = ("debug", "info", "warning", "error")
# QuickDapp's names for levels Python calls otherwise (it has no trace level).
LOG_LEVEL_ALIASES = {"trace": "debug", "warn": "warning"}
# Channels group names allow these characters and fewer than 100 of them.
GROUP_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,50}")

MAX_INT = 2**31 - 1  # the largest value of an integer column on every database

env = environ.Env()


class Conf:
    """Typed, lazy access to django-quickworker's configuration."""

    @property
    def worker_count(self) -> int:
        return parse_worker_count(env.str("WORKER_COUNT", default=ENV_DEFAULTS["WORKER_COUNT"]))

    @property
    def worker_log_level(self) -> str:
        return parse_log_level(
            env.str("WORKER_LOG_LEVEL", default=ENV_DEFAULTS["WORKER_LOG_LEVEL"])
        )

    @property
    def poll_interval(self) -> float:
        return self._positive_duration("POLL_INTERVAL").total_seconds()

    @property
    def lease(self) -> timedelta:
        return self._positive_duration("LEASE")

    @property
    def shutdown_timeout(self) -> timedelta:
        return self._duration("SHUTDOWN_TIMEOUT")

    @property
    def retain_succeeded(self) -> timedelta:
        return self._duration("RETAIN_SUCCEEDED")

    @property
    def retain_failed(self) -> timedelta:
        return self._duration("RETAIN_FAILED")

    @property
    def max_attempts(self) -> int:
        return self._positive_int("MAX_ATTEMPTS")

    @property
    def retry_backoff_max(self) -> timedelta:
        return self._positive_duration("RETRY_BACKOFF_MAX")

    @property
    def cleanup_batch_size(self) -> int:
        return self._positive_int("CLEANUP_BATCH_SIZE")

    @property
    def cron_time_zone(self) -> ZoneInfo:
        name = self._get("CRON_TIME_ZONE") or settings.TIME_ZONE or "UTC"
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ImproperlyConfigured(
                f"QUICKWORKER['CRON_TIME_ZONE']={name!r} is not a known time zone name."
            ) from None

    @property
    def group_prefix(self) -> str:
        value = self._get("GROUP_PREFIX")
        if not isinstance(value, str) or not GROUP_PREFIX_PATTERN.fullmatch(value):
            raise ImproperlyConfigured(
                f"QUICKWORKER['GROUP_PREFIX']={value!r} is invalid; use 1 to 50 letters, "
                "digits, '_', '.' or '-'."
            )
        return value

    @property
    def max_message_bytes(self) -> int:
        return self._positive_int("MAX_MESSAGE_BYTES")

    @property
    def prepared_statements(self) -> bool:
        value = self._get("PREPARED_STATEMENTS")
        if not isinstance(value, bool):
            raise ImproperlyConfigured(
                f"QUICKWORKER['PREPARED_STATEMENTS']={value!r} is invalid; use True or False."
            )
        return value

    def user_settings(self) -> dict[str, Any]:
        """Return the ``QUICKWORKER`` dict, refusing a non-dict.

        Unknown keys do not stop the known ones from being read: the system checks report
        them (:meth:`refuse_unknown_keys`) beside every bad value, all at once.
        """
        value = getattr(settings, "QUICKWORKER", {})
        if not isinstance(value, dict):
            raise ImproperlyConfigured(f"QUICKWORKER={value!r} must be a dict.")
        return value

    def refuse_unknown_keys(self) -> None:
        """Raise ImproperlyConfigured naming the ``QUICKWORKER`` keys that are no setting."""
        unknown = sorted(set(self.user_settings()) - set(DEFAULTS), key=repr)
        if unknown:
            raise ImproperlyConfigured(
                f"QUICKWORKER has unknown keys {unknown!r}; known keys are {sorted(DEFAULTS)!r}."
            )

    def _get(self, name: str) -> Any:
        return self.user_settings().get(name, DEFAULTS[name])

    def _positive_int(self, name: str) -> int:
        value = self._get(name)
        # The cap is an integer column's (max_attempts is copied into one) and SQL LIMIT's.
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_INT:
            raise ImproperlyConfigured(
                f"QUICKWORKER[{name!r}]={value!r} is invalid; use a positive integer of at "
                f"most {MAX_INT}."
            )
        return value

    def _positive_duration(self, name: str) -> timedelta:
        duration = self._duration(name)
        if not duration:
            raise ImproperlyConfigured(f"QUICKWORKER[{name!r}] must be more than zero.")
        return duration

    def _duration(self, name: str) -> timedelta:
        try:
            return to_timedelta(self._get(name), f"QUICKWORKER[{name!r}]")
        except InvalidDuration as error:
            raise ImproperlyConfigured(str(error)) from None


def parse_worker_count(raw: str) -> int:
    """Read a worker count: "cpus" (one per core) or an integer of 0 or more.

    0 is QuickDapp's way to say that a process (a web server) runs no workers.
    """
    value = raw.strip()
    if value == "cpus":
        return os.cpu_count() or 1
    if not (value.isascii() and value.isdigit()):
        raise ImproperlyConfigured(
            f"WORKER_COUNT={raw!r} is invalid; use 'cpus' or an integer of 0 or more."
        )
    return int(value)


def parse_log_level(raw: str) -> str:
    """Read a log level name, in any case; QuickDapp's trace and warn are debug and warning."""
    level = raw.strip().lower()
    level = LOG_LEVEL_ALIASES.get(level, level)
    if level not in LOG_LEVELS:
        names = ", ".join([*LOG_LEVELS, *LOG_LEVEL_ALIASES])
        raise ImproperlyConfigured(f"WORKER_LOG_LEVEL={raw!r} is invalid; use one of {names}.")
    return level


conf = Conf()


def configure_logging(level: str) -> None:
    """Set django_quickworker's log level, and give it a handler if the project has none."""
    package_logger = logging.getLogger("django_quickworker")
    package_logger.setLevel(level.upper())
    if not package_logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s")
        )
        package_logger.addHandler(handler)
