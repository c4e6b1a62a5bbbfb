"""A throwaway PostgreSQL cluster (demo/dbserver.py), with the server binaries of Debian's
postgresql package."""

import contextlib
import glob
import re
import subprocess
from functools import cached_property
from pathlib import Path
from typing import Any

import psycopg

from demo.dbserver import DatabaseServer, MissingServer


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


class PostgreSQLServer(DatabaseServer):
    name = "pg"
    os_user = "postgres"  # initdb refuses root
    scheme = "postgres"
    superuser = "postgres"

    @classmethod
    def check_installed(cls) -> None:
        postgres_bin_dir()

    @cached_property
    def bin_dir(self) -> Path:
        return postgres_bin_dir()

    @property
    def connection_errors(self) -> tuple[type[Exception], ...]:
        return (psycopg.OperationalError,)

    def connect(self, database: str | None = None) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url(database or "postgres"), autocommit=True, connect_timeout=5)

    def run(self, program: str, *args: str, check: bool = True) -> None:
        as_postgres = ["runuser", "-u", self.os_user, "--"] if self.as_os_user else []
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

    def initialise(self) -> None:
        self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            # A throwaway server: nothing here must survive an OS crash, so skip the fsyncs.
            "fsync": "off",
            "full_page_writes": "off",
            "shared_buffers": "16MB",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def start(self) -> None:
        self.pg_ctl("start", "-w", "-t", "30", "-l", str(self.server_log))

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("stop", "-w", "-t", "30", "-m", mode)

    def kill(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.pg_ctl("stop", "-w", "-t", "30", "-m", "immediate", check=False)

    def create_database(self, database: str) -> None:
        with self.connect() as connection:
            connection.execute(f"CREATE DATABASE {database}")
