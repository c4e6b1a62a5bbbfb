"""NotificationConsumer, through the test project's ASGI application (origin check, session
auth, routing) and the in-memory channel layer, with in-process websocket connections.

channels.testing's WebsocketCommunicator cannot be imported without daphne, which the tests
do not install, so ``Socket`` below drives the application with asgiref's
ApplicationCommunicator, as WebsocketCommunicator does.
"""

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from asgiref.testing import ApplicationCommunicator
from channels.layers import get_channel_layer
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client
from pytest_django.fixtures import Settings

from django_quickworker import broadcast, notify_user
from django_quickworker.consumers import UNAUTHENTICATED
from django_quickworker.notifications import (
    anotify_user,
    broadcast_group,
    notify_progress,
    user_group,
)

PATH = "/ws/quickworker/"
ORIGIN = (b"origin", b"http://127.0.0.1")

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def in_memory_layer(settings: Settings) -> None:
    """A fresh in-memory channel layer for every test, whatever REDIS_URL says."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


class Socket:
    """One browser websocket to the test project's ASGI application, in-process."""

    def __init__(self, headers: list[tuple[bytes, bytes]], path: str = PATH) -> None:
        from testproject.asgi import application

        scope = {
            "type": "websocket",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1"), *headers],
            "subprotocols": [],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
        }
        self.communicator = ApplicationCommunicator(application, scope)

    async def connect(self) -> tuple[bool, Any]:
        """(True, None) when accepted; (False, close code) when refused."""
        await self.communicator.send_input({"type": "websocket.connect"})
        response = await self.communicator.receive_output(timeout=2)
        if response["type"] == "websocket.close":
            return False, response.get("code", 1000)
        assert response["type"] == "websocket.accept", response
        return True, None

    async def receive(self, timeout: float = 1.0) -> Any:
        """The next message the browser gets, decoded from its JSON text frame."""
        response = await self.communicator.receive_output(timeout=timeout)
        assert response["type"] == "websocket.send", response
        assert "text" in response and "bytes" not in response, response
        return json.loads(response["text"])

    async def nothing(self, timeout: float = 0.2) -> bool:
        return await self.communicator.receive_nothing(timeout=timeout)

    async def send(self, content: Any) -> None:
        await self.communicator.send_input(
            {"type": "websocket.receive", "text": json.dumps(content)}
        )

    async def close(self) -> None:
        await self.communicator.send_input({"type": "websocket.disconnect", "code": 1000})
        await self.communicator.wait(timeout=2)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async_to_sync(scenario)()


def user(username: str) -> User:
    created = User.objects.create_user(username=username)
    return created


def cookie_of(someone: User) -> tuple[bytes, bytes]:
    """The session cookie of ``someone`` signed in, as a browser would send it."""
    client = Client()
    client.force_login(someone)
    session = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    return (b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={session}".encode())


async def signed_in(someone: User) -> Socket:
    socket = Socket([ORIGIN, await sync_to_async(cookie_of)(someone)])
    assert await socket.connect() == (True, None)
    return socket


# Who may connect


def test_an_anonymous_socket_is_refused() -> None:
    async def scenario() -> None:
        socket = Socket([ORIGIN])
        assert await socket.connect() == (False, UNAUTHENTICATED)

    assert UNAUTHENTICATED == 4401
    run(scenario)


def test_a_socket_with_an_unknown_session_is_refused() -> None:
    async def scenario() -> None:
        socket = Socket([ORIGIN, (b"cookie", b"sessionid=forgedforgedforgedforgedforged")])
        assert await socket.connect() == (False, UNAUTHENTICATED)

    run(scenario)


def test_a_refused_socket_joins_no_group() -> None:
    async def scenario() -> None:
        socket = Socket([ORIGIN])
        assert (await socket.connect())[0] is False
        layer = get_channel_layer()
        assert not layer.groups.get(broadcast_group())  # in-memory layer internals
        await sync_to_async(broadcast)("anyone?", {})
        assert await socket.nothing()

    run(scenario)


def test_a_signed_in_socket_from_a_foreign_origin_is_refused() -> None:
    alice = user("alice")

    async def scenario() -> None:
        cookie = await sync_to_async(cookie_of)(alice)
        socket = Socket([(b"origin", b"http://evil.example"), cookie])
        assert (await socket.connect())[0] is False

    run(scenario)


def test_a_signed_in_user_is_accepted_into_their_group_and_the_broadcast_group() -> None:
    alice = user("alice")

    async def scenario() -> None:
        await signed_in(alice)
        layer = get_channel_layer()
        assert len(layer.groups.get(user_group(alice.pk), {})) == 1
        assert len(layer.groups.get(broadcast_group(), {})) == 1

    run(scenario)


# Who gets what


def test_notify_user_reaches_that_user_only_in_the_browser_format() -> None:
    alice, bob = user("alice"), user("bob")

    async def scenario() -> None:
        alice_socket, bob_socket = await signed_in(alice), await signed_in(bob)

        await sync_to_async(notify_user)(alice.pk, "job.done", {"job": 1, "ok": True})

        assert await alice_socket.receive() == {"type": "job.done", "data": {"job": 1, "ok": True}}
        assert await bob_socket.nothing()
        assert await alice_socket.nothing()  # once, not twice

        await sync_to_async(notify_user)(bob.pk, "for.bob", None)

        assert await bob_socket.receive() == {"type": "for.bob", "data": None}
        assert await alice_socket.nothing()

    run(scenario)


def test_broadcast_reaches_every_signed_in_user() -> None:
    alice, bob = user("alice"), user("bob")

    async def scenario() -> None:
        sockets = [await signed_in(alice), await signed_in(bob)]

        await sync_to_async(broadcast)("maintenance", {"in_minutes": 5})

        for socket in sockets:
            assert await socket.receive() == {"type": "maintenance", "data": {"in_minutes": 5}}
            assert await socket.nothing()

    run(scenario)


def test_every_open_socket_of_a_user_gets_the_message_until_it_closes() -> None:
    alice = user("alice")

    async def scenario() -> None:
        first_tab, second_tab = await signed_in(alice), await signed_in(alice)

        await anotify_user(alice.pk, "hello", [1])

        assert await first_tab.receive() == {"type": "hello", "data": [1]}
        assert await second_tab.receive() == {"type": "hello", "data": [1]}

        await first_tab.close()
        layer = get_channel_layer()
        assert len(layer.groups.get(user_group(alice.pk), {})) == 1
        assert len(layer.groups.get(broadcast_group(), {})) == 1
        await anotify_user(alice.pk, "again", [2])

        assert await second_tab.receive() == {"type": "again", "data": [2]}

    run(scenario)


def test_a_jobs_progress_reaches_its_owner() -> None:
    alice, bob = user("alice"), user("bob")

    async def scenario() -> None:
        alice_socket, bob_socket = await signed_in(alice), await signed_in(bob)
        progress = {"type": "demo.countdown", "current": 2, "total": 3, "message": "step 2 of 3"}

        await sync_to_async(notify_progress)(17, alice.pk, progress)

        assert await alice_socket.receive() == {
            "type": "job.progress",
            "data": {"job": 17, **progress},
        }
        assert await bob_socket.nothing()

    run(scenario)


def test_what_the_browser_sends_is_ignored() -> None:
    alice = user("alice")

    async def scenario() -> None:
        socket = await signed_in(alice)

        await socket.send({"type": "subscribe", "group": user_group(12345)})
        await socket.send({"type": "broadcast", "data": "spoof"})

        assert await socket.nothing()
        await sync_to_async(notify_user)(12345, "not.for.alice", {})
        assert await socket.nothing()
        await sync_to_async(notify_user)(alice.pk, "still.open", {})
        assert await socket.receive() == {"type": "still.open", "data": {}}

    run(scenario)
