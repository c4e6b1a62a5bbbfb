"""The relay: forwards workers' live messages into the channel layer, from the parent.

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
    """Sends worker messages to Channels groups, in order, from the supervisor's loop."""

    def __init__(self) -> None:
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
