"""Embedded mode: serve the project's ASGI application from the supervisor's event loop.

One command then runs web pages, websockets and workers, and with SQLite and the in-memory
channel layer needs no other service (QuickDapp's shape, where the server spawns the
workers). Production runs the web server and ``runworkers`` separately, with a shared
channel layer such as channels_redis.
"""

import contextlib
from collections.abc import Iterator

import uvicorn
from django.conf import settings
from django.utils.module_loading import import_string


class EmbeddedServer(uvicorn.Server):
    """uvicorn, minus its signal handling: the supervisor owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def embedded_server(host: str, port: int, log_level: str) -> EmbeddedServer:
    """A server for ``settings.ASGI_APPLICATION`` on ``host:port``."""
    application = import_string(settings.ASGI_APPLICATION)
    config = uvicorn.Config(application, host=host, port=port, lifespan="off", log_level=log_level)
    return EmbeddedServer(config)
