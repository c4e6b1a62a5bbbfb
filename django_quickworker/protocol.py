"""The worker protocol: what a ``runworkers`` parent and its children say over their pipe,
and the transport that carries live messages for browsers.

Each message is a small frozen dataclass whose class names its ``Kind``; the pipe pickles
it whole. Live messages (``notify_user``, ``broadcast``, progress) go through the process's
transport: the channel layer, unless a worker installed its pipe to the parent, which relays
them from its event loop (``relay.py``). Sync and async senders use the same transport.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from multiprocessing.connection import Connection
from typing import Any, ClassVar, Protocol

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from django_quickworker.exceptions import InvalidMessage


class Kind(str, Enum):
    """What a message over the pipe says."""

    # From a worker to its parent
    WORKER_STARTED = "worker-started"
    WORKER_ERROR = "worker-error"  # an unexpected error is about to end the worker
    IDLE = "idle"  # nothing is due: wake me when jobs arrive
    JOB_STARTED = "job-started"
    JOB_FINISHED = "job-finished"
    LIVE = "live"  # a message for browsers, for the parent to relay into the channel layer
    # From the parent to a worker
    WAKE = "wake"  # jobs were submitted
    STOP = "stop"  # finish the current job, then exit


@dataclass(frozen=True)
class Message:
    """One message over the pipe; its class says which ``Kind``."""

    kind: ClassVar[Kind]

    def __init_subclass__(cls, kind: Kind, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.kind = kind


@dataclass(frozen=True)
class WorkerStarted(Message, kind=Kind.WORKER_STARTED):
    worker: str
    pid: int


@dataclass(frozen=True)
class WorkerError(Message, kind=Kind.WORKER_ERROR):
    traceback: str


@dataclass(frozen=True)
class JobStarted(Message, kind=Kind.JOB_STARTED):
    job_id: int
    timeout: float | None  # seconds; None: no timeout
    attempt: int
    type: str
    queue: str
    wait: float  # seconds from its due time to its start


@dataclass(frozen=True)
class JobFinished(Message, kind=Kind.JOB_FINISHED):
    job_id: int
    success: bool


# The messages that say all in their kind.
class Idle(Message, kind=Kind.IDLE): ...


class Wake(Message, kind=Kind.WAKE): ...


class Stop(Message, kind=Kind.STOP): ...


@dataclass(frozen=True)
class Live(Message, kind=Kind.LIVE):
    group: str  # the Channels group: one user's sockets, or the broadcast group
    event: dict[str, Any]  # the channel layer event, already validated and encoded


class Transport(Protocol):
    """Where this process's live messages go."""

    def group_send(self, group: str, event: dict[str, Any]) -> None: ...

    async def agroup_send(self, group: str, event: dict[str, Any]) -> None: ...


class ChannelLayer:
    """Live messages straight to the channel layer (web processes, scripts, tests)."""

    def group_send(self, group: str, event: dict[str, Any]) -> None:
        async_to_sync(self.agroup_send)(group, event)

    async def agroup_send(self, group: str, event: dict[str, Any]) -> None:
        layer = get_channel_layer()
        if layer is None:
            raise InvalidMessage("No channel layer is configured (settings.CHANNEL_LAYERS).")
        await layer.group_send(group, event)


class ParentPipe:
    """A worker's end of the pipe: its messages to the parent, and the transport of its
    live messages, which the parent relays."""

    def __init__(self, pipe: Connection, on_lost: Callable[[], None]) -> None:
        self.pipe = pipe
        self.on_lost = on_lost  # called when the parent is gone
        self.lock = threading.Lock()  # a job's own threads may send messages too

    def send(self, message: Message) -> None:
        try:
            with self.lock:
                self.pipe.send(message)
        except OSError:  # BrokenPipeError among them
            self.on_lost()

    def receive(self, timeout: float) -> list[Message]:
        """Wait up to ``timeout`` seconds for the parent, then take what else it sent."""
        messages = []
        try:
            while self.pipe.poll(timeout):
                messages.append(self.pipe.recv())
                timeout = 0
        except (EOFError, OSError):
            self.on_lost()
        return messages

    def group_send(self, group: str, event: dict[str, Any]) -> None:
        self.send(Live(group, event))

    async def agroup_send(self, group: str, event: dict[str, Any]) -> None:
        self.send(Live(group, event))  # a write to a local pipe: too short to block the loop


class Route:
    """The transport of this process's live messages: the channel layer until a worker
    installs its pipe."""

    def __init__(self) -> None:
        self.transport: Transport = ChannelLayer()

    def install(self, transport: Transport) -> None:
        self.transport = transport


route = Route()
