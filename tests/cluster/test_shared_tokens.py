"""Widget call tokens are single use across workers: two workers' token checkers (same secret) on the
same PostgreSQL, as in a cluster. A token spent on A is refused on B, and of many workers racing for
one token exactly one wins."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from records.db import open_database
from records.shared_tokens import SharedTokenLedger
from web.widget.tokens import CallTokens, TokenUsed

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(postgres_server) -> str:  # type: ignore[no-untyped-def]
    return postgres_server.create_database()


def worker(url: str, secret: str = "one-secret-for-the-cluster") -> CallTokens:
    tokens = CallTokens(secret)
    tokens.ledger = SharedTokenLedger(open_database(url))  # each worker its own engine, like a process
    return tokens


def test_a_token_used_on_worker_a_is_refused_on_worker_b(pg_url: str) -> None:
    a, b = worker(pg_url), worker(pg_url)
    token = a.issue("zh")
    assert b.peek(token).language == "zh"  # any worker can check it
    a.redeem(token)
    with pytest.raises(TokenUsed):
        b.peek(token)
    with pytest.raises(TokenUsed):
        b.redeem(token)
    other = b.issue("en")  # issued by B, spent on A
    assert a.redeem(other).language == "en"
    with pytest.raises(TokenUsed):
        b.redeem(other)


def test_many_workers_racing_for_one_token_let_exactly_one_call_open(pg_url: str) -> None:
    workers = [worker(pg_url) for _ in range(6)]
    token = workers[0].issue("en")

    def attempt(w: CallTokens) -> bool:
        try:
            w.redeem(token)
            return True
        except TokenUsed:
            return False

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(attempt, workers))
    assert results.count(True) == 1


def test_expired_rows_are_purged(pg_url: str) -> None:
    ledger = SharedTokenLedger(open_database(pg_url))
    assert ledger.spend("gone", keep_s=-10) and ledger.spend("kept", keep_s=600)
    assert ledger.purge() == 1
    assert not ledger.seen("gone") and ledger.seen("kept")
