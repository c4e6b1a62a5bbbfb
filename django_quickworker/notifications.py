"""Live messages for browsers: to one user's sockets, or to every socket (broadcast).

Messages go through the process's transport (``protocol.route``): inside a worker over the
pipe to the parent, which relays them into the channel layer from its event loop; anywhere
else straight to the channel layer.
Browsers receive ``{"type": ..., "data": ...}`` (QuickDapp's shape) through
``django_quickworker.consumers.NotificationConsumer``.
"""

import hashlib
import json
import logging
import re
from typing import TYPE_CHECKING, Any

from django_quickworker.conf import conf
from django_quickworker.exceptions import InvalidMessage
from django_quickworker.payload import validate_payload
from django_quickworker.protocol import route

if TYPE_CHECKING:
    from django_quickworker.models import WorkerJob

logger = logging.getLogger(__name__)

#: The channel layer event type; Channels dispatches it to ``quickworker_message``.
EVENT_TYPE = "quickworker.message"
# Characters kept as they are in a user's group name; "_" escapes all others.
SAFE_GROUP_CHARACTER = re.compile(r"[A-Za-z0-9.-]")
MAX_GROUP_NAME = 99  # Channels refuses names of 100 characters or more


def user_group(user_id: object) -> str:
    """The group of one user's sockets: distinct users never share one."""
    # Ints and UUIDs stay readable; other characters become "_" and their UTF-8 bytes in hex,
    # so two ids never give the same name. An id too long for Channels is hashed instead.
    text = str(user_id)
    safe_id = "".join(
        char if SAFE_GROUP_CHARACTER.fullmatch(char) else _escape(char) for char in text
    )
    name = f"{conf.group_prefix}.user.{safe_id}"
    if len(name) > MAX_GROUP_NAME:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        name = f"{conf.group_prefix}.user._h{digest}"  # "_h" never comes out of _escape
    return name


def _escape(char: str) -> str:
    return "".join(f"_{byte:02x}" for byte in char.encode("utf-8", "surrogatepass"))


def broadcast_group() -> str:
    """The group every authenticated socket joins."""
    return f"{conf.group_prefix}.broadcast"


def encode(message_type: str, data: Any) -> dict[str, Any]:
    """The channel layer event for a message; raise InvalidMessage if it cannot be sent."""
    if not isinstance(message_type, str) or not message_type:
        raise InvalidMessage(f"Message type {message_type!r} must be a non-empty string.")
    validate_payload(data, "data")
    message = {"type": message_type, "data": data}
    size = len(json.dumps(message).encode())
    if size > conf.max_message_bytes:
        raise InvalidMessage(
            f"Message {message_type!r} is {size} bytes, over the limit of "
            f"{conf.max_message_bytes} (QUICKWORKER['MAX_MESSAGE_BYTES']); send an id "
            "and let the browser fetch the rest."
        )
    return {"type": EVENT_TYPE, "message": message}


def notify_user(user_id: object, message_type: str, data: Any = None) -> None:
    """Send a message to every open socket of user ``user_id``."""
    route.transport.group_send(user_group(user_id), encode(message_type, data))


def broadcast(message_type: str, data: Any = None) -> None:
    """Send a message to every open socket of every signed-in user."""
    route.transport.group_send(broadcast_group(), encode(message_type, data))


def notify_progress(job_id: int, user_id: object, progress: dict[str, Any]) -> None:
    """Send a job's progress to its owner (nobody's, for a system job)."""
    event = encode("job.progress", {"job": job_id, **progress})
    if user_id is not None:
        route.transport.group_send(user_group(user_id), event)


async def anotify_user(user_id: object, message_type: str, data: Any = None) -> None:
    """``notify_user`` for async code."""
    await route.transport.agroup_send(user_group(user_id), encode(message_type, data))


async def abroadcast(message_type: str, data: Any = None) -> None:
    """``broadcast`` for async code."""
    await route.transport.agroup_send(broadcast_group(), encode(message_type, data))


# A job's owner hears when it starts and how it ended, wherever that happens: the worker for
# a run that returned or raised, runworkers for one it ended (a timeout, a dead worker, a
# cancel while running) or rescued. Receivers of the lifecycle signals (apps.ready).


def tell_owner_started(sender: type, job: "WorkerJob", **kwargs: Any) -> None:
    """``job.started`` to the owner's sockets: ``{"job", "type", "attempt"}``."""
    tell_owner(job, "job.started", {"attempt": job.attempt})


def tell_owner_finished(sender: type, job: "WorkerJob", **kwargs: Any) -> None:
    """``job.finished`` to the owner's sockets: ``{"job", "type", "status", "result"}``, the
    result being ``{"error": …}`` for a run that did not succeed."""
    tell_owner(job, "job.finished", {"status": job.status, "result": job.result})


def tell_owner(job: "WorkerJob", message_type: str, data: dict[str, Any]) -> None:
    """Tell the job's owner (if any) how it is going: ``{"job": id, "type": ..., ...}``."""
    if job.user_id is None:
        return
    message = {"job": job.pk, "type": job.type, **data}
    try:
        notify_user(job.user_id, message_type, message)
    except InvalidMessage as error:  # a result too large for a message: say where it is
        logger.warning("job id=%s: %s", job.pk, error)
        notify_user(job.user_id, message_type, {**message, "result": None, "truncated": True})
