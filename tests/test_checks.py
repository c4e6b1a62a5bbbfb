"""System checks: configuration mistakes show up in ``manage.py check`` with quickworker ids."""

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import Error, Warning, run_checks
from django.db import connections
from django.test import override_settings

from django_quickworker.checks import check_configuration, check_database

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKER_COUNT", raising=False)
    monkeypatch.delenv("WORKER_LOG_LEVEL", raising=False)


@pytest.fixture
def sqlite_options() -> Iterator[dict[str, Any]]:
    """The default database's OPTIONS, to change for one test and restore afterwards."""
    settings_dict = connections["default"].settings_dict
    saved = settings_dict.get("OPTIONS", {})
    settings_dict["OPTIONS"] = dict(saved)
    yield settings_dict["OPTIONS"]
    settings_dict["OPTIONS"] = saved


def test_the_test_project_passes_every_check() -> None:
    assert run_checks() == []


def test_bad_worker_count_is_e001(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_COUNT", "abc")

    messages = run_checks()

    assert [(type(m), m.id) for m in messages] == [(Error, "quickworker.E001")]
    assert "'abc'" in messages[0].msg


def test_bad_worker_log_level_is_e002(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_LOG_LEVEL", "verbose")

    messages = check_configuration(None)

    assert [(type(m), m.id) for m in messages] == [(Error, "quickworker.E002")]
    assert "'verbose'" in messages[0].msg


def test_both_environment_errors_are_reported_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_COUNT", "-1")
    monkeypatch.setenv("WORKER_LOG_LEVEL", "verbose")

    assert [m.id for m in check_configuration(None)] == ["quickworker.E001", "quickworker.E002"]


# {1: ..., "NOPE": ...}: unknown keys of mixed types must be reported, not crash sorting.
@pytest.mark.parametrize("value", [{"NOPE": 1}, "not a dict", {1: 2, "NOPE": 3}])
def test_malformed_quickworker_setting_is_e003(value: Any) -> None:
    with override_settings(QUICKWORKER=value):
        messages = run_checks()

    assert [(type(m), m.id) for m in messages] == [(Error, "quickworker.E003")]


def test_bad_quickworker_value_is_e004() -> None:
    with override_settings(QUICKWORKER={"MAX_ATTEMPTS": 0}):
        messages = run_checks()

    assert [(type(m), m.id) for m in messages] == [(Error, "quickworker.E004")]
    assert "MAX_ATTEMPTS" in messages[0].msg


def test_each_bad_quickworker_value_gets_its_own_e004() -> None:
    bad = {"RETAIN_SUCCEEDED": -1, "RETAIN_FAILED": "1d", "CRON_TIME_ZONE": "Nowhere/Town"}
    with override_settings(QUICKWORKER=bad):
        messages = check_configuration(None)

    assert [m.id for m in messages] == ["quickworker.E004"] * 3
    assert all(
        repr(value) in message.msg for value, message in zip(bad.values(), messages, strict=True)
    )


def test_an_unknown_key_does_not_hide_the_other_bad_values() -> None:
    bad = {"RETAIN_SUCCEDED": 10, "MAX_ATTEMPTS": 0, "CRON_TIME_ZONE": "Nowhere/Town"}
    with override_settings(QUICKWORKER=bad):
        messages = check_configuration(None)

    assert [m.id for m in messages] == ["quickworker.E003"] + ["quickworker.E004"] * 2
    assert "'RETAIN_SUCCEDED'" in messages[0].msg
    assert "MAX_ATTEMPTS" in messages[1].msg
    assert "'Nowhere/Town'" in messages[2].msg


@pytest.mark.parametrize("lease", [2, 9.5, timedelta(seconds=5)])
def test_a_lease_too_short_to_renew_reliably_is_w002(lease: Any) -> None:
    with override_settings(QUICKWORKER={"LEASE": lease}):
        messages = run_checks()

    assert [(type(m), m.id) for m in messages] == [(Warning, "quickworker.W002")]
    assert repr(lease) in messages[0].msg
    assert "LEASE/4" in messages[0].msg  # why
    assert "at least 10 seconds" in (messages[0].hint or "")  # and the minimum


@pytest.mark.parametrize("lease", [10, timedelta(minutes=1)])
def test_a_lease_of_ten_seconds_or_more_passes(lease: Any) -> None:
    with override_settings(QUICKWORKER={"LEASE": lease}):
        assert check_configuration(None) == []


def test_a_bad_lease_is_one_error_not_also_a_warning() -> None:
    with override_settings(QUICKWORKER={"LEASE": 0}):
        assert [m.id for m in check_configuration(None)] == ["quickworker.E004"]


@pytest.mark.sqlite
@pytest.mark.parametrize("mode", ["IMMEDIATE", "immediate"])
def test_sqlite_in_immediate_mode_passes(sqlite_options: dict[str, Any], mode: str) -> None:
    # Django accepts the mode in any case (it upper-cases it), so the check must too.
    sqlite_options["transaction_mode"] = mode

    assert check_database(None) == []


@pytest.mark.sqlite
def test_sqlite_without_immediate_mode_is_w001(sqlite_options: dict[str, Any]) -> None:
    sqlite_options.pop("transaction_mode", None)

    messages = run_checks()

    assert [(type(m), m.id) for m in messages] == [(Warning, "quickworker.W001")]
    assert "DEFERRED" in messages[0].msg
    assert "IMMEDIATE" in (messages[0].hint or "")


@pytest.mark.postgresql
@pytest.mark.mysql
def test_server_databases_need_no_transaction_mode() -> None:
    assert connections["default"].vendor in ("postgresql", "mysql")
    assert check_database(None) == []


def test_manage_py_check_reports_every_bad_value_at_once() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "testproject" / "manage.py"), "check"],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "WORKER_COUNT": "abc",
            "QUICKWORKER": '{"NOPE": 1, "MAX_ATTEMPTS": 0, "LEASE": 2}',
            "DJANGO_SETTINGS_MODULE": "testproject.settings",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )

    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for expected in ["quickworker.E001", "'abc'", "quickworker.E003", "'NOPE'"]:
        assert expected in output
    for expected in ["quickworker.E004", "MAX_ATTEMPTS", "quickworker.W002", "LEASE"]:
        assert expected in output
