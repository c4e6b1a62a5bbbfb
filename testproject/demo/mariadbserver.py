"""A throwaway MariaDB server (demo/dbserver.py), with the binaries of Debian's
mariadb-server package. It skips its grant tables: it lives for one run, on 127.0.0.1 only."""

import contextlib
import subprocess
import time
from pathlib import Path
from typing import Any

from demo.dbserver import DatabaseServer, MissingServer

SERVER = Path("/usr/sbin/mariadbd")
INSTALL_DB = Path("/usr/bin/mariadb-install-db")


class MariaDBServer(DatabaseServer):
    name = "mariadb"
    os_user = "mysql"
    scheme = "mysql"
    superuser = "root"
    process: "subprocess.Popen[bytes] | None" = None

    @classmethod
    def check_installed(cls) -> None:
        if not (SERVER.is_file() and INSTALL_DB.is_file()):
            raise MissingServer(
                f"A throwaway MariaDB server needs {SERVER} and {INSTALL_DB}. Install Debian's "
                "mariadb-server package: apt-get install mariadb-server."
            )

    @property
    def connection_errors(self) -> tuple[type[Exception], ...]:
        import MySQLdb

        return (MySQLdb.OperationalError,)

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
    def as_mysql(self) -> list[str]:
        return [f"--user={self.os_user}"] if self.as_os_user else []

    def initialise(self) -> None:
        subprocess.run(
            [
                str(INSTALL_DB),
                "--no-defaults",
                f"--datadir={self.data}",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
                *self.as_mysql,
            ],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
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
                    *self.as_mysql,
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
        """A clean shutdown (SIGTERM), as PostgreSQL's "fast" mode (``mode`` is not used:
        one signature for either server)."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(60)
            self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def create_database(self, database: str) -> None:
        with contextlib.closing(self.connect()) as connection:
            connection.cursor().execute(
                f"CREATE DATABASE {database} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            )
