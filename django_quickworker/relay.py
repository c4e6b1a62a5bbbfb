"""The relay: forwards live messages into the channel layer, from the parent: its workers',
and its own (about the jobs it ends, from its database thread).

Messages queue up in memory and one task sends them, so a slow or unreachable channel layer
delays or drops live messages (with a log line) but never stalls or kills the supervisor,
and never touches the job queue.
"""

import asyncio
import logging
from typing import Any

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

MAX_QUEUED = 10_000  # messages waiting for the channel layer before new ones are dropped


class Relay:
    """Sends live messages to Channels groups, in order, from the supervisor's loop; the
    transport (``protocol.route``) of the parent's own messages."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.layer = get_channel_layer()
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(MAX_QUEUED)
        self.failures = 0
        self.dropped = 0  # for lack of room in the queue

    def put(self, group: str, event: dict[str, Any]) -> None:
        """Queue a live message a worker sent, for ``group``."""
        if self.layer is None:
            return  # no channel layer configured: nobody could be listening
        try:
            self.queue.put_nowait((group, event))
        except asyncio.QueueFull:
            self.dropped += 1
            logger.warning("relay queue full (%d): dropping a message to %s", MAX_QUEUED, group)

    def group_send(self, group: str, event: dict[str, Any]) -> None:
        """Queue a message sent from any of the parent's threads."""
        self.loop.call_soon_threadsafe(self.put, group, event)

    async def agroup_send(self, group: str, event: dict[str, Any]) -> None:
        self.put(group, event)

    async def run(self) -> None:
        while True:
            group, event = await self.queue.get()
            try:
                await self.layer.group_send(group, event)
            except Exception as error:  # the layer's errors are many; none may stop the parent
                self.failures += 1
                logger.warning(
                    "relay to %s failed (%d failures so far): %s: %s",
                    group,
                    self.failures,
                    type(error).__name__,
                    error,
                )
