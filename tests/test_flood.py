"""The flood defence's rules (tipbox.flood), on SQLite and on the real PostgreSQL.

Nothing is asked while the site is quiet; past the threshold every creation needs a
ticket, redeemed by work or by waiting, accepted once. The clock is a number the tests
move on by hand.
"""

from __future__ import annotations

import hashlib
import itertools

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.helpers import SecondsClock
from tipbox.config import Settings
from tipbox.db import make_engine, make_session_factory
from tipbox.errors import ProofRefused
from tipbox.flood import (
    CREATE,
    SHARE_SECONDS,
    SUBMIT,
    TICKET_SECONDS,
    FloodGuard,
    FloodPolicy,
    Ticket,
    TicketSigner,
    solves,
)
from tipbox.models import FloodCount, SpentTicket

KEY = bytes(range(32))
# Proof of work from three creations in ten minutes; four to eight leading zero bits, so
# that a test works a ticket out in a few hundred hashes.
POLICY = FloodPolicy({CREATE: 3, SUBMIT: 3}, max_bits=8, hashes_per_second=16)
START = SecondsClock.START


@pytest.fixture
def clock() -> SecondsClock:
    return SecondsClock()


@pytest.fixture
def guard(any_database: sessionmaker[Session], clock: SecondsClock) -> FloodGuard:
    return FloodGuard(any_database, TicketSigner(KEY), POLICY, clock)


def work_out(ticket: Ticket) -> str:
    """What static/pow-worker.js does, the slow way."""
    for n in itertools.count():
        if solves(ticket, str(n)):
            return str(n)
    raise AssertionError("unreachable")


def flood(guard: FloodGuard, purpose: str = CREATE, times: int = 4) -> None:
    """Admit ``times`` actions while the site is still quiet enough to ask nothing."""
    for _ in range(times):
        guard.admit(purpose, "", "")


def refusal(guard: FloodGuard, purpose: str, token: str, solution: str) -> ProofRefused:
    with pytest.raises(ProofRefused) as refused:
        guard.admit(purpose, token, solution)
    return refused.value


def test_a_quiet_site_asks_for_nothing_and_hands_out_no_ticket(guard: FloodGuard) -> None:
    flood(guard, times=3)  # at the threshold, not over it
    assert guard.difficulty(CREATE) == 0
    assert guard.new_ticket(CREATE) is None
    gate = guard.gate(CREATE, "", "")
    assert gate.passed and gate.ticket is None
    guard.admit(CREATE, "", "")  # the fourth: still nothing asked of it


def test_past_the_threshold_a_creation_without_a_ticket_is_refused(guard: FloodGuard) -> None:
    flood(guard)
    assert guard.difficulty(CREATE) > 0
    refused = refusal(guard, CREATE, "", "")
    assert refused.reason == "missing" and refused.status == 429
    assert "Reload the page" in refused.public_message


def test_a_worked_out_ticket_passes_once(guard: FloodGuard) -> None:
    flood(guard)
    gate = guard.gate(CREATE, "", "")
    assert not gate.passed and gate.ticket is not None
    solution = work_out(gate.ticket)
    assert guard.gate(CREATE, gate.ticket.token, solution).passed
    guard.admit(CREATE, gate.ticket.token, solution)
    again = refusal(guard, CREATE, gate.ticket.token, solution)
    assert again.reason == "reused" and again.status == 409
    # The page offers a fresh ticket instead of the spent one.
    assert guard.gate(CREATE, gate.ticket.token, solution).ticket != gate.ticket


def test_a_ticket_passes_without_work_once_its_wait_is_over(guard: FloodGuard,
                                                            clock: SecondsClock) -> None:
    flood(guard)
    ticket = guard.new_ticket(CREATE)
    assert ticket is not None
    wait = POLICY.wait_seconds(ticket.bits)
    early = refusal(guard, CREATE, ticket.token, "")
    assert early.reason == "early" and early.status == 429
    assert early.params == {"seconds": wait} and early.retry_after == wait
    assert not guard.gate(CREATE, ticket.token, "").passed
    clock.now += wait
    assert guard.gate(CREATE, ticket.token, "").passed
    guard.admit(CREATE, ticket.token, "")
    assert refusal(guard, CREATE, ticket.token, "").reason == "reused"


def test_a_forged_or_altered_ticket_is_refused(guard: FloodGuard) -> None:
    flood(guard)
    ticket = guard.new_ticket(CREATE)
    assert ticket is not None
    other_key = TicketSigner(bytes(32)).issue(CREATE, 1, 0, START)
    for token in (other_key.token, ticket.token.replace(f".{ticket.bits}.", ".1.", 1),
                  "1.create.1.0.9999999999.00.AAAA", "garbage", "x" * 500):
        refused = refusal(guard, CREATE, token, "0")
        assert refused.reason == "forged" and refused.status == 403


def test_a_ticket_for_creating_a_codename_does_not_pass_for_a_submission(
        guard: FloodGuard) -> None:
    flood(guard, CREATE)
    flood(guard, SUBMIT)
    ticket = guard.new_ticket(CREATE)
    assert ticket is not None
    assert refusal(guard, SUBMIT, ticket.token, work_out(ticket)).reason == "forged"


def test_a_wrong_answer_is_refused_and_leaves_the_ticket_usable(guard: FloodGuard) -> None:
    flood(guard)
    ticket = guard.new_ticket(CREATE)
    assert ticket is not None
    solution = work_out(ticket)
    wrong = next(str(n) for n in itertools.count(int(solution) + 1)
                 if not solves(ticket, str(n)))
    for answer in (wrong, "-1", "１２", "9" * 17):
        refused = refusal(guard, CREATE, ticket.token, answer)
        assert refused.reason == "unsolved" and refused.status == 403
    guard.admit(CREATE, ticket.token, solution)


def test_an_expired_ticket_is_refused_even_when_worked_out(guard: FloodGuard,
                                                         clock: SecondsClock) -> None:
    flood(guard)
    ticket = guard.new_ticket(CREATE)
    assert ticket is not None
    solution = work_out(ticket)
    clock.now += TICKET_SECONDS[CREATE]
    flood(guard)  # the first flood is forgotten by now: a second one begins
    refused = refusal(guard, CREATE, ticket.token, solution)
    assert refused.reason == "expired" and refused.status == 403


def test_difficulty_rises_with_the_rate_up_to_the_maximum() -> None:
    assert [POLICY.bits_for(CREATE, n) for n in (0, 3, 4, 6, 12, 24, 1000)] == \
        [0, 0, 2, 4, 6, 8, 8]
    assert POLICY.wait_seconds(2) == 1 and POLICY.wait_seconds(8) == 16


def test_the_count_is_shared_by_every_guard_on_the_database(
        any_database_settings: Settings, any_database: sessionmaker[Session],
        clock: SecondsClock) -> None:
    """Two guards on two engines stand for two worker processes: what one admits, the
    other counts within a second, and a ticket one spends the other refuses."""
    engine = make_engine(any_database_settings.database_url)
    try:
        first = FloodGuard(any_database, TicketSigner(KEY), POLICY, clock)
        second = FloodGuard(make_session_factory(engine), TicketSigner(KEY), POLICY, clock)
        flood(first, times=2)
        flood(second, times=2)
        # Each counts its own at once, and writes them within a second.
        assert first.recent(CREATE) == second.recent(CREATE) == 2
        for _ in range(2):  # a second on, each writes what it holds and reads the rest
            clock.now += SHARE_SECONDS
            first.recent(CREATE)
            second.recent(CREATE)
        assert first.recent(CREATE) == second.recent(CREATE) == 4
        ticket = first.new_ticket(CREATE)
        assert ticket is not None
        solution = work_out(ticket)
        first.admit(CREATE, ticket.token, solution)
        assert refusal(second, CREATE, ticket.token, solution).reason == "reused"
    finally:
        engine.dispose()


def test_a_burst_costs_one_write_a_second_not_one_each(
        guard: FloodGuard, any_database: sessionmaker[Session], clock: SecondsClock) -> None:
    flood(guard, times=3)
    assert guard.recent(CREATE) == 3  # counted at once in this process...
    with any_database() as db:
        assert db.scalar(select(FloodCount.count)) is None  # ...written within a second
    clock.now += SHARE_SECONDS
    assert guard.recent(CREATE) == 3
    with any_database() as db:
        assert db.scalar(select(FloodCount.count)) == 3


def test_the_flood_is_forgotten_after_twenty_minutes_and_old_rows_go(
        guard: FloodGuard, any_database: sessionmaker[Session], clock: SecondsClock) -> None:
    flood(guard)
    ticket = guard.new_ticket(CREATE)
    assert ticket is not None
    guard.admit(CREATE, ticket.token, work_out(ticket))
    clock.now += 300
    assert 0 < guard.recent(CREATE) <= 5  # still this bucket: everything counts
    clock.now += 600  # half of the last bucket still lies in the window
    assert guard.recent(CREATE) == pytest.approx(2.5)
    clock.now += TICKET_SECONDS[SUBMIT]  # past every ticket's expiry
    assert guard.difficulty(CREATE) == 0
    guard.admit(CREATE, "", "")  # counting now sweeps the old buckets
    flood(guard, SUBMIT, times=4)
    submit_ticket = guard.new_ticket(SUBMIT)
    assert submit_ticket is not None
    guard.admit(SUBMIT, submit_ticket.token, work_out(submit_ticket))  # sweeps spent rows
    clock.now += SHARE_SECONDS
    guard.recent(CREATE)  # writes this second's counts, which sweeps the old buckets
    with any_database() as db:
        buckets = db.scalars(select(FloodCount.bucket).where(
            FloodCount.purpose == CREATE)).all()
        spent = db.scalars(select(SpentTicket.nonce)).all()
        count = db.scalar(select(func.count()).select_from(FloodCount))
    assert buckets == [int(clock.now // 600)]
    assert spent == [submit_ticket.nonce]  # the expired creation ticket's row is gone
    assert count == 2


def test_a_spent_ticket_row_holds_only_its_nonce_and_a_coarse_expiry(
        guard: FloodGuard, any_database: sessionmaker[Session], clock: SecondsClock) -> None:
    flood(guard)
    clock.now += 123
    ticket = guard.new_ticket(CREATE)
    assert ticket is not None
    guard.admit(CREATE, ticket.token, work_out(ticket))
    with any_database() as db:
        row = db.scalars(select(SpentTicket)).one()
    assert row.nonce == ticket.nonce
    assert row.expires_at.timestamp() % 600 == 0
    assert row.expires_at.timestamp() >= ticket.expires_at
    assert hashlib.sha256(ticket.token.encode()).hexdigest() not in repr(row.__dict__)
