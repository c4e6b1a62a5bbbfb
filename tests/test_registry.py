"""The job registry: @job, JobType, duplicate names, validation and autodiscovery."""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_quickworker import job
from django_quickworker.exceptions import (
    InvalidCronSchedule,
    InvalidDuration,
    InvalidJobTypeName,
    InvalidOption,
    UnknownJobType,
)
from django_quickworker.options import JobOptions
from django_quickworker.registry import JobRegistry, JobType, registry

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_TYPES = {"demo.add", "demo.fail", "demo.countdown", "demo.asyncSleep"}


def sync_job(ctx: Any) -> int:
    return 1


async def async_job(ctx: Any) -> int:
    return 2


def other_job(ctx: Any) -> int:
    return 3


def test_job_registers_a_sync_function_with_its_options(job_registry: JobRegistry) -> None:
    decorated = job(
        "tests.syncJob",
        timeout=timedelta(minutes=2),
        cron="*/5 * * * *",
        queue="emails",
        priority=7,
        max_attempts=3,
        auto_reschedule_on_failure=True,
        auto_reschedule_on_failure_delay=30,
    )(sync_job)

    assert decorated is sync_job
    job_type = job_registry.get("tests.syncJob")
    assert job_type == JobType(
        name="tests.syncJob",
        function=sync_job,
        options=JobOptions(
            timeout=timedelta(minutes=2),
            queue="emails",
            priority=7,
            max_attempts=3,
            auto_reschedule_on_failure=True,
            auto_reschedule_on_failure_delay=timedelta(seconds=30),
        ),
        cron="*/5 * * * *",
    )
    assert job_type.is_async is False
    assert job_type.path == f"{__name__}.sync_job"
    assert "tests.syncJob" in job_registry


def test_job_registers_an_async_function_with_defaults(job_registry: JobRegistry) -> None:
    decorated = job("tests.asyncJob", timeout=90.5)(async_job)

    assert decorated is async_job
    job_type = job_registry.get("tests.asyncJob")
    assert job_type.is_async is True
    assert job_type.function is async_job
    assert job_type.cron is None
    assert job_type.options == JobOptions(timeout=timedelta(seconds=90.5))
    assert (job_type.options.queue, job_type.options.priority) == ("default", 0)
    assert (job_type.options.max_attempts, job_type.options.auto_reschedule_on_failure) == (
        None,
        False,
    )
    assert job_type.options.auto_reschedule_on_failure_delay == timedelta(0)


def test_registry_iterates_in_name_order(job_registry: JobRegistry) -> None:
    job("tests.zzz")(sync_job)
    job("tests.aaa")(other_job)

    names = [job_type.name for job_type in job_registry]

    assert names == sorted(names)
    assert {"tests.aaa", "tests.zzz"} <= set(names)


def test_two_functions_under_one_name_are_refused_naming_both(job_registry: JobRegistry) -> None:
    job("tests.taken")(sync_job)

    with pytest.raises(ImproperlyConfigured) as error:
        job("tests.taken")(other_job)

    assert f"{__name__}.sync_job" in str(error.value)
    assert f"{__name__}.other_job" in str(error.value)
    assert job_registry.get("tests.taken").function is sync_job


def test_the_same_function_may_register_twice(job_registry: JobRegistry) -> None:
    job("tests.twice")(sync_job)
    job("tests.twice", queue="second")(sync_job)

    assert job_registry.get("tests.twice").options.queue == "second"


@pytest.mark.parametrize("name", ["", "1abc", "has space", "a..b", "a" * 101, None, 5, ".a", "a."])
def test_invalid_type_names_are_refused(job_registry: JobRegistry, name: Any) -> None:
    with pytest.raises(InvalidJobTypeName) as error:
        job(name)

    assert isinstance(error.value, ValueError)
    assert repr(name) in str(error.value)


@pytest.mark.parametrize("name", ["a", "_private", "sendWelcomeEmail", "billing.send_2", "a" * 100])
def test_valid_type_names_are_accepted(job_registry: JobRegistry, name: str) -> None:
    job(name)(sync_job)

    assert job_registry.get(name).function is sync_job


@pytest.mark.parametrize(
    ("options", "exception", "named"),
    [
        ({"cron": "not a cron"}, InvalidCronSchedule, "'not a cron'"),
        ({"cron": "61 * * * *"}, InvalidCronSchedule, "'61 * * * *'"),
        ({"timeout": -1}, InvalidDuration, "-1"),
        ({"timeout": timedelta(seconds=-5)}, InvalidDuration, "timeout"),
        ({"timeout": "10"}, InvalidDuration, "'10'"),
        ({"auto_reschedule_on_failure_delay": -0.5}, InvalidDuration, "-0.5"),
        ({"queue": ""}, InvalidOption, "queue=''"),
        ({"queue": "has space"}, InvalidOption, "'has space'"),
        ({"queue": "q" * 101}, InvalidOption, "queue="),
        ({"priority": "high"}, InvalidOption, "'high'"),
        ({"priority": True}, InvalidOption, "True"),
        ({"priority": 2**31}, InvalidOption, str(2**31)),
        ({"max_attempts": 0}, InvalidOption, "max_attempts=0"),
        ({"max_attempts": True}, InvalidOption, "max_attempts=True"),
        ({"max_attempts": 2**31}, InvalidOption, str(2**31)),
        ({"timeout": 10**12}, InvalidDuration, "100 years"),
        ({"auto_reschedule_on_failure_delay": timedelta.max}, InvalidDuration, "100 years"),
    ],
)
def test_invalid_options_are_refused(
    job_registry: JobRegistry, options: dict[str, Any], exception: type[Exception], named: str
) -> None:
    with pytest.raises(exception) as error:
        job("tests.badOptions", **options)

    assert named in str(error.value)
    assert "tests.badOptions" not in job_registry


def test_unknown_type_lists_the_registered_names() -> None:
    with pytest.raises(UnknownJobType) as error:
        registry.get("nope")

    assert isinstance(error.value, LookupError)
    assert "'nope'" in str(error.value)
    for name in DEMO_TYPES:
        assert name in str(error.value)


def test_an_empty_registry_says_so() -> None:
    with pytest.raises(UnknownJobType, match="registered types are: none"):
        JobRegistry().get("nope")


def test_demo_jobs_are_autodiscovered() -> None:
    assert {job_type.name for job_type in registry} >= DEMO_TYPES
    assert registry.get("demo.add").function.__module__ == "demo.jobs"
    assert registry.get("demo.asyncSleep").is_async is True
    assert registry.get("demo.countdown").options.timeout == timedelta(seconds=300)


def test_autodiscovery_runs_when_django_starts() -> None:
    """A fresh process that only starts Django sees the demo jobs; nothing imported demo.jobs."""
    code = (
        "import sys; from django_quickworker.registry import registry; "
        "print('demo.jobs' in sys.modules, ','.join(t.name for t in registry))"
    )
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "testproject" / "manage.py"), "shell", "-c", code],
        cwd=REPO_ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "testproject.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    loaded, names = result.stdout.strip().splitlines()[-1].split(" ")
    assert loaded == "True"
    assert set(names.split(",")) >= DEMO_TYPES


def test_a_zero_timeout_is_refused(job_registry: JobRegistry) -> None:
    with pytest.raises(InvalidOption, match="timeout=0"):
        job("zeroTimeout", timeout=0)
