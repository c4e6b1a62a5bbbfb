"""The ``runworkers --metrics`` endpoint: ``/metrics`` for Prometheus and ``/healthz`` for
probes, served from the supervisor's own event loop.

A few lines of HTTP/1.1 on ``asyncio.start_server`` rather than a web server: two read-only
pages, one request per connection, and nothing that could block the supervisor's loop.
"""

import asyncio
import json
import logging
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, disable_created_metrics, generate_latest

from django_quickworker.health import HealthCheck
from django_quickworker.supervisor_metrics import SupervisorMetrics

if TYPE_CHECKING:
    from django_quickworker.supervisor import Supervisor

logger = logging.getLogger(__name__)

READ_TIMEOUT = 10.0  # seconds a client gets to send its request line and headers
MAX_REQUEST_BYTES = 8192


class Monitor:
    """Serves one supervisor's metrics and health on ``host:port``."""

    def __init__(self, supervisor: "Supervisor", host: str, port: int) -> None:
        # The *_created series double every counter; the parent's own start says as much.
        disable_created_metrics()
        self.metrics = SupervisorMetrics(supervisor)
        self.health = HealthCheck(supervisor)
        self.host = host
        self.port = port

    async def serve(self) -> None:
        server = await asyncio.start_server(self.answer, self.host, self.port)
        logger.info("metrics and health on http://%s:%s/metrics and /healthz", self.host, self.port)
        try:
            async with server:
                await server.serve_forever()
        finally:
            self.health.close()

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            path = await asyncio.wait_for(read_request_path(reader), READ_TIMEOUT)
            status, content_type, body = await self.page(path)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, ConnectionError):
            status, content_type, body = 400, "text/plain", b"Bad request.\n"
        head = (
            f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        try:
            writer.write(head.encode() + body)
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        except ConnectionError:
            pass  # the client left; nothing to tell it

    async def page(self, path: str) -> tuple[int, str, bytes]:
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.metrics.registry)
        if path == "/healthz":
            problems = await self.health.problems()
            body = {"status": "unhealthy" if problems else "ok", "problems": problems}
            return (503 if problems else 200), "application/json", json.dumps(body).encode()
        return 404, "text/plain", b"Not found: try /metrics or /healthz.\n"


REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 503: "Service Unavailable"}


async def read_request_path(reader: asyncio.StreamReader) -> str:
    """Read a GET request up to its blank line; return its path, without a query string."""
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > MAX_REQUEST_BYTES:
        raise ValueError("request too large")
    method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
    if method != "GET":
        raise ValueError(f"method {method!r}")
    return target.split("?", 1)[0]
