"""Live messages for browsers: to one user's sockets, or to every socket (broadcast).

Messages go through the process's transport (``protocol.route``): inside a worker over the
pipe to the parent, which relays them into the channel layer from its event loop; anywhere
else straight to the channel layer.
Browsers receive ``{"type": ..., "data": ...}`` (QuickDapp's shape) through
``django_quickworker.consumers.NotificationConsumer``.
"""

import hashlib
import json
import re
from typing import Any

from django_quickworker.conf import conf
from django_quickworker.exceptions import InvalidMessage
from django_quickworker.payload import validate_payload
from django_quickworker.protocol import route

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
