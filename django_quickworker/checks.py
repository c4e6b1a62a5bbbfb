"""System checks: configuration mistakes show up in ``manage.py check``."""

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from django.apps import AppConfig
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import router

from django_quickworker.conf import conf
from django_quickworker.databases import UnsupportedDatabase, database
from django_quickworker.models import WorkerJob

# Readings of the QUICKWORKER settings; each raises ImproperlyConfigured naming a bad value.
SETTING_READINGS: list[Callable[[], object]] = [
    lambda: conf.poll_interval,
    lambda: conf.lease,
    lambda: conf.shutdown_timeout,
    lambda: conf.retain_succeeded,
    lambda: conf.retain_failed,
    lambda: conf.max_attempts,
    lambda: conf.retry_backoff_max,
    lambda: conf.cleanup_batch_size,
    lambda: conf.cron_time_zone,
    lambda: conf.group_prefix,
    lambda: conf.max_message_bytes,
    lambda: conf.prepared_statements,
]


# The parent renews its jobs' leases every LEASE/4, so a renewal may come up to 3/4 of LEASE
# late before other hosts rescue the job. Below this, an ordinary hiccup (a slow query, a
# database failover, a loaded host, SQLite waiting for its write lock) is that late.
MIN_LEASE = timedelta(seconds=10)


@register()
def check_configuration(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """Report every environment variable and QUICKWORKER setting that cannot be used."""
    messages = _errors("quickworker.E001", lambda: conf.worker_count)
    messages += _errors("quickworker.E002", lambda: conf.worker_log_level)
    shape_errors = _errors("quickworker.E003", conf.user_settings)
    if shape_errors:  # a QUICKWORKER that is no dict leaves no setting to check
        return messages + shape_errors
    messages += _errors("quickworker.E003", conf.refuse_unknown_keys)
    for read in SETTING_READINGS:
        messages += _errors("quickworker.E004", read)
    return messages + _short_lease()


def _errors(check_id: str, read: Callable[[], object]) -> list[CheckMessage]:
    try:
        read()
    except ImproperlyConfigured as error:
        return [Error(str(error), id=check_id)]
    return []


def _short_lease() -> list[CheckMessage]:
    try:
        lease = conf.lease
    except ImproperlyConfigured:
        return []  # reported as E004
    if lease >= MIN_LEASE:
        return []
    return [
        Warning(
            f"QUICKWORKER['LEASE']={conf.user_settings()['LEASE']!r} is too short to renew "
            f"reliably: runworkers renews leases every LEASE/4, and a renewal "
            f"{lease.total_seconds() * 3 / 4:g} s late lets other hosts rescue jobs that are "
            "still running, which then run twice.",
            hint=f"Use a LEASE of at least {MIN_LEASE.total_seconds():g} seconds "
            "(the default is 60).",
            id="quickworker.W002",
        )
    ]


@register()
def check_database(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    """Refuse a database the app cannot run on; run that database's own checks of its settings."""
    alias = router.db_for_write(WorkerJob)
    try:
        return database(alias).check(None)
    except UnsupportedDatabase as error:
        return [Error(str(error), id="quickworker.E005")]


@register(Tags.database)  # it queries the server: run by migrate and check --database only
def check_database_server(
    app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """What only the server can tell (MySQL's isolation set by an init_command, say), beyond
    what check_database already reports from the settings."""
    alias = router.db_for_write(WorkerJob)
    if not databases or alias not in databases:
        return []
    try:
        db = database(alias)
    except UnsupportedDatabase:
        return []  # check_database says so
    reported = {message.id for message in db.check(None)}
    return [message for message in db.check(databases) if message.id not in reported]
