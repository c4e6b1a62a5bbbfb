"""``/healthz`` of ``runworkers --metrics`` while its database goes away and comes back:
a throwaway PostgreSQL server of the test's own, stopped for real."""

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from demo.dbserver import free_port
from tests.conftest import StartRunworkers, wait_until
from tests.test_outage import Server, cluster, manage

__all__ = ["cluster"]  # the fixture, shared with the outage test

DATABASE = "quickworker_outage"


def health(port: int) -> tuple[int, dict[str, Any]]:
    """The status code and JSON body of /healthz; (0, {}) while nothing answers."""
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return 0, {}


@pytest.mark.postgresql
@pytest.mark.mysql
def test_healthz_names_a_database_that_does_not_answer(
    cluster: Server, start_runworkers: StartRunworkers
) -> None:
    manage(cluster, "migrate", "--verbosity", "0")
    port = free_port()
    runner = start_runworkers(
        "--metrics",
        f"127.0.0.1:{port}",
        env={"DATABASE_URL": cluster.url(DATABASE), "QUICKWORKER": '{"LEASE": 4}'},
    )
    wait_until(lambda: health(port)[0] == 200, what=f"a healthy parent\n{runner.output}")
    assert health(port) == (200, {"status": "ok", "problems": []})

    cluster.stop("fast")
    wait_until(lambda: health(port)[0] == 503, what="a 503")
    code, body = health(port)
    assert code == 503 and body["status"] == "unhealthy", body
    assert any(problem.startswith("The database does not answer: ") for problem in body["problems"])
    # With the database down, the parent's heartbeat stops too, and it says so after a lease.
    wait_until(
        lambda: any("last heartbeat" in problem for problem in health(port)[1]["problems"]),
        what="the stale heartbeat to be reported",
    )
    assert runner.process.poll() is None, runner.output

    cluster.start()
    wait_until(lambda: health(port)[0] == 200, timeout=60, what=f"recovery\n{runner.output}")
    assert health(port) == (200, {"status": "ok", "problems": []})
