"""Configuration: WORKER_COUNT and WORKER_LOG_LEVEL from the environment, QUICKWORKER settings."""

import os
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ImproperlyConfigured
from pytest_django.fixtures import Settings

from django_quickworker.conf import conf


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start each test from the defaults, whatever the shell running pytest exported."""
    monkeypatch.delenv("WORKER_COUNT", raising=False)
    monkeypatch.delenv("WORKER_LOG_LEVEL", raising=False)


def test_worker_count_defaults_to_one() -> None:
    assert conf.worker_count == 1


# 0: a process (a web server) that runs no workers, as QuickDapp allows.
@pytest.mark.parametrize(("raw", "expected"), [("3", 3), (" 12 ", 12), ("1", 1), ("0", 0)])
def test_worker_count_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: int
) -> None:
    monkeypatch.setenv("WORKER_COUNT", raw)

    assert conf.worker_count == expected


def test_worker_count_cpus_is_one_per_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_COUNT", "cpus")

    assert conf.worker_count == os.cpu_count()


# "²" passes str.isdigit() but int() refuses it: it must still be a configuration error.
@pytest.mark.parametrize("raw", ["abc", "-1", "2.5", "", "²"])
def test_bad_worker_count_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("WORKER_COUNT", raw)

    with pytest.raises(ImproperlyConfigured) as error:
        conf.worker_count  # noqa: B018

    assert f"WORKER_COUNT={raw!r}" in str(error.value)


def test_worker_log_level_defaults_to_info() -> None:
    assert conf.worker_log_level == "info"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("DEBUG", "debug"), ("Warning", "warning"), ("warn", "warning"), ("TRACE", "debug")],
)
def test_worker_log_level_is_case_insensitive(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: str
) -> None:
    monkeypatch.setenv("WORKER_LOG_LEVEL", raw)

    assert conf.worker_log_level == expected


def test_bad_worker_log_level_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_LOG_LEVEL", "loud")

    with pytest.raises(ImproperlyConfigured, match="'loud'"):
        conf.worker_log_level  # noqa: B018


def test_quickworker_defaults(settings: Settings) -> None:
    del settings.QUICKWORKER  # the app works without the setting at all
    settings.TIME_ZONE = "Europe/Paris"

    assert conf.user_settings() == {}
    assert conf.retain_succeeded == timedelta(hours=1)
    assert conf.retain_failed == timedelta(days=7)
    assert conf.max_attempts == 5
    assert conf.cron_time_zone == ZoneInfo("Europe/Paris")


def test_settings_are_read_lazily(settings: Settings) -> None:
    settings.QUICKWORKER = {"MAX_ATTEMPTS": 2}
    assert conf.max_attempts == 2

    settings.QUICKWORKER = {"MAX_ATTEMPTS": 9, "CRON_TIME_ZONE": "America/New_York"}
    assert conf.max_attempts == 9
    assert conf.cron_time_zone == ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(minutes=5), timedelta(minutes=5)),
        (60, timedelta(minutes=1)),
        (0.5, timedelta(0, 0.5)),
    ],
)
def test_durations_accept_timedelta_or_seconds(
    settings: Settings, value: Any, expected: timedelta
) -> None:
    settings.QUICKWORKER = {"RETAIN_SUCCEEDED": value, "RETAIN_FAILED": value}

    assert conf.retain_succeeded == expected
    assert conf.retain_failed == expected


@pytest.mark.parametrize(
    ("setting", "value", "read"),
    [
        ("RETAIN_SUCCEEDED", -1, lambda: conf.retain_succeeded),
        ("RETAIN_FAILED", timedelta(days=-1), lambda: conf.retain_failed),
        ("RETAIN_FAILED", "7 days", lambda: conf.retain_failed),
        ("MAX_ATTEMPTS", 0, lambda: conf.max_attempts),
        ("MAX_ATTEMPTS", "5", lambda: conf.max_attempts),
        ("MAX_ATTEMPTS", True, lambda: conf.max_attempts),
        ("CRON_TIME_ZONE", "Mars/Olympus", lambda: conf.cron_time_zone),
        ("LEASE", 10**12, lambda: conf.lease),
        ("RETAIN_FAILED", timedelta.max, lambda: conf.retain_failed),
        ("MAX_ATTEMPTS", 2**31, lambda: conf.max_attempts),
        ("CLEANUP_BATCH_SIZE", 2**64, lambda: conf.cleanup_batch_size),
        ("PREPARED_STATEMENTS", "no", lambda: conf.prepared_statements),
        ("PREPARED_STATEMENTS", 0, lambda: conf.prepared_statements),
    ],
)
def test_bad_settings_are_refused_naming_the_value(
    settings: Settings, setting: str, value: Any, read: Any
) -> None:
    settings.QUICKWORKER = {setting: value}

    with pytest.raises(ImproperlyConfigured) as error:
        read()

    assert setting in str(error.value)
    assert repr(value) in str(error.value)


def test_unknown_keys_are_refused_without_hiding_the_known_ones(settings: Settings) -> None:
    settings.QUICKWORKER = {"RETAIN_SUCCEDED": 10, "MAX_ATTEMPTS": 2}

    with pytest.raises(ImproperlyConfigured, match="RETAIN_SUCCEDED"):
        conf.refuse_unknown_keys()
    assert conf.max_attempts == 2  # so that the checks report every bad value at once


def test_a_non_dict_is_refused(settings: Settings) -> None:
    settings.QUICKWORKER = [("MAX_ATTEMPTS", 3)]

    with pytest.raises(ImproperlyConfigured, match="must be a dict"):
        conf.max_attempts  # noqa: B018
