"""The multi-host rig of the tests: runworkers trees started as hosts of their own (each its
start token), reaching the database through a proxy of their own (demo.hosts) that a test
cuts for a partition, or with their clock shifted."""

import pytest

from demo.hosts import MissingFaketime, Proxy, skewed_clock
from django_quickworker.models import WorkerProcess
from tests.conftest import STARTUP_WAIT, Runworkers, database_url, wait_until


def through(proxy: Proxy) -> dict[str, str]:
    """The environment of a host that reaches the test database through ``proxy``."""
    return {"DATABASE_URL": proxy.url(database_url())}


def skewed(seconds: int) -> dict[str, str]:
    """The environment of a host whose clock is ``seconds`` off."""
    try:
        return skewed_clock(seconds)
    except MissingFaketime as error:
        pytest.fail(str(error))


def ready(runner: Runworkers) -> None:
    """Wait until ``runner`` has written its WorkerProcess row."""
    wait_until(
        lambda: WorkerProcess.objects.filter(name__contains=f":{runner.process.pid}:").exists(),
        timeout=STARTUP_WAIT,
        what="runworkers to start",
    )
