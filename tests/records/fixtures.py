"""Database fixtures for the records and console tests: a throw-away PostgreSQL server (Debian's
PostgreSQL 15, started once per test session on a free loopback port in a temp dir) and a
`db_url` fixture that runs each test against SQLite and against PostgreSQL.

Imported by tests/conftest.py so that one server serves every test package."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("CARECALL_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, template: str | None = None) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.url(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """initdb + pg_ctl start as the `postgres` user when we are root (initdb refuses root)."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL binaries not found in {PG_BIN} (scripts/install-system.sh installs them)")
    root = Path(tempfile.mkdtemp(prefix="carecall-pg-"))
    as_root = os.geteuid() == 0
    prefix: list[str] = []
    if as_root:
        shutil.chown(root, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]

    def run(*args: str) -> None:
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stdout}\n{done.stderr}")

    data, log = root / "data", root / "postgres.log"
    port = _free_port()
    run(str(PG_BIN / "initdb"), "-D", str(data), "-U", "carecall", "-A", "trust", "-E", "UTF8", "--no-locale")
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
    try:
        yield PostgresServer("127.0.0.1", port, "carecall")
    finally:
        with contextlib.suppress(Exception):
            run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per session; each test gets a copy (migrating costs ~0.3 s)."""
    from records.db import open_database

    path = tmp_path_factory.mktemp("sqlite-template") / "records.db"
    open_database(f"sqlite:///{path}").dispose()  # the last close checkpoints the WAL into the file
    return path


@pytest.fixture(scope="session")
def _postgres_template(postgres_server: PostgresServer) -> str:
    from sqlalchemy.engine import make_url

    from records.db import open_database

    url = postgres_server.create_database()
    open_database(url).dispose()
    return make_url(url).database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh records database at the newest schema: a copy of a migrated SQLite file, or a new
    PostgreSQL database made from a migrated template (tests/records/test_records.py also migrates
    an empty database from scratch)."""
    if request.param == "sqlite":
        target = tmp_path / "records.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), target)
        return f"sqlite:///{target}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database(template=request.getfixturevalue("_postgres_template"))


@pytest.fixture
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path, db_url: str) -> str:
    """An empty database of the same kind as `db_url` (for migration tests)."""
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return request.getfixturevalue("postgres_server").create_database()


@pytest.fixture
def database(db_url: str):
    from records.db import open_database

    db = open_database(db_url)
    try:
        yield db
    finally:
        db.dispose()
