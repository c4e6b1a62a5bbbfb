"""System checks: configuration mistakes show up in ``manage.py check``."""

from collections.abc import Callable, Sequence
from typing import Any

from django.apps import AppConfig
from django.core.checks import CheckMessage, Error, register
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
]


@register()
def check_configuration(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """Report every environment variable and QUICKWORKER setting that cannot be used."""
    errors = _errors("quickworker.E001", lambda: conf.worker_count)
    errors += _errors("quickworker.E002", lambda: conf.worker_log_level)
    shape_errors = _errors("quickworker.E003", conf.user_settings)
    if shape_errors:  # a malformed QUICKWORKER dict leaves no setting to check
        return errors + shape_errors
    for read in SETTING_READINGS:
        errors += _errors("quickworker.E004", read)
    return errors


def _errors(check_id: str, read: Callable[[], object]) -> list[CheckMessage]:
    try:
        read()
    except ImproperlyConfigured as error:
        return [Error(str(error), id=check_id)]
    return []


@register()
def check_database(
    app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Refuse a database the app cannot run on; run that database's own checks."""
    alias = router.db_for_write(WorkerJob)
    try:
        return database(alias).check(databases)
    except UnsupportedDatabase as error:
        return [Error(str(error), id="quickworker.E005")]
