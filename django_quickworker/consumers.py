"""The websocket consumer that delivers live messages to signed-in users."""

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from django_quickworker.notifications import broadcast_group, user_group

# Close code for a refused anonymous socket (4000-4999 are for applications).
UNAUTHENTICATED = 4401


class NotificationConsumer(AsyncJsonWebsocketConsumer):
    """Joins the signed-in user's group and the broadcast group; refuses anonymous sockets.

    Route it behind ``AuthMiddlewareStack`` so that ``scope["user"]`` is set.
    """

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=UNAUTHENTICATED)
            return
        self.joined = [user_group(user.pk), broadcast_group()]
        for group in self.joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Browsers only listen; what they send is ignored."""

    async def quickworker_message(self, event: dict[str, Any]) -> None:
        await self.send_json(event["message"])
