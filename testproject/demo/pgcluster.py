"""A throwaway PostgreSQL cluster (initdb into a temp dir, on a free port) for the tests
and the chaos command that restart a server: never the shared one.

Uses the server binaries of Debian's postgresql package; run as the ``postgres`` OS user
when we are root, since initdb refuses root.
"""

import contextlib
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg


class MissingServer(RuntimeError):
    """initdb and pg_ctl are not installed."""


def postgres_bin_dir() -> Path:
    """The directory holding initdb and pg_ctl; fail, saying what to install, if none does."""
    candidates: list[str] = []
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        candidates.append(
            subprocess.run(
                ["pg_config", "--bindir"], capture_output=True, text=True, check=True
            ).stdout.strip()
        )
    # Debian installs each major version side by side: prefer the newest.
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(versions, key=lambda path: _version(Path(path).parent.name), reverse=True)
    for candidate in candidates:
        directory = Path(candidate)
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    raise MissingServer(
        "A throwaway PostgreSQL server needs the binaries initdb and pg_ctl (looked in "
        f"{candidates or ['/usr/lib/postgresql/*/bin']}). Install Debian's postgresql package: "
        "apt-get install postgresql."
    )


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Cluster:
    """A throwaway PostgreSQL cluster, run as the ``postgres`` OS user when we are root."""

    bin_dir: Path
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def server_log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def connection_errors(self) -> tuple[type[Exception], ...]:
        """What connecting raises while the server is down."""
        return (psycopg.OperationalError,)

    def connect(self, database: str) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=5)

    def run(self, program: str, *args: str, check: bool = True) -> None:
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        command = [*as_postgres, str(self.bin_dir / program), *args]
        result = subprocess.run(command, cwd=self.root, capture_output=True, text=True)
        if check and result.returncode:
            log = self.server_log.read_text(errors="replace") if self.server_log.exists() else ""
            raise AssertionError(
                f"{' '.join(command)} exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}\nserver log:\n{log}"
            )

    def pg_ctl(self, action: str, *args: str, check: bool = True) -> None:
        self.run("pg_ctl", action, "-D", str(self.data), *args, check=check)

    def start(self) -> None:
        self.pg_ctl("start", "-w", "-t", "30", "-l", str(self.server_log))

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("stop", "-w", "-t", "30", "-m", mode)


@contextlib.contextmanager
def throwaway_cluster(database: str) -> Iterator[Cluster]:
    """A PostgreSQL server of our own on a free port, with ``database`` created in it;
    stopped and deleted on exit."""
    bin_dir = postgres_bin_dir()
    root = Path(tempfile.mkdtemp(prefix="quickworker-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")  # initdb refuses to run as root
    server = Cluster(bin_dir, root, free_port())
    try:
        server.run("initdb", "-D", str(server.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(server.port),
            "unix_socket_directories": f"'{root}'",
            # A throwaway server: nothing here must survive an OS crash, so skip the fsyncs.
            "fsync": "off",
            "full_page_writes": "off",
            "shared_buffers": "16MB",
        }
        with (server.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
        server.start()
        with server.connect("postgres") as connection:
            connection.execute(f"CREATE DATABASE {database}")
        yield server
    finally:
        if (server.data / "postmaster.pid").exists():
            server.pg_ctl("stop", "-w", "-t", "30", "-m", "immediate", check=False)
        shutil.rmtree(root, ignore_errors=True)
