"""Opening the records database: an engine tuned for SQLite (WAL) or PostgreSQL (psycopg 3), with
Alembic migrations run to head before anything else touches it."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("carecall.records")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_PG_MIGRATION_LOCK = 0x0CA2_EC41  # pg_advisory_lock key: one worker migrates at a time


PRIVATE_DIR = 0o700  # folders holding health data: the service's user only
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) as 0700, and tighten it if it already exists looser."""
    path = Path(path)
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        try:
            path.chmod(PRIVATE_DIR)
        except PermissionError:  # not ours (e.g. /tmp): nothing to tighten
            log.warning("cannot make %s private (mode %o)", path.name, path.stat().st_mode & 0o777)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty as 0600 if missing; tighten an existing file to 0600."""
    path = Path(path)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            path.chmod(PRIVATE_FILE)
    return path


class DatabaseError(RuntimeError):
    """The records database cannot be opened or migrated; the message says what to fix."""


@dataclass
class Database:
    url: str
    engine: Engine
    sessions: sessionmaker[Session]

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One unit of work: committed on success, rolled back on error."""
        with self.sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def normalise_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 here (not psycopg2)."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def create_db_engine(url: str) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            # health data at rest: the folder 0700, the database 0600 before SQLite opens it (its
            # -wal and -shm files take the database file's mode)
            database_file = Path(parsed.database)
            if not database_file.parent.exists():
                private_dir(database_file.parent)
            private_file(database_file)
            for extra in ("-wal", "-shm", "-journal"):
                sidecar = database_file.with_name(database_file.name + extra)
                if sidecar.exists():
                    private_file(sidecar)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 15})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")  # a finished turn survives even a power cut
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=15000")
            cursor.close()

        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
    raise DatabaseError(f"unsupported database {parsed.get_backend_name()!r}: use sqlite or postgresql")


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revisions (idempotent)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")  # every head: revisions added side by side by separate packages


def open_database(url: str) -> Database:
    """Connect, migrate to head and return the database. Raises DatabaseError with a useful message."""
    try:
        engine = create_db_engine(url)
        migrate(engine)
    except DatabaseError:
        raise
    except Exception as exc:
        safe = make_url(normalise_url(url)).render_as_string(hide_password=True)
        raise DatabaseError(f"cannot open records database {safe}: {exc}") from exc
    log.info("records database ready (%s)", engine.dialect.name)
    return Database(url=url, engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))
