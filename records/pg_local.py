"""A throw-away PostgreSQL server for development and tests (`carecall cluster up`, tests/cluster):
Debian's PostgreSQL 15 binaries, initdb in a folder, listening on a loopback port, trust auth for
the `carecall` role. Not for production (see docs: a managed server with a role that does not own
the audit table). The same steps tests/records/fixtures.py takes for the test session."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path(os.environ.get("CARECALL_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL binaries are missing or the server would not start."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalPostgres:
    root: Path
    port: int
    user: str = "carecall"
    host: str = "127.0.0.1"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise PostgresUnavailable(f"{Path(args[0]).name} failed: {done.stdout}\n{done.stderr}")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")


def start_postgres(root: Path, port: int | None = None) -> LocalPostgres:
    """initdb + pg_ctl start (as the `postgres` user when we are root: initdb refuses root)."""
    if not (PG_BIN / "initdb").exists():
        raise PostgresUnavailable(f"PostgreSQL binaries not found in {PG_BIN} (apt-get install postgresql)")
    root.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    pg = LocalPostgres(root, port or free_port())
    data, log = root / "data", root / "postgres.log"
    pg._run(str(PG_BIN / "initdb"), "-D", str(data), "-U", pg.user, "-A", "trust", "-E", "UTF8", "--no-locale")
    options = (f"-p {pg.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
    pg._run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
    return pg
