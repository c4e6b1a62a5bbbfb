"""Live messages across hosts: a job on worker host A reaches the websocket of its user, open
on web process B, through the Redis channel layer they share (and nothing else: A reaches
the database through a proxy of its own, as a host of its own, and serves no web request).
"""

import json
import uuid

import pytest
from pytest_django.fixtures import Settings
from websockets.exceptions import ConnectionClosed

from demo.hosts import proxy_to
from django_quickworker import submit_job
from django_quickworker.models import Status
from tests.conftest import StartRunworkers, database_url
from tests.rig import ready, through
from tests.test_hosts import token_of
from tests.test_live import (  # noqa: F401 (asgi_server and redis_url: fixtures, by name)
    COUNTDOWN,
    AsgiServer,
    asgi_server,
    assert_a_countdown_story,
    assert_quiet,
    messages_until,
    open_socket,
    redis_url,
    status_of,
    user,
)

# heavy: uvicorn and a runworkers start, about 25 s on a busy 2-core machine.
pytestmark = [pytest.mark.postgresql, pytest.mark.mysql, pytest.mark.heavy]


def test_a_job_on_host_a_reaches_its_users_socket_on_web_process_b(
    start_runworkers: StartRunworkers, request: pytest.FixtureRequest, settings: Settings
) -> None:
    redis: str = request.getfixturevalue("redis_url")
    web: AsgiServer = request.getfixturevalue("asgi_server")
    # Groups of this test only: other runs, and other tox envs, may share this Redis.
    prefix = f"qwhosts{uuid.uuid4().hex[:12]}"
    settings.QUICKWORKER = {"GROUP_PREFIX": prefix}
    shared = {"REDIS_URL": redis, "QUICKWORKER": json.dumps({"GROUP_PREFIX": prefix})}
    alice, bob = user("alice"), user("bob")
    port = web(shared)  # web process B: the ASGI app under uvicorn, no workers
    with proxy_to(database_url()) as proxy:
        host_a = start_runworkers(
            "--workers",
            "1",
            "--queues",
            "host-a",
            env={
                **shared,
                **through(proxy),
                "QUICKWORKER": json.dumps({"GROUP_PREFIX": prefix, "POLL_INTERVAL": 0.1}),
            },
        )
        ready(host_a)
        with open_socket(port, alice) as alice_ws, open_socket(port, bob) as bob_ws:
            job = submit_job(
                tag="hosts:live", type="demo.countdown", queue="host-a", user=alice, data=COUNTDOWN
            )
            try:
                story = messages_until(alice_ws, "job.finished")
            except ConnectionClosed as closed:
                raise AssertionError(f"Alice's socket closed: {closed}\n{host_a.output}") from None
            assert_a_countdown_story(story, job)
            assert_quiet(bob_ws)  # none of Alice's messages
    assert status_of(job) == Status.SUCCEEDED
    assert job.worker.split(":")[2] == token_of(host_a)  # run on host A
