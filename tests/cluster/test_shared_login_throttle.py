"""The console's login throttle shared by every worker (issue 13): two throttles, each with its own
engine on the same PostgreSQL as two workers have, on one virtual clock. Failures through A make B
refuse; a success through B clears the account for A; racing attempts through both pass the free ones
exactly; old rows are deleted; no username is stored."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from records.db import open_database
from records.login_failures import LoginFailure, SharedFailureCounts
from tests.conftest import ManualClock
from tests.security.helpers import race_logins
from web.console.auth import ACCOUNT, PAIR, LoginThrottle, TooManyAttempts

pytestmark = pytest.mark.postgres



@pytest.fixture
def pg_url(postgres_server) -> str:  # type: ignore[no-untyped-def]
    return postgres_server.create_database()


def worker(url: str, clock: ManualClock) -> LoginThrottle:
    return LoginThrottle(clock=clock, counts=SharedFailureCounts(open_database(url)))  # its own engine


def test_failures_through_worker_a_make_worker_b_refuse_and_a_success_through_b_clears_them(pg_url: str) -> None:
    clock = ManualClock(1_000_000.0)
    a, b = worker(pg_url, clock), worker(pg_url, clock)
    for i in range(PAIR.free):  # the free failures, spread over both workers as nginx would
        (a if i % 2 else b).begin("Ada", "10.0.0.1")
    with pytest.raises(TooManyAttempts) as refused:
        b.begin("ada", "10.0.0.1")  # the same account (names are not case-sensitive) from the same address
    assert refused.value.retry_after_s == PAIR.base_s
    with pytest.raises(TooManyAttempts):
        a.begin("ada", "10.0.0.1")
    assert a.retry_after("ada", "10.0.0.2") == 0 == b.retry_after("ada", "10.0.0.2"), "another address is free"
    clock.t += PAIR.base_s
    b.begin("ada", "10.0.0.1")  # allowed once the wait is over (refusals were not counted)...
    with pytest.raises(TooManyAttempts) as again:
        a.begin("ada", "10.0.0.1")
    assert again.value.retry_after_s == 2 * PAIR.base_s  # ...and that failure doubled the wait for both
    clock.t += 2 * PAIR.base_s
    a.begin("ada", "10.0.0.1")
    b.succeeded("ada", "10.0.0.1")  # the right password, through B
    assert a.retry_after("ada", "10.0.0.1") == 0
    a.begin("ada", "10.0.0.1")


def test_racing_attempts_through_both_workers_pass_the_free_ones_exactly(pg_url: str) -> None:
    clock = ManualClock(1_000_000.0)
    workers = [worker(pg_url, clock) for _ in range(2)]
    assert race_logins(workers, 24, "ada", "10.3.0.1") == PAIR.free


def test_the_account_key_counts_across_workers_and_old_rows_are_deleted(pg_url: str) -> None:
    clock = ManualClock(1_000_000.0)
    a, b = worker(pg_url, clock), worker(pg_url, clock)
    for i in range(ACCOUNT.free):  # one guess per address, alternating workers
        clock.t += 31.0
        (a, b)[i % 2].begin("ada", f"10.1.0.{i}")
    assert 0 < b.retry_after("ada", "192.168.1.5") <= ACCOUNT.base_s
    db = open_database(pg_url)
    try:
        with db.session() as s:
            keys = list(s.scalars(select(LoginFailure.key)))
        assert keys and not any("ada" in k or "10.1.0" in k for k in keys), "digests only"
        clock.t += a.forget_after_s + 61
        a.begin("someone", "10.9.9.9")
        assert len(a) == 3  # pair, address and account of the last attempt only
    finally:
        db.dispose()
