"""End to end: live messages from a job in a real worker to real browsers' websockets.

Production shape (PostgreSQL): runworkers and a separate uvicorn share a Redis channel layer.
Embedded shape (SQLite): ``runworkers --serve`` runs web, websockets and workers in one
process tree with the in-memory layer. And a channel layer that is down must not hurt the
queue.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client
from pytest_django.fixtures import Settings
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from django_quickworker import submit_job
from django_quickworker.models import Status, WorkerJob
from django_quickworker.notifications import broadcast, user_group
from tests.conftest import REPO, Runworkers, StartRunworkers, database_url, wait_until

REDIS_URL = "redis://127.0.0.1:6379/0"
COUNTDOWN = {"steps": 3, "interval": 0.1}
# Longer than redis-py 8's default 5 s socket timeout, which used to end channels_redis's
# blocking reads and close websockets that stayed quiet that long.
IDLE = 7.0
MESSAGE_TIMEOUT = 30.0

Message = dict[str, Any]
AsgiServer = Callable[[dict[str, str]], int]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def serve_embedded(start_runworkers: StartRunworkers, workers: int) -> tuple[Runworkers, int]:
    """A runworkers in embedded mode (web, websockets and workers, the in-memory channel
    layer) on a free port, once it answers there; return it and the port."""
    port = free_port()
    runner = start_runworkers(
        "--workers",
        str(workers),
        "--serve",
        f"127.0.0.1:{port}",
        env={"QUICKWORKER": '{"POLL_INTERVAL": 0.1}', "REDIS_URL": ""},
    )
    wait_for_port(port, lambda: runner.process.poll() is None, lambda: runner.output)
    return runner, port


def wait_for_port(port: int, alive: Callable[[], bool], log: Callable[[], str]) -> None:
    """Wait (generously) until something listens on ``port``; fail if the server died."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not alive():
            raise AssertionError(f"The server on port {port} exited:\n{log()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise AssertionError(f"Nothing listens on port {port} after 60s:\n{log()}")


def user(username: str) -> User:
    created = User.objects.create_user(username=username)
    return created


def open_socket(port: int, someone: User) -> ClientConnection:
    """A browser's websocket to /ws/quickworker/, signed in as ``someone``."""
    client = Client()
    client.force_login(someone)
    name = django_settings.SESSION_COOKIE_NAME
    return connect(
        f"ws://127.0.0.1:{port}/ws/quickworker/",
        additional_headers={"Cookie": f"{name}={client.cookies[name].value}"},
        origin=Origin(f"http://127.0.0.1:{port}"),
        proxy=None,
        open_timeout=10,
    )


def next_message(ws: ClientConnection, timeout: float = MESSAGE_TIMEOUT) -> Message:
    try:
        text = ws.recv(timeout=timeout)
    except TimeoutError:
        raise AssertionError(f"No message within {timeout}s.") from None
    message: Message = json.loads(text)
    return message


def messages_until(ws: ClientConnection, last_type: str) -> list[Message]:
    """Every message up to and including the first of type ``last_type``."""
    messages = [next_message(ws)]
    while messages[-1]["type"] != last_type:
        messages.append(next_message(ws))
    return messages


def assert_quiet(ws: ClientConnection, seconds: float = 0.3) -> None:
    """Nothing arrives, and the socket is still open."""
    try:
        message = ws.recv(timeout=seconds)
    except TimeoutError:
        return
    except ConnectionClosed as closed:
        raise AssertionError(
            f"The socket was closed while quiet ({closed}): with redis-py 8, is the channel "
            "layer's socket_timeout None?"
        ) from None
    raise AssertionError(f"Expected nothing, got {message!r}.")


def assert_a_countdown_story(messages: list[Message], job: WorkerJob) -> None:
    """started, progress up to current == total, finished: succeeded with the result."""
    assert all(set(message) == {"type", "data"} for message in messages), messages
    types = [message["type"] for message in messages]
    assert types[0] == "job.started", types
    assert types[-1] == "job.finished", types
    assert set(types[1:-1]) == {"job.progress"}, types
    assert all(m["data"]["job"] == job.pk for m in messages), messages
    assert all(m["data"]["type"] == "demo.countdown" for m in messages), messages
    assert messages[0]["data"]["attempt"] == 1
    currents = [m["data"]["current"] for m in messages[1:-1]]
    assert currents == sorted(currents) and currents, messages
    assert messages[-2]["data"] == {
        "job": job.pk,
        "type": "demo.countdown",
        "current": 3,
        "total": 3,
        "message": "step 3 of 3",
    }
    finished = messages[-1]["data"]
    assert (finished["status"], finished["result"]) == ("succeeded", {"steps": 3}), finished


def status_of(job: WorkerJob) -> str:
    job.refresh_from_db()
    return job.status


@pytest.fixture
def redis_url() -> str:
    """The Redis the PostgreSQL shape needs; fail (never skip) with how to start it."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        pytest.fail(
            f"Redis is not reachable at {REDIS_URL} ({error}); the live tests need it. "
            "Start it: redis-server --daemonize yes --port 6379 --save '' --appendonly no",
            pytrace=False,
        )
    return REDIS_URL


@pytest.fixture
def asgi_server(tmp_path: Path) -> Iterator[AsgiServer]:
    """Start the test project's ASGI application under uvicorn, in its own process."""
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> int:
        port = free_port()
        log = tmp_path / f"uvicorn-{len(started)}.log"
        environment = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "DJANGO_SETTINGS_MODULE": "testproject.settings",
            "PYTHONPATH": os.pathsep.join([str(REPO / "testproject"), str(REPO)]),
            **env,
        }
        environment.pop("TEST_DATABASE_NAME", None)
        with log.open("wb") as output:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "testproject.asgi:application",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--lifespan",
                    "off",
                ],
                env=environment,
                cwd=REPO / "testproject",
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(process)
        wait_for_port(port, lambda: process.poll() is None, lambda: log.read_text(errors="replace"))
        return port

    yield start
    for process in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.mark.postgresql
@pytest.mark.mysql
def test_live_messages_cross_redis_to_the_owners_socket_only(
    start_runworkers: StartRunworkers,
    asgi_server: AsgiServer,
    redis_url: str,
    settings: Settings,
) -> None:
    # Groups of this run only: other runs may share this Redis.
    prefix = f"qwlive{uuid.uuid4().hex[:12]}"
    quickworker = json.dumps({"POLL_INTERVAL": 0.1, "GROUP_PREFIX": prefix})
    settings.QUICKWORKER = {"GROUP_PREFIX": prefix}
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": redis_url, "socket_timeout": None}]},
        }
    }
    alice, bob = user("alice"), user("bob")
    port = asgi_server({"REDIS_URL": redis_url, "QUICKWORKER": quickworker})
    runner = start_runworkers(
        "--workers", "1", env={"REDIS_URL": redis_url, "QUICKWORKER": quickworker}
    )

    with open_socket(port, alice) as alice_ws, open_socket(port, bob) as bob_ws:
        time.sleep(IDLE)
        assert_quiet(alice_ws, 0.1)  # still open after a long quiet spell
        assert_quiet(bob_ws, 0.1)
        job = submit_job(tag="live:alice", type="demo.countdown", user=alice, data=COUNTDOWN)

        try:
            story = messages_until(alice_ws, "job.finished")
        except (ConnectionClosed, AssertionError) as error:
            raise AssertionError(
                f"{error} (the job is {status_of(job)})\n{runner.output}"
            ) from None
        assert_a_countdown_story(story, job)
        assert status_of(job) == Status.SUCCEEDED
        # Bob's first message is the sentinel sent now through Redis: he got none of Alice's.
        broadcast("live.sentinel", {"after": job.pk})
        sentinel = {"type": "live.sentinel", "data": {"after": job.pk}}
        assert next_message(bob_ws, 10) == sentinel
        assert next_message(alice_ws, 10) == sentinel
        assert_quiet(bob_ws)

    assert runner.process.poll() is None, runner.output
    assert user_group(alice.pk).startswith(prefix)


@pytest.mark.sqlite
def test_embedded_mode_serves_live_messages_to_the_owners_socket_only(
    start_runworkers: StartRunworkers,
) -> None:
    alice, bob = user("alice"), user("bob")
    runner, port = serve_embedded(start_runworkers, workers=2)
    assert "channels.layers.InMemoryChannelLayer" in runner.output
    assert f"serving:       http://127.0.0.1:{port}/" in runner.output

    with open_socket(port, alice) as alice_ws, open_socket(port, bob) as bob_ws:
        job = submit_job(tag="embedded:alice", type="demo.countdown", user=alice, data=COUNTDOWN)

        assert_a_countdown_story(messages_until(alice_ws, "job.finished"), job)
        # The sentinel must come through the same process tree: a job of Bob's own. Had any
        # of Alice's messages reached Bob, it would come first.
        own = submit_job(tag="embedded:bob", type="demo.add", user=bob, data={"a": 1, "b": 2})
        bob_story = messages_until(bob_ws, "job.finished")
        assert bob_story[0] == {
            "type": "job.started",
            "data": {"job": own.pk, "type": "demo.add", "attempt": 1},
        }
        assert bob_story[-1]["data"]["result"] == {"sum": 3}
        assert [m["data"]["job"] for m in bob_story] == [own.pk] * len(bob_story)
        assert_quiet(alice_ws)

    assert runner.process.poll() is None, runner.output


@pytest.mark.sqlite
def test_the_owner_hears_how_a_job_that_runworkers_ended_finished(
    start_runworkers: StartRunworkers,
) -> None:
    # The timeout is the parent's to enforce: it ends the worker and records the failure,
    # and its job_finished reaches the owner's socket through the parent's relay.
    alice = user("alice")
    runner, port = serve_embedded(start_runworkers, workers=1)

    with open_socket(port, alice) as alice_ws:
        job = submit_job(
            tag="embedded:overrun",
            type="demo.countdown",
            user=alice,
            data={"steps": 600, "interval": 0.1},
            timeout=1,
        )
        story = messages_until(alice_ws, "job.finished")

    assert story[0]["type"] == "job.started", story
    assert status_of(job) == Status.FAILED
    assert story[-1]["data"] == {
        "job": job.pk,
        "type": "demo.countdown",
        "status": "failed",
        "result": job.result,
    }
    assert isinstance(job.result, dict) and "timed out" in job.result["error"], job.result
    assert runner.process.poll() is None, runner.output


def test_a_channel_layer_that_is_down_costs_live_messages_not_jobs(
    start_runworkers: StartRunworkers,
) -> None:
    alice = user("alice")
    closed_port = free_port()  # nothing listens there once the probe is closed
    runner = start_runworkers(
        "--workers",
        "1",
        env={
            "REDIS_URL": f"redis://127.0.0.1:{closed_port}/0",
            "QUICKWORKER": '{"POLL_INTERVAL": 0.1}',
        },
    )
    job = submit_job(tag="no-redis", type="demo.countdown", user=alice, data=COUNTDOWN)

    wait_until(lambda: status_of(job) == Status.SUCCEEDED, what="the job to succeed")
    assert job.result == {"steps": 3}
    assert job.progress == {"current": 3, "total": 3, "message": "step 3 of 3"}
    failure = f"relay to {user_group(alice.pk)} failed"
    wait_until(lambda: failure in runner.output, timeout=10, what="the relay failure warning")
    assert "ConnectionError" in next(x for x in runner.output.splitlines() if failure in x)
    # The parent lives on and keeps serving the queue.
    later = submit_job(tag="no-redis:later", type="demo.add", user=alice, data={"a": 2, "b": 2})
    wait_until(lambda: status_of(later) == Status.SUCCEEDED, what="a later job to succeed")
    assert later.result == {"sum": 4}
    assert runner.process.poll() is None, runner.output
    assert "Traceback" not in runner.output, runner.output
