"""Failed console sign-ins counted in the shared database (issue 13): every worker's LoginThrottle
(web/console/auth.py) reads and bumps the same rows, so N workers behind nginx do not give a guesser N
times the attempts on a nurse's account. `update` is atomic across workers: the rows are made if
missing (INSERT ... ON CONFLICT DO NOTHING) and locked (SELECT ... FOR UPDATE) in key order, so two
attempts at once cannot both pass the last free one, and no two workers lock in opposite orders.

Keys are the throttle's digests (no username is stored); times are the throttle's clock (wall-clock
seconds). Rows are forgotten an hour after their last failure (`forget`, at most once a minute)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import Float, Integer, String, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from records.db import Database
from records.models import Base

Entry = tuple[int, float]  # (failures, time of the last failure)


class LoginFailure(Base):
    __tablename__ = "login_failures"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure: Mapped[float] = mapped_column(Float, index=True)


class SharedFailureCounts:
    """`web.console.auth.FailureCounts` in the records database (PostgreSQL; SQLite works too)."""

    def __init__(self, database: Database, forget_every_s: float = 60.0) -> None:
        self.database = database
        self.forget_every_s = forget_every_s
        self._forgot_before: float | None = None
        self._insert = postgresql.insert if database.dialect == "postgresql" else sqlite.insert

    def read(self, keys: Sequence[str]) -> dict[str, Entry]:
        with self.database.session() as session:
            return self._entries(session, keys, lock=False)

    def update(self, keys: Sequence[str], change: Callable[[dict[str, Entry]], dict[str, Entry | None]]) -> None:
        ordered = sorted(set(keys))
        with self.database.session() as session:  # an exception from `change` rolls all of it back
            # rows with no failures hold the place, so that there is a row to lock for each key
            session.execute(self._insert(LoginFailure).values(
                [{"key": key, "failures": 0, "last_failure": 0.0} for key in ordered],
            ).on_conflict_do_nothing(index_elements=["key"]))
            changed = change(self._entries(session, ordered, lock=True))
            for key, entry in changed.items():  # every row is there and locked: plain updates and deletes
                if entry is None:
                    session.execute(delete(LoginFailure).where(LoginFailure.key == key))
                else:
                    session.execute(update(LoginFailure).where(LoginFailure.key == key).values(
                        failures=entry[0], last_failure=entry[1]))
            # the places held for keys that have never failed go again
            session.execute(delete(LoginFailure).where(LoginFailure.key.in_(ordered), LoginFailure.failures == 0))

    def _entries(self, session: Session, keys: Sequence[str], *, lock: bool) -> dict[str, Entry]:
        query = select(LoginFailure.key, LoginFailure.failures, LoginFailure.last_failure).where(
            LoginFailure.key.in_(list(keys))).order_by(LoginFailure.key)
        if lock:  # every row, placeholders too: a row left unlocked could be counted twice at once
            query = query.with_for_update()
        return {key: (failures, last) for key, failures, last in session.execute(query) if failures > 0}

    def forget(self, before: float) -> None:
        if self._forgot_before is not None and before - self._forgot_before < self.forget_every_s:
            return
        self._forgot_before = before
        with self.database.session() as session:
            session.execute(delete(LoginFailure).where(LoginFailure.last_failure < before))

    def __len__(self) -> int:
        with self.database.session() as session:
            return int(session.scalar(select(func.count()).select_from(LoginFailure)) or 0)
