"""A throwaway PostgreSQL server for the tests: its own data dir, a free port, fsync off.

initdb refuses to run as root, so as root the server runs as the ``postgres`` user. Each test
gets a database of its own on the one server the session starts.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.support import free_port

_BIN = Path("/usr/lib/postgresql/15/bin")


def available() -> bool:
    return (_BIN / "initdb").exists() or shutil.which("initdb") is not None


class PostgresServer:
    def __init__(self) -> None:
        self.bin = _BIN if (_BIN / "initdb").exists() else Path(str(shutil.which("initdb"))).parent
        self.dir = Path(tempfile.mkdtemp(prefix="mm-pg-"))
        self.port = free_port()
        self._user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self._user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.dir / "data"), "-U", "postgres", "-A", "trust", "-E",
                  "UTF8", "--no-locale", "--no-sync")
        self.start()
        self._names = itertools.count()

    def start(self) -> None:
        """Start the server (again, after ``pause``: same port, same data)."""
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w", "-t",
                  "30", "-o", f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} "
                  "-c fsync=off -c synchronous_commit=off -c full_page_writes=off", "start")

    def pause(self) -> None:
        """Stop the server as an outage would (connections dropped), keeping its data."""
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def new_database(self) -> str:
        """A fresh, empty database's SQLAlchemy URL."""
        import psycopg

        name = f"test_{next(self._names)}"
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres",
                             autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        subprocess.run([*self._user, str(self.bin / program), *args], check=True,
                       capture_output=True, timeout=120)


def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()
