"""Widget call tokens used up across every worker of a deployment (issue 13): `spend` inserts the
token id and succeeds for exactly one caller, on whichever worker, because the id is the primary key.
Rows are forgotten once the token would have expired anyway (a token is signed with its age, so an
expired one is refused before this table is asked)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import String, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from records.db import Database
from records.models import Base, UTCDateTime

log = logging.getLogger("carecall.records.tokens")


class UsedCallToken(Base):
    __tablename__ = "used_call_tokens"

    token_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class SharedTokenLedger:
    """`web.widget.tokens.CallTokens.ledger`: single use enforced in the shared database."""

    def __init__(self, database: Database, purge_every: int = 200) -> None:
        self.database = database
        self._purge_every = purge_every
        self._spent = 0

    def seen(self, token_id: str) -> bool:
        with self.database.session() as session:
            return session.scalar(select(UsedCallToken.token_id).where(UsedCallToken.token_id == token_id)) is not None

    def spend(self, token_id: str, keep_s: float) -> bool:
        """True for the first use of `token_id` anywhere; False when any worker used it before."""
        until = datetime.now(UTC) + timedelta(seconds=keep_s)
        try:
            with self.database.session() as session:
                session.add(UsedCallToken(token_id=token_id[:64], expires_at=until))
        except IntegrityError:
            return False
        self._spent += 1
        if self._spent % self._purge_every == 0:
            self.purge()
        return True

    def purge(self) -> int:
        with self.database.session() as session:
            result = session.execute(delete(UsedCallToken).where(UsedCallToken.expires_at < datetime.now(UTC)))
            return int(result.rowcount or 0)  # type: ignore[attr-defined]
