"""ASGI entry point: Django for HTTP, django-quickworker's notifications for websockets.

Static files are not wrapped in here: in development ``runworkers --serve`` (and
``runserver``) serve them when DEBUG is on.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
django_application = get_asgi_application()  # sets Django up before the imports below

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from django_quickworker.consumers import NotificationConsumer  # noqa: E402

websocket_routes = [path("ws/quickworker/", NotificationConsumer.as_asgi())]

application = ProtocolTypeRouter(
    {
        "http": django_application,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_routes))),
    }
)
