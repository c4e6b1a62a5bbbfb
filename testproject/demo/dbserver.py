"""A throwaway database server, its data in a temp dir, on a free port: for the tests and
the chaos command that stop and start a server, never the shared one. Each server says how
it is installed, initialised, started and stopped (demo/pgcluster.py, demo/mariadbserver.py);
the rest is here."""

import contextlib
import os
import shutil
import socket
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar


class MissingServer(RuntimeError):
    """The server's binaries are not installed."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class DatabaseServer(ABC):
    """A server of our own, run as its OS user (``os_user``) when we are root."""

    name: ClassVar[str]  # in the temp dir's name
    os_user: ClassVar[str]
    scheme: ClassVar[str]  # of its DATABASE_URL
    superuser: ClassVar[str]

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def server_log(self) -> Path:
        return self.root / "server.log"

    @property
    def as_os_user(self) -> bool:
        return os.geteuid() == 0

    def url(self, database: str) -> str:
        return f"{self.scheme}://{self.superuser}@127.0.0.1:{self.port}/{database}"

    @classmethod
    @abstractmethod
    def check_installed(cls) -> None:
        """Raise MissingServer, saying what to install, if the binaries are missing."""

    @property
    @abstractmethod
    def connection_errors(self) -> tuple[type[Exception], ...]:
        """What connecting raises while the server is down."""

    @abstractmethod
    def connect(self, database: str | None = None) -> Any:
        """An autocommit DB-API connection to ``database`` (none: the server's own)."""

    @abstractmethod
    def initialise(self) -> None:
        """Create the data directory."""

    @abstractmethod
    def start(self) -> None:
        """Start the server; return once it accepts connections."""

    @abstractmethod
    def stop(self, mode: str = "fast") -> None:
        """Shut down, ending every connection and rolling back its transaction."""

    @abstractmethod
    def kill(self) -> None:
        """Stop at once, if it runs (at the end of a test, whatever state it is in)."""

    @abstractmethod
    def create_database(self, database: str) -> None: ...


Server = TypeVar("Server", bound=DatabaseServer)


@contextlib.contextmanager
def throwaway(kind: type[Server], database: str) -> Iterator[Server]:
    """A server of ``kind`` on a free port, with ``database`` created in it; stopped and
    deleted on exit."""
    kind.check_installed()
    root = Path(tempfile.mkdtemp(prefix=f"quickworker-{kind.name}-"))
    server = kind(root, free_port())
    try:
        if server.as_os_user:
            shutil.chown(root, kind.os_user, kind.os_user)  # the servers refuse to run as root
        server.initialise()
        server.start()
        server.create_database(database)
        yield server
    finally:
        server.kill()
        shutil.rmtree(root, ignore_errors=True)
