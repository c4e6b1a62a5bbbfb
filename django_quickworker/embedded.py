"""Embedded mode: serve the project's ASGI application from the supervisor's event loop.

One command then runs web pages, websockets and workers, and with SQLite and the in-memory
channel layer needs no other service (QuickDapp's shape, where the server spawns the
workers). Production runs the web server and ``runworkers`` separately, with a shared
channel layer such as channels_redis.
"""

import contextlib
from collections.abc import Iterator
from typing import Any

import uvicorn
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import InMemoryChannelLayer, channel_layers, get_channel_layer
from django.apps import apps
from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string


class EmbeddedServer(uvicorn.Server):
    """uvicorn, minus its signal handling: the supervisor owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def embedded_server(host: str, port: int, log_level: str) -> EmbeddedServer:
    """A server for ``settings.ASGI_APPLICATION`` on ``host:port``.

    Raises ImproperlyConfigured naming what is missing.
    """
    application = asgi_application()
    if serves_static_files():
        application = ASGIStaticFilesHandler(application)
    use_in_memory_layer_by_default()
    config = uvicorn.Config(application, host=host, port=port, lifespan="off", log_level=log_level)
    return EmbeddedServer(config)


def asgi_application() -> Any:
    path = getattr(settings, "ASGI_APPLICATION", None)
    if not path:
        raise ImproperlyConfigured(
            "--serve needs the ASGI_APPLICATION setting: the dotted path of your project's "
            "ASGI application, e.g. ASGI_APPLICATION = 'mysite.asgi.application'."
        )
    try:
        return import_string(path)
    except ImportError as error:
        message = f"ASGI_APPLICATION={path!r} cannot be imported: {error}"
        raise ImproperlyConfigured(message) from None


def serves_static_files() -> bool:
    """Whether static files are served, as ``runserver`` does: in development only."""
    return settings.DEBUG and apps.is_installed("django.contrib.staticfiles")


def use_in_memory_layer_by_default() -> None:
    """Give Channels its in-memory layer when ``CHANNEL_LAYERS`` sets none.

    Channels then has no layer at all, and websockets could join no group; in embedded mode
    the relay and the consumers share this process, so the in-memory layer reaches them all.
    """
    if get_channel_layer() is None:
        channel_layers.set(DEFAULT_CHANNEL_LAYER, InMemoryChannelLayer())
