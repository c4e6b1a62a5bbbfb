"""A throwaway MariaDB server (mariadb-install-db into a temp dir, on a free port) for the
tests that restart a server: never the shared one.

Uses the binaries of Debian's mariadb-server package. The server skips its grant tables:
it lives for one test, on 127.0.0.1 only.
"""

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo.pgcluster import MissingServer, free_port

SERVER = Path("/usr/sbin/mariadbd")
INSTALL_DB = Path("/usr/bin/mariadb-install-db")


@dataclass
class MariaDBServer:
    """A throwaway MariaDB server, run as the ``mysql`` OS user when we are root."""

    root: Path
    port: int
    process: "subprocess.Popen[bytes] | None" = field(default=None)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def server_log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str | None = None) -> Any:
        import MySQLdb

        options = {"database": database} if database else {}
        return MySQLdb.connect(
            host="127.0.0.1",
            port=self.port,
            user="root",
            connect_timeout=5,
            autocommit=True,
            **options,
        )

    @property
    def connection_errors(self) -> tuple[type[Exception], ...]:
        """What connecting raises while the server is down."""
        import MySQLdb

        return (MySQLdb.OperationalError,)

    def start(self) -> None:
        as_mysql = ["--user=mysql"] if os.geteuid() == 0 else []
        with self.server_log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(SERVER),
                    "--no-defaults",
                    f"--datadir={self.data}",
                    f"--socket={self.root / 'mysqld.sock'}",
                    f"--pid-file={self.root / 'mysqld.pid'}",
                    f"--port={self.port}",
                    "--bind-address=127.0.0.1",
                    "--skip-grant-tables",
                    # Nothing here must survive an OS crash: skip the fsyncs.
                    "--innodb-flush-log-at-trx-commit=0",
                    "--innodb-buffer-pool-size=32M",
                    *as_mysql,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(Exception):
                self.connect().close()
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                log_text = self.server_log.read_text(errors="replace")
                raise AssertionError(f"MariaDB did not start:\n{log_text}")
            time.sleep(0.2)

    def stop(self, mode: str = "fast") -> None:
        """A clean shutdown (SIGTERM): every connection is closed, transactions rolled back,
        as PostgreSQL's "fast" mode does (``mode``: for the tests that stop either server)."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(60)
            self.process = None


@contextlib.contextmanager
def throwaway_mariadb(database: str) -> Iterator[MariaDBServer]:
    """A MariaDB server of our own on a free port, with ``database`` created in it;
    stopped and deleted on exit."""
    if not (SERVER.is_file() and INSTALL_DB.is_file()):
        raise MissingServer(
            f"A throwaway MariaDB server needs {SERVER} and {INSTALL_DB}. Install Debian's "
            "mariadb-server package: apt-get install mariadb-server."
        )
    root = Path(tempfile.mkdtemp(prefix="quickworker-mariadb-"))
    server = MariaDBServer(root, free_port())
    try:
        if os.geteuid() == 0:
            shutil.chown(root, "mysql", "mysql")  # the server runs as mysql
        as_mysql = ["--user=mysql"] if os.geteuid() == 0 else []
        subprocess.run(
            [
                str(INSTALL_DB),
                "--no-defaults",
                f"--datadir={server.data}",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
                *as_mysql,
            ],
            check=True,
            capture_output=True,
        )
        server.start()
        with contextlib.closing(server.connect()) as connection:
            connection.cursor().execute(
                f"CREATE DATABASE {database} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            )
        yield server
    finally:
        if server.process is not None:
            server.process.kill()
            server.process.wait()
        shutil.rmtree(root, ignore_errors=True)
