"""Live messages: group names, encoding, sending outside and inside workers, and the relay.

The channel layer here is Channels' in-memory layer (set per test, so each test gets a fresh
one); real processes and Redis are in test_live.
"""

import asyncio
import json
import logging
import multiprocessing
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer
from django.contrib.auth.models import User
from pytest_django.fixtures import Settings

from django_quickworker import broadcast, job, notify_user, submit_job
from django_quickworker.claim import claim_next
from django_quickworker.context import JobContext
from django_quickworker.exceptions import InvalidJobData, InvalidMessage
from django_quickworker.models import WorkerJob
from django_quickworker.notifications import (
    EVENT_TYPE,
    abroadcast,
    anotify_user,
    broadcast_group,
    encode,
    notify_progress,
    user_group,
)
from django_quickworker.protocol import ChannelLayer, Live, Message, ParentPipe, route
from django_quickworker.registry import JobRegistry
from django_quickworker.relay import Relay
from django_quickworker.worker import execute

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
# Channels' own rule for group names (channels.layers.BaseChannelLayer).
GROUP_NAME = re.compile(r"[A-Za-z0-9_.-]{1,99}")

SentToParent = Callable[[], list[Message]]


@pytest.fixture(autouse=True)
def in_memory_layer(settings: Settings) -> None:
    """A fresh in-memory channel layer for every test, whatever REDIS_URL says."""
    settings.CHANNEL_LAYERS = IN_MEMORY


@pytest.fixture
def to_parent() -> Iterator[SentToParent]:
    """Act as a worker child: messages go over a pipe to the parent, not to the layer; the
    fixture reads what the parent would receive so far."""
    parent_end, child_end = multiprocessing.Pipe()
    route.install(ParentPipe(child_end, on_lost=lambda: None))
    received: list[Message] = []

    def sent() -> list[Message]:
        while parent_end.poll(0):
            received.append(parent_end.recv())
        return received

    yield sent
    route.install(ChannelLayer())
    parent_end.close()
    child_end.close()


def valid_group(name: str) -> bool:
    return bool(BaseChannelLayer().require_valid_group_name(name)) and bool(
        GROUP_NAME.fullmatch(name)
    )


# Group names


def test_group_names_start_with_the_default_prefix() -> None:
    assert user_group(42) == "quickworker.user.42"
    assert broadcast_group() == "quickworker.broadcast"


def test_group_names_use_the_configured_prefix(settings: Settings) -> None:
    settings.QUICKWORKER = {"GROUP_PREFIX": "shop-live_2"}

    assert user_group(42) == "shop-live_2.user.42"
    assert broadcast_group() == "shop-live_2.broadcast"


LONGEST_PREFIX = "p" * 50  # conf allows up to 50 characters


@pytest.mark.parametrize("prefix", ["quickworker", LONGEST_PREFIX])
@pytest.mark.parametrize(
    "user_id",
    [
        1,
        2**63 - 1,
        uuid.UUID("12345678-9abc-4def-8123-456789abcdef"),
        "alice@example.com",
        "a b/c:d?e#f",
        "ünïcødé-名前",
        "",
    ],
    ids=["int", "bigint", "uuid", "email", "punctuation", "unicode", "empty"],
)
def test_every_kind_of_user_id_gives_a_valid_group_name(
    settings: Settings, prefix: str, user_id: object
) -> None:
    settings.QUICKWORKER = {"GROUP_PREFIX": prefix}

    name = user_group(user_id)

    assert valid_group(name), name
    assert name.startswith(f"{prefix}.user.")


def test_a_long_string_user_id_gives_a_valid_group_name() -> None:
    # A custom user model may use a CharField(max_length=150) primary key (a username).
    user_id = "u" * 150

    name = user_group(user_id)

    assert len(name) < BaseChannelLayer.MAX_NAME_LENGTH, f"{len(name)} characters: {name}"
    assert valid_group(name)
    assert name != user_group("u" * 149)


def test_distinct_user_ids_get_distinct_groups() -> None:
    ids: list[object] = [1, 2, 10, 11, uuid.uuid4(), uuid.uuid4(), "a", "A", "a.b", "a-b", "ab"]

    groups = {user_group(user_id) for user_id in ids}

    assert len(groups) == len(ids)


def test_an_int_id_and_its_string_share_a_group() -> None:
    # Job rows carry int ids; a view may pass request.user.pk or a string from a URL.
    assert user_group(7) == user_group("7")


@pytest.mark.parametrize(
    ("first", "second"),
    [("john doe", "john_20doe"), (" 0", "\u0200")],
    ids=["escape-vs-literal-underscore", "variable-width-escape"],
)
def test_escaped_user_ids_never_collide_with_other_ids(first: str, second: str) -> None:
    # Two users sharing a group would read each other's messages.
    assert user_group(first) != user_group(second)


def test_an_invalid_prefix_is_refused(settings: Settings) -> None:
    from django.core.exceptions import ImproperlyConfigured

    settings.QUICKWORKER = {"GROUP_PREFIX": "has space"}

    with pytest.raises(ImproperlyConfigured, match="GROUP_PREFIX"):
        user_group(1)


# encode


def test_encode_wraps_type_and_data_in_a_channel_layer_event() -> None:
    data = {"job": 3, "items": [1, "two", None, 4.5, True], "nested": {"k": "v"}}

    assert encode("job.done", data) == {
        "type": "quickworker.message",
        "message": {"type": "job.done", "data": data},
    }
    assert EVENT_TYPE == "quickworker.message"
    assert encode("ping", None) == {"type": EVENT_TYPE, "message": {"type": "ping", "data": None}}


@pytest.mark.parametrize(
    ("data", "path", "what"),
    [
        ({1, 2}, "data", "set"),
        ({"items": [1, {2}]}, "data['items'][1]", "set"),
        ({"when": timedelta(seconds=1)}, "data['when']", "timedelta"),
        ({"ratio": float("nan")}, "data['ratio']", "nan"),
        ({1: "int key"}, "data", "key 1"),
    ],
    ids=["set", "nested-set", "timedelta", "nan", "int-key"],
)
def test_data_that_is_not_json_is_refused_naming_the_path(data: Any, path: str, what: str) -> None:
    with pytest.raises(InvalidJobData) as raised:
        encode("x", data)

    message = str(raised.value)
    assert message.startswith(path + " "), message
    assert what in message


def test_an_oversized_message_is_refused_naming_its_size_and_the_setting(
    settings: Settings,
) -> None:
    data = "x" * 200
    size = len(json.dumps({"type": "big", "data": data}).encode())
    settings.QUICKWORKER = {"MAX_MESSAGE_BYTES": size - 1}

    with pytest.raises(InvalidMessage) as raised:
        encode("big", data)

    message = str(raised.value)
    assert f"{size} bytes" in message
    assert str(size - 1) in message
    assert "MAX_MESSAGE_BYTES" in message


def test_a_message_of_exactly_the_limit_is_accepted(settings: Settings) -> None:
    data = "é" * 100  # counted in bytes of UTF-8 JSON, not characters
    size = len(json.dumps({"type": "big", "data": data}).encode())
    settings.QUICKWORKER = {"MAX_MESSAGE_BYTES": size}

    assert encode("big", data)["message"]["data"] == data


def test_the_default_limit_refuses_a_megabyte(settings: Settings) -> None:
    with pytest.raises(InvalidMessage, match="MAX_MESSAGE_BYTES"):
        encode("big", "x" * (1024 * 1024))


@pytest.mark.parametrize("message_type", ["", None, 5, b"bytes"])
def test_a_message_type_must_be_a_non_empty_string(message_type: Any) -> None:
    with pytest.raises(InvalidMessage, match="non-empty string"):
        encode(message_type, {})


# Outside a worker: straight to the channel layer


def listen(group: str) -> str:
    """A new channel in ``group`` of the in-memory layer."""
    layer = get_channel_layer()
    channel: str = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)
    return channel


def received(channel: str, timeout: float = 1.0) -> dict[str, Any] | None:
    """The next event on ``channel``, or None if nothing arrives within ``timeout``."""
    layer = get_channel_layer()

    async def receive() -> dict[str, Any] | None:
        try:
            event: dict[str, Any] = await asyncio.wait_for(layer.receive(channel), timeout)
        except asyncio.TimeoutError:
            return None
        return event

    return async_to_sync(receive)()


def test_notify_user_outside_a_worker_reaches_only_that_users_group() -> None:
    alice, bob = listen(user_group(1)), listen(user_group(2))

    notify_user(1, "hello", {"n": 1})

    assert received(alice) == {"type": EVENT_TYPE, "message": {"type": "hello", "data": {"n": 1}}}
    assert received(bob, timeout=0.2) is None


def test_broadcast_outside_a_worker_reaches_every_socket_in_the_broadcast_group() -> None:
    sockets = [listen(broadcast_group()) for _ in range(2)]
    alice = listen(user_group(1))

    broadcast("deploy", {"version": "1.2"})

    expected = {"type": EVENT_TYPE, "message": {"type": "deploy", "data": {"version": "1.2"}}}
    assert [received(socket) for socket in sockets] == [expected, expected]
    assert received(alice, timeout=0.2) is None


def test_the_async_variants_reach_the_channel_layer() -> None:
    async def scenario() -> tuple[Any, Any]:
        layer = get_channel_layer()
        alice, everyone = await layer.new_channel(), await layer.new_channel()
        await layer.group_add(user_group(1), alice)
        await layer.group_add(broadcast_group(), everyone)
        await anotify_user(1, "direct", [1])
        await abroadcast("all", [2])
        return await layer.receive(alice), await layer.receive(everyone)

    to_alice, to_everyone = async_to_sync(scenario)()

    assert to_alice["message"] == {"type": "direct", "data": [1]}
    assert to_everyone["message"] == {"type": "all", "data": [2]}


def test_progress_outside_a_worker_goes_to_the_owner_only() -> None:
    owner = listen(user_group(5))

    notify_progress(9, 5, {"current": 1, "total": 2, "message": "half"})
    notify_progress(10, None, {"current": 1, "total": 2, "message": "system job"})

    event = received(owner)
    assert event is not None
    assert event["message"] == {
        "type": "job.progress",
        "data": {"job": 9, "current": 1, "total": 2, "message": "half"},
    }
    assert received(owner, timeout=0.2) is None


def test_a_bad_message_outside_a_worker_raises_before_anything_is_sent(
    settings: Settings,
) -> None:
    alice = listen(user_group(1))
    settings.QUICKWORKER = {"MAX_MESSAGE_BYTES": 100}

    with pytest.raises(InvalidJobData, match="data is set"):
        notify_user(1, "bad", {1, 2})
    with pytest.raises(InvalidMessage, match="MAX_MESSAGE_BYTES"):
        broadcast("big", "x" * 200)

    assert received(alice, timeout=0.2) is None


def test_without_a_channel_layer_sending_fails_clearly(settings: Settings) -> None:
    settings.CHANNEL_LAYERS = {}

    with pytest.raises(InvalidMessage, match="No channel layer"):
        notify_user(1, "hello", {})
    with pytest.raises(InvalidMessage, match="No channel layer"):
        broadcast("hello", {})


# Inside a worker: over the pipe to the parent


def test_inside_a_worker_messages_go_to_the_parent_not_the_layer(to_parent: SentToParent) -> None:
    alice, everyone = listen(user_group(1)), listen(broadcast_group())

    notify_user(1, "hello", {"n": 1})
    broadcast("deploy", {"v": 2})

    assert to_parent() == [
        Live(user_group(1), encode("hello", {"n": 1})),
        Live(broadcast_group(), encode("deploy", {"v": 2})),
    ]
    assert received(alice, timeout=0.1) is None
    assert received(everyone, timeout=0.1) is None


def test_inside_a_worker_the_async_variants_go_to_the_parent_too(
    to_parent: SentToParent,
) -> None:
    alice = listen(user_group(1))

    async def scenario() -> None:
        await anotify_user(1, "hello", {"n": 1})
        await abroadcast("deploy", {"v": 2})

    async_to_sync(scenario)()

    assert to_parent() == [
        Live(user_group(1), encode("hello", {"n": 1})),
        Live(broadcast_group(), encode("deploy", {"v": 2})),
    ]
    assert received(alice, timeout=0.1) is None


def test_inside_a_worker_a_bad_message_fails_in_the_child(to_parent: SentToParent) -> None:
    with pytest.raises(InvalidJobData):
        notify_user(1, "bad", {"when": {1}})
    with pytest.raises(InvalidMessage):
        broadcast("", {})

    assert to_parent() == []


# Jobs that send messages, run in-process as a worker runs them


LEASE = timedelta(seconds=60)


@pytest.fixture
def owner(db: None) -> User:
    user = User.objects.create_user(username="owner")
    return user


def run_job(
    function: Callable[[JobContext], Any], user: User | None, **options: Any
) -> tuple[WorkerJob, Any]:
    """Register ``function``, submit and claim it, and execute it as a worker would."""
    job("tests.notifying")(function)
    submitted = submit_job(tag="notifying", type="tests.notifying", user=user, **options)
    claimed = claim_next("host:1:0", None, LEASE)
    assert claimed is not None and claimed.pk == submitted.pk
    return claimed, execute(claimed)


@pytest.mark.django_db
def test_a_job_sending_data_that_is_not_json_fails_with_a_clear_error(
    job_registry: JobRegistry, to_parent: SentToParent, owner: User
) -> None:
    def sends_a_set(ctx: JobContext) -> str:
        ctx.notify_user(ctx.user_id, "tags", {1, 2})
        return "unreachable"

    _, outcome = run_job(sends_a_set, owner)

    assert outcome.success is False
    assert outcome.result["exception"] == "django_quickworker.exceptions.InvalidJobData"
    assert outcome.result["error"].startswith("data is set {1, 2}")
    assert "ctx.notify_user" in outcome.traceback
    assert to_parent() == []  # nothing reached the parent


@pytest.mark.django_db
def test_a_job_broadcasting_too_much_fails_naming_the_setting(
    job_registry: JobRegistry, to_parent: SentToParent, settings: Settings
) -> None:
    settings.QUICKWORKER = {"MAX_MESSAGE_BYTES": 1000}

    def sends_a_novel(ctx: JobContext) -> str:
        ctx.broadcast("novel", "word " * 1000)
        return "unreachable"

    _, outcome = run_job(sends_a_novel, None)

    assert outcome.success is False
    assert outcome.result["exception"] == "django_quickworker.exceptions.InvalidMessage"
    assert "MAX_MESSAGE_BYTES" in outcome.result["error"]
    assert "over the limit of 1000" in outcome.result["error"]
    assert to_parent() == []


@pytest.mark.django_db
def test_a_job_can_catch_a_refused_message_and_go_on(
    job_registry: JobRegistry, to_parent: SentToParent, owner: User
) -> None:
    def careful(ctx: JobContext) -> str:
        try:
            ctx.notify_user(ctx.user_id, "bad", {"n": float("inf")})
        except ValueError:  # InvalidJobData and InvalidMessage are both ValueErrors
            ctx.notify_user(ctx.user_id, "good", {"n": 0})
        return "done"

    _, outcome = run_job(careful, owner)

    assert (outcome.success, outcome.result) == (True, "done")
    assert to_parent() == [Live(user_group(owner.pk), encode("good", {"n": 0}))]


@pytest.mark.django_db
def test_a_jobs_messages_and_progress_go_to_the_parent(
    job_registry: JobRegistry, to_parent: SentToParent, owner: User
) -> None:
    def chatty(ctx: JobContext) -> str:
        ctx.notify_user(ctx.user_id, "hello", {"to": "owner"})
        ctx.broadcast("news", {"all": True})
        for step in range(1, 4):
            ctx.progress(step, 3, f"step {step}")
        return "ok"

    claimed, outcome = run_job(chatty, owner)

    assert outcome.success is True, outcome.result
    sent = to_parent()
    assert sent[:2] == [
        Live(user_group(owner.pk), encode("hello", {"to": "owner"})),
        Live(broadcast_group(), encode("news", {"all": True})),
    ]
    progress = [message for message in sent[2:] if isinstance(message, Live)]
    assert progress == sent[2:]
    # Throttled: the first report goes out, and the final one always does.
    assert 2 <= len(progress) <= 3
    assert {message.group for message in progress} == {user_group(owner.pk)}
    assert progress[0].event == encode(
        "job.progress",
        {
            "job": claimed.pk,
            "type": "tests.notifying",
            "current": 1,
            "total": 3,
            "message": "step 1",
        },
    )
    assert progress[-1].event["message"]["data"]["current"] == 3
    row = WorkerJob.objects.get(pk=claimed.pk)
    assert row.progress == {"current": 3, "total": 3, "message": "step 3"}


# The relay, in the parent


class FlakyLayer(InMemoryChannelLayer):
    """An in-memory layer whose group_send fails while ``down``, as Redis does when it is."""

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.down = False

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        if self.down:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        await super().group_send(group, message)


FLAKY = {"default": {"BACKEND": f"{__name__}.FlakyLayer"}}


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop for a relay that these tests drive by hand."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_the_relay_queues_each_message_for_its_group(loop: asyncio.AbstractEventLoop) -> None:
    relay = Relay(loop)
    event = encode("x", 1)

    relay.put(user_group(3), event)
    relay.put(broadcast_group(), event)

    queued = [relay.queue.get_nowait() for _ in range(relay.queue.qsize())]
    assert queued == [(user_group(3), event), (broadcast_group(), event)]


def test_the_relay_sends_queued_messages_in_order() -> None:
    async def scenario() -> list[Any]:
        relay = Relay(asyncio.get_running_loop())
        layer = relay.layer
        channel = await layer.new_channel()
        await layer.group_add(user_group(1), channel)
        task = asyncio.create_task(relay.run())
        for n in range(5):
            relay.put(user_group(1), encode("n", n))
        events = [await asyncio.wait_for(layer.receive(channel), 1) for _ in range(5)]
        task.cancel()
        return [event["message"]["data"] for event in events]

    assert async_to_sync(scenario)() == [0, 1, 2, 3, 4]


def test_a_relay_failure_is_logged_and_the_relay_keeps_going(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings.CHANNEL_LAYERS = FLAKY
    caplog.set_level(logging.WARNING, logger="django_quickworker.relay")

    async def scenario() -> dict[str, Any]:
        relay = Relay(asyncio.get_running_loop())
        layer = relay.layer
        assert isinstance(layer, FlakyLayer)
        channel = await layer.new_channel()
        await layer.group_add(user_group(1), channel)
        task = asyncio.create_task(relay.run())
        layer.down = True
        relay.put(user_group(1), encode("lost", 1))
        relay.put(broadcast_group(), encode("lost too", 2))
        await until(lambda: relay.failures == 2)
        assert not task.done()
        layer.down = False  # Redis is back
        relay.put(user_group(1), encode("after", 3))
        event: dict[str, Any] = await asyncio.wait_for(layer.receive(channel), 1)
        assert not task.done()
        task.cancel()
        return event

    event = async_to_sync(scenario)()

    assert event["message"] == {"type": "after", "data": 3}
    warnings = [r for r in caplog.records if r.name == "django_quickworker.relay"]
    assert [r.levelno for r in warnings] == [logging.WARNING, logging.WARNING]
    first = warnings[0].getMessage()
    assert f"relay to {user_group(1)} failed (1 failures so far)" in first
    assert "ConnectionError: Error 111" in first
    assert f"relay to {broadcast_group()} failed (2 failures so far)" in warnings[1].getMessage()


def test_the_parents_own_messages_reach_the_relay_from_any_thread(
    loop: asyncio.AbstractEventLoop,
) -> None:
    # As from the supervisor's database thread, finishing a job it ended.
    relay = Relay(loop)
    sender = threading.Thread(target=relay.group_send, args=(user_group(4), encode("x", 1)))
    sender.start()
    sender.join()
    assert relay.queue.empty()  # not yet: the put runs on the relay's loop

    loop.run_until_complete(asyncio.sleep(0))

    assert relay.queue.get_nowait() == (user_group(4), encode("x", 1))


def test_without_a_channel_layer_the_relay_drops_messages_quietly(
    settings: Settings, loop: asyncio.AbstractEventLoop
) -> None:
    settings.CHANNEL_LAYERS = {}
    relay = Relay(loop)

    relay.put(user_group(1), encode("x", 1))
    relay.put(broadcast_group(), encode("x", 1))

    assert relay.layer is None
    assert relay.queue.empty()
