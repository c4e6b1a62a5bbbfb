"""Many hosts on one machine, for the multi-host tests and ``chaos --hosts``: each host's
runworkers reaches the database through a TCP proxy of its own (cut it for a partition:
every connection through it dropped, new ones refused, until it is restored), and may run
with its clock shifted (Debian's faketime package, libfaketime)."""

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


class MissingFaketime(RuntimeError):
    """libfaketime is not installed."""


class Proxy:
    """Forwards 127.0.0.1:``port`` to ``target``, on threads of this process."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.cut_off = False
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            if self.cut_off:
                client.close()
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self.pipe, args=(source, sink), daemon=True).start()

    def pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            self.drop(end)

    def drop(self, end: socket.socket) -> None:
        with self.lock:
            self.sockets.discard(end)
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)
        end.close()

    def cut(self) -> None:
        """Drop every connection and refuse new ones, until ``restore``."""
        self.cut_off = True
        with self.lock:
            ends = list(self.sockets)
        for end in ends:
            self.drop(end)

    def restore(self) -> None:
        self.cut_off = False

    def close(self) -> None:
        self.cut()
        self.listener.close()

    def url(self, database_url: str) -> str:
        """``database_url`` (a server's), pointed at this proxy instead."""
        parts = urlsplit(database_url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))


@contextlib.contextmanager
def proxy_to(database_url: str) -> Iterator[Proxy]:
    """A proxy in front of the server of ``database_url``; closed on exit."""
    parts = urlsplit(database_url)
    if not (parts.hostname and parts.port):
        raise ValueError(f"{database_url!r} names no host and port to proxy to.")
    proxy = Proxy((parts.hostname, parts.port))
    try:
        yield proxy
    finally:
        proxy.close()


def skewed_clock(seconds: int) -> dict[str, str]:
    """The environment of a process whose clock is ``seconds`` off (its children's too)."""
    if not LIBFAKETIME.exists():
        raise MissingFaketime(f"{LIBFAKETIME} is missing: install Debian's faketime package.")
    return {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME": f"{seconds:+d}s",
        # Monotonic time is shifted too (libfaketime's sleeps fail with EINVAL otherwise),
        # by the same constant: the supervisor's timers stay true.
        "FAKETIME_FORCE_MONOTONIC_FIX": "1",
    }
