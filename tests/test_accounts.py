"""Newsroom accounts without HTTP: passphrase + TOTP, codes that work once, throttling.

Time is injected (a :class:`Clock`), so nothing sleeps. One class also runs on a real
PostgreSQL."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import threading
from collections.abc import Iterator

import pyotp
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.helpers import ACTOR, slots_taken
from tipbox.accounts import AccountService, NewCredentials, TotpSealer
from tipbox.audit import AuditLog
from tipbox.codenames import eff_words
from tipbox.config import Settings
from tipbox.db import make_engine, make_session_factory
from tipbox.errors import (
    HashingBusy,
    InvalidUsername,
    LoginFailed,
    LoginThrottled,
    NoSuchAccount,
    UsernameTaken,
)
from tipbox.hashing_slots import HashingSlots
from tipbox.login_throttle import MAX_FAILURES, UnknownNames
from tipbox.models import Journalist

# Cheap Argon2id for tests only: the defaults cost ~64 MiB and ~0.1 s per hash.
CHEAP = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}
# 10 seconds into a 30-second TOTP step, so one step back or forward is unambiguous.
START = dt.datetime(2030, 1, 1, 12, 0, 10, tzinfo=dt.UTC)


class Clock:
    def __init__(self, start: dt.datetime = START) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


class CountingHasher(PasswordHasher):
    """Cheap Argon2id that counts how many passphrases it checked."""

    def __init__(self, time_cost: int = 1, memory_cost: int = 8) -> None:
        super().__init__(time_cost=time_cost, memory_cost=memory_cost, parallelism=1)
        self.verifies = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verifies += 1
        return super().verify(hash, password)


def code(creds: NewCredentials, clock: Clock, steps: int = 0) -> str:
    """The code the journalist's authenticator shows, ``steps`` steps from now."""
    return pyotp.TOTP(creds.totp_secret).at(clock.now, counter_offset=steps)


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


@pytest.fixture
def accounts(sessions: sessionmaker[Session], clock: Clock,
             hasher: CountingHasher, sealer: TotpSealer) -> AccountService:
    return AccountService(sessions, sealer, AuditLog(sessions), clock=clock, hasher=hasher)


@pytest.fixture
def sealer() -> TotpSealer:
    return TotpSealer(secrets.token_bytes(32))


# --- creating accounts ---------------------------------------------------------------

def test_a_new_account_logs_in_with_a_code_computed_for_the_current_time(
        sessions: sessionmaker[Session], sealer: TotpSealer) -> None:
    accounts = AccountService(sessions, sealer, AuditLog(sessions),
                              hasher=PasswordHasher(**CHEAP))  # real clock
    creds = accounts.create("alice", ACTOR)
    journalist_id = accounts.authenticate("alice", creds.passphrase,
                                          pyotp.TOTP(creds.totp_secret).now())
    summary = accounts.get(journalist_id)
    assert summary is not None
    assert (summary.username, summary.is_admin, summary.is_active) == ("alice", False, True)


def test_new_credentials_are_seven_eff_words_and_a_160_bit_totp_secret(
        accounts: AccountService) -> None:
    creds = accounts.create("alice", ACTOR)
    words = creds.passphrase.split(" ")
    assert len(words) == 7 and set(words) <= set(eff_words())
    assert len(creds.totp_secret) == 32 and set(creds.totp_secret) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    assert accounts.create("bob", ACTOR).passphrase != creds.passphrase


def test_the_otpauth_uri_and_qr_code_carry_issuer_name_and_secret(
        accounts: AccountService) -> None:
    creds = accounts.create("j.doe", ACTOR)
    assert creds.otpauth_uri.startswith("otpauth://totp/tipbox:j.doe?")
    assert f"secret={creds.totp_secret}" in creds.otpauth_uri
    assert "issuer=tipbox" in creds.otpauth_uri
    parsed = pyotp.parse_uri(creds.otpauth_uri)
    assert isinstance(parsed, pyotp.TOTP) and parsed.secret == creds.totp_secret
    qr = creds.qr_for_terminal()
    assert len(qr.splitlines()) > 20 and set(qr) <= set("█▀▄ \n")


def test_the_database_keeps_an_argon2id_hash_not_the_passphrase(
        accounts: AccountService, sessions: sessionmaker[Session]) -> None:
    creds = accounts.create("alice", ACTOR, admin=True)
    with sessions() as db:
        row = db.scalars(select(Journalist)).one()
    assert row.passphrase_hash.startswith("$argon2id$")
    assert creds.passphrase not in row.passphrase_hash
    assert row.is_admin and row.is_active and row.last_totp_step == 0


def test_the_database_keeps_the_totp_secret_sealed(
        accounts: AccountService, sessions: sessionmaker[Session], clock: Clock) -> None:
    creds = accounts.create("alice", ACTOR)
    with sessions() as db:
        stored = db.scalars(select(Journalist.totp_secret)).one()
    assert stored.startswith("v1:") and creds.totp_secret not in stored
    assert accounts.authenticate("alice", creds.passphrase, code(creds, clock))
    clock.advance(30)
    fresh = accounts.reset_credentials("alice", ACTOR)
    with sessions() as db:
        resealed = db.scalars(select(Journalist.totp_secret)).one()
    assert resealed.startswith("v1:") and fresh.totp_secret not in resealed


def test_a_database_without_its_data_folder_gives_no_second_factor(
        accounts: AccountService, sessions: sessionmaker[Session], clock: Clock,
        hasher: CountingHasher, caplog: pytest.LogCaptureFixture) -> None:
    creds = accounts.create("alice", ACTOR)
    elsewhere = AccountService(sessions, TotpSealer(secrets.token_bytes(32)),
                               AuditLog(sessions), clock=clock, hasher=hasher)
    with caplog.at_level(logging.ERROR, logger="tipbox.accounts"), \
            pytest.raises(LoginFailed):
        elsewhere.authenticate("alice", creds.passphrase, code(creds, clock))
    assert "do not belong together" in caplog.text and "tipbox users reset" in caplog.text
    assert creds.totp_secret not in caplog.text


def test_a_sealed_secret_moved_to_another_account_does_not_open(
        accounts: AccountService, sessions: sessionmaker[Session], clock: Clock) -> None:
    alice = accounts.create("alice", ACTOR)
    bob = accounts.create("bob", ACTOR)
    with sessions.begin() as db:
        rows = {r.username: r for r in db.scalars(select(Journalist))}
        rows["bob"].totp_secret = rows["alice"].totp_secret
    with pytest.raises(LoginFailed):
        accounts.authenticate("bob", bob.passphrase, code(alice, clock))


def test_a_secret_in_clear_is_refused_until_sealed(
        accounts: AccountService, sessions: sessionmaker[Session], clock: Clock,
        caplog: pytest.LogCaptureFixture) -> None:
    # As an older version stored it, or as someone with write access to the database but
    # without the key would plant it.
    creds = accounts.create("alice", ACTOR)
    with sessions.begin() as db:
        db.scalars(select(Journalist)).one().totp_secret = creds.totp_secret
    with caplog.at_level(logging.ERROR, logger="tipbox.accounts"), \
            pytest.raises(LoginFailed):
        accounts.authenticate("alice", creds.passphrase, code(creds, clock))
    assert "not sealed: run `tipbox init`" in caplog.text
    assert accounts.unopenable_secrets() == ["alice"]

    assert accounts.seal_plaintext_secrets() == 1
    assert accounts.seal_plaintext_secrets() == 0
    with sessions() as db:
        assert db.scalars(select(Journalist.totp_secret)).one().startswith("v1:")
    assert accounts.unopenable_secrets() == []
    clock.advance(30)
    assert accounts.authenticate("alice", creds.passphrase, code(creds, clock))


@pytest.mark.parametrize("name", ["a", "x" * 64, "j.doe_2-x", "A.B"])
def test_usernames_of_letters_digits_dot_underscore_and_dash_are_accepted(
        accounts: AccountService, name: str) -> None:
    assert accounts.create(name, ACTOR).username == name


@pytest.mark.parametrize("name", ["", "x" * 65, "a b", "jürgen", "a/b", "alice\n", "al@ice"])
def test_other_usernames_are_refused_with_the_rule(accounts: AccountService, name: str) -> None:
    with pytest.raises(InvalidUsername, match="1 to 64 characters"):
        accounts.create(name, ACTOR)
    assert accounts.list() == []


def test_a_taken_username_is_refused_even_in_another_case(accounts: AccountService) -> None:
    accounts.create("alice", ACTOR)
    for name in ("alice", "Alice"):
        with pytest.raises(UsernameTaken, match=f"{name!r} is taken") as taken:
            accounts.create(name, ACTOR)
        assert taken.value.existing == "alice"
    assert [a.username for a in accounts.list()] == ["alice"]


# --- TOTP: drift and replay ----------------------------------------------------------

def test_the_previous_steps_code_is_accepted_once(accounts: AccountService,
                                                 clock: Clock) -> None:
    creds = accounts.create("alice", ACTOR)
    late = code(creds, clock, -1)
    assert accounts.authenticate("alice", creds.passphrase, late)
    with pytest.raises(LoginFailed):
        accounts.authenticate("alice", creds.passphrase, late)


def test_the_next_steps_code_is_accepted_for_a_clock_running_ahead(
        accounts: AccountService, clock: Clock) -> None:
    creds = accounts.create("alice", ACTOR)
    assert accounts.authenticate("alice", creds.passphrase, code(creds, clock, +1))


@pytest.mark.parametrize("steps", [-2, +2, -10])
def test_a_code_two_or_more_steps_off_is_refused(accounts: AccountService, clock: Clock,
                                                 steps: int) -> None:
    creds = accounts.create("alice", ACTOR)
    with pytest.raises(LoginFailed):
        accounts.authenticate("alice", creds.passphrase, code(creds, clock, steps))
    assert accounts.authenticate("alice", creds.passphrase, code(creds, clock))


def test_a_code_is_refused_the_second_time(accounts: AccountService, clock: Clock) -> None:
    creds = accounts.create("alice", ACTOR)
    now = code(creds, clock)
    journalist_id = accounts.authenticate("alice", creds.passphrase, now)
    with pytest.raises(LoginFailed):
        accounts.authenticate("alice", creds.passphrase, now)
    clock.advance(30)
    assert accounts.authenticate("alice", creds.passphrase, code(creds, clock)) == journalist_id


def test_an_older_code_is_refused_after_a_newer_one(accounts: AccountService,
                                                    clock: Clock) -> None:
    creds = accounts.create("alice", ACTOR)
    accounts.authenticate("alice", creds.passphrase, code(creds, clock))
    with pytest.raises(LoginFailed):
        accounts.authenticate("alice", creds.passphrase, code(creds, clock, -1))


def test_spaces_and_case_typed_by_hand_are_forgiven(accounts: AccountService,
                                                    clock: Clock) -> None:
    creds = accounts.create("alice", ACTOR)
    typed = "  " + creds.passphrase.upper().replace(" ", "   ") + "\n"
    digits = code(creds, clock)
    assert accounts.authenticate("alice", typed, f"{digits[:3]} {digits[3:]}")


# --- failures say nothing about which factor was wrong --------------------------------

def test_every_failure_gives_the_same_message(accounts: AccountService, clock: Clock) -> None:
    creds = accounts.create("alice", ACTOR)
    bob = accounts.create("bob", ACTOR)
    accounts.deactivate("bob", ACTOR)
    used = code(creds, clock, -1)
    accounts.authenticate("alice", creds.passphrase, used)
    attempts = {
        "wrong passphrase": ("alice", "not the passphrase", code(creds, clock)),
        "wrong code": ("alice", creds.passphrase, "000000"),
        "malformed code": ("alice", creds.passphrase, "12345x"),
        "replayed code": ("alice", creds.passphrase, used),
        "unknown user": ("mallory", creds.passphrase, code(creds, clock)),
        "impossible username": ("a b" * 100, creds.passphrase, code(creds, clock)),
        "deactivated": ("bob", bob.passphrase, code(bob, clock)),
    }
    messages = set()
    for why, args in attempts.items():
        with pytest.raises(LoginFailed) as info:
            accounts.authenticate(*args)
        assert type(info.value) is LoginFailed, why
        messages.add(str(info.value))
    assert len(messages) == 1


def test_an_unknown_username_costs_a_passphrase_check_like_a_known_one(
        accounts: AccountService, hasher: CountingHasher) -> None:
    accounts.create("alice", ACTOR)
    for name in ("mallory", "x" * 500):
        before = hasher.verifies
        with pytest.raises(LoginFailed):
            accounts.authenticate(name, "some guess", "123456")
        assert hasher.verifies == before + 1


def test_a_deactivated_account_is_refused_until_reactivated(accounts: AccountService,
                                                           clock: Clock) -> None:
    creds = accounts.create("alice", ACTOR)
    journalist_id = accounts.authenticate("alice", creds.passphrase, code(creds, clock, -1))
    accounts.deactivate("alice", ACTOR)
    summary = accounts.get(journalist_id)
    assert summary is not None and not summary.is_active
    with pytest.raises(LoginFailed):
        accounts.authenticate("alice", creds.passphrase, code(creds, clock))
    accounts.reactivate("alice", ACTOR)
    assert accounts.authenticate("alice", creds.passphrase, code(creds, clock)) == journalist_id


def test_an_oversized_passphrase_is_refused_like_a_wrong_one(accounts: AccountService,
                                                            clock: Clock) -> None:
    creds = accounts.create("alice", ACTOR)
    with pytest.raises(LoginFailed):
        accounts.authenticate("alice", creds.passphrase + " " * 2000, code(creds, clock))


# --- throttling ----------------------------------------------------------------------

def test_five_failures_lock_the_account_and_the_message_says_how_long(
        accounts: AccountService, clock: Clock, hasher: CountingHasher) -> None:
    creds = accounts.create("alice", ACTOR)
    for _ in range(4):
        with pytest.raises(LoginFailed) as info:
            accounts.authenticate("alice", "guess", code(creds, clock))
        assert type(info.value) is LoginFailed
    with pytest.raises(LoginThrottled, match="Wait 1 minute and try again") as throttled:
        accounts.authenticate("alice", "guess", code(creds, clock))
    assert throttled.value.seconds == 60

    clock.advance(45)
    before = hasher.verifies
    with pytest.raises(LoginThrottled, match="Wait 15 seconds") as throttled:
        accounts.authenticate("alice", creds.passphrase, code(creds, clock))
    assert throttled.value.seconds == 15
    assert hasher.verifies == before  # locked: the passphrase is not even checked

    clock.advance(15)
    assert accounts.authenticate("alice", creds.passphrase, code(creds, clock))
    for _ in range(4):  # success started the count again
        with pytest.raises(LoginFailed) as info:
            accounts.authenticate("alice", "guess", code(creds, clock))
        assert type(info.value) is LoginFailed


def test_each_failure_after_a_lock_doubles_it_up_to_an_hour(accounts: AccountService,
                                                            clock: Clock) -> None:
    creds = accounts.create("alice", ACTOR)
    waits = []
    for _ in range(13):
        try:
            accounts.authenticate("alice", "guess", code(creds, clock))
        except LoginThrottled as exc:
            waits.append(exc.seconds)
            clock.advance(exc.seconds)
        except LoginFailed:
            pass
    assert waits == [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
    assert accounts.authenticate("alice", creds.passphrase, code(creds, clock))


def answers(accounts: AccountService, clock: Clock, username: str, tries: int,
            hasher: CountingHasher) -> list[tuple[str, int, int]]:
    """(what came back, lock seconds, passphrases checked) for each failed try, moving
    the clock on by each lock."""
    seen = []
    for _ in range(tries):
        before = hasher.verifies
        try:
            accounts.authenticate(username, "guess", "123456")
        except LoginThrottled as exc:
            seen.append(("throttled", exc.seconds, hasher.verifies - before))
            if hasher.verifies == before:  # locked before any check: wait it out
                clock.advance(exc.seconds)
        except LoginFailed as exc:
            seen.append((str(exc), 0, hasher.verifies - before))
    return seen


def test_an_unknown_username_is_answered_and_locked_exactly_like_a_known_one(
        accounts: AccountService, clock: Clock, hasher: CountingHasher) -> None:
    # Otherwise 403 for ever against 403 four times then 429 tells which names exist.
    accounts.create("alice", ACTOR)
    known = answers(accounts, clock, "alice", 9, hasher)
    unknown = answers(accounts, clock, "mallory", 9, hasher)
    assert unknown == known
    assert [kind for kind, _, _ in known].count("throttled") >= 3
    assert known[4] == ("throttled", 60, 1)  # the fifth failure locks, as before


def test_a_busy_site_charges_no_failure_to_any_name(
        sessions: sessionmaker[Session], clock: Clock, hasher: CountingHasher,
        sealer: TotpSealer) -> None:
    # Otherwise a known name, counted before its hash, would lock while the site is busy
    # and an unknown one would not: a way to tell them apart, and to lock out a journalist
    # without paying for a single hash.
    slots = HashingSlots(slots=1, queue=0, wait_seconds=0)
    accounts = AccountService(sessions, sealer, AuditLog(sessions), clock=clock,
                              hasher=hasher, slots=slots)
    accounts.create("alice", ACTOR)
    with slots_taken(slots):
        for name in ("alice", "mallory"):
            for _ in range(MAX_FAILURES + 2):
                with pytest.raises(HashingBusy):
                    accounts.authenticate(name, "guess", "123456")
    alice = answers(accounts, clock, "alice", 5, hasher)
    assert alice == answers(accounts, clock, "mallory", 5, hasher)
    assert [kind for kind, _, _ in alice[:4]].count("throttled") == 0  # nothing charged
    assert alice[4] == ("throttled", 60, 1)


def test_unknown_names_are_counted_separately_and_in_bounded_memory(
        clock: Clock) -> None:
    names = UnknownNames(capacity=3)
    now = clock()
    for _ in range(MAX_FAILURES - 1):
        assert names.fail("mallory", now) == 0
    assert names.fail("mallory", now) == 60
    assert names.locked_for("mallory", now) == 60
    assert names.locked_for("eve", now) == 0
    for other in ("a", "b", "c"):  # pushes the oldest name out of the table
        names.fail(other, now)
    assert names.locked_for("mallory", now) == 0


def test_a_wrong_code_counts_as_a_failure_too(accounts: AccountService, clock: Clock) -> None:
    creds = accounts.create("alice", ACTOR)
    for _ in range(4):
        with pytest.raises(LoginFailed):
            accounts.authenticate("alice", creds.passphrase, "000000")
    with pytest.raises(LoginThrottled):
        accounts.authenticate("alice", creds.passphrase, "000000")


def test_a_lock_shows_in_the_list_and_reactivate_lifts_it(accounts: AccountService,
                                                         clock: Clock) -> None:
    creds = accounts.create("alice", ACTOR)
    for _ in range(5):
        with pytest.raises(LoginFailed):
            accounts.authenticate("alice", "guess", code(creds, clock))
    [summary] = accounts.list()
    assert summary.locked_until == START + dt.timedelta(minutes=1)
    accounts.reactivate("alice", ACTOR)
    assert accounts.list()[0].locked_until is None
    assert accounts.authenticate("alice", creds.passphrase, code(creds, clock))


def test_parallel_guesses_cannot_slip_past_the_limit(accounts: AccountService, clock: Clock,
                                                     hasher: CountingHasher) -> None:
    creds = accounts.create("alice", ACTOR)
    for _ in range(4):
        with pytest.raises(LoginFailed):
            accounts.authenticate("alice", "guess", code(creds, clock))
    before = hasher.verifies
    start = threading.Barrier(8)
    outcomes: list[type[BaseException]] = []

    def guess() -> None:
        start.wait()
        try:
            accounts.authenticate("alice", "guess", code(creds, clock))
        except BaseException as exc:
            outcomes.append(type(exc))

    threads = [threading.Thread(target=guess) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == [LoginThrottled] * 8
    assert hasher.verifies == before + 1  # only the fifth guess was checked


def test_logins_racing_with_one_code_let_only_one_in(accounts: AccountService,
                                                     clock: Clock) -> None:
    creds = accounts.create("alice", ACTOR)
    same = code(creds, clock)
    start = threading.Barrier(4)
    outcomes: list[object] = []

    def log_in() -> None:
        start.wait()
        try:
            outcomes.append(accounts.authenticate("alice", creds.passphrase, same))
        except BaseException as exc:
            outcomes.append(type(exc))

    threads = [threading.Thread(target=log_in) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(str, outcomes)) == sorted(map(str, [1] + [LoginFailed] * 3))


# --- reset, rehash, listing ----------------------------------------------------------

def test_reset_gives_new_credentials_and_the_old_ones_stop_working(
        accounts: AccountService, clock: Clock) -> None:
    old = accounts.create("alice", ACTOR)
    journalist_id = accounts.authenticate("alice", old.passphrase, code(old, clock))
    for _ in range(5):
        with pytest.raises(LoginFailed):
            accounts.authenticate("alice", "guess", code(old, clock))
    new = accounts.reset_credentials("alice", ACTOR)
    assert new.username == "alice"
    assert new.passphrase != old.passphrase and new.totp_secret != old.totp_secret
    clock.advance(30)
    for passphrase, creds in [(old.passphrase, new), (new.passphrase, old)]:
        with pytest.raises(LoginFailed) as info:
            accounts.authenticate("alice", passphrase, code(creds, clock))
        assert type(info.value) is LoginFailed  # the reset lifted the lock
    # The new secret starts afresh: even a step before the last one used is fine.
    assert accounts.authenticate("alice", new.passphrase, code(new, clock, -1)) == journalist_id


def test_admin_operations_on_an_unknown_account_say_so(accounts: AccountService) -> None:
    for operation in (accounts.reset_credentials, accounts.deactivate, accounts.reactivate):
        with pytest.raises(NoSuchAccount, match="no account with that username"):
            operation("nobody", ACTOR)
    # Nothing changed, so nothing to audit (the entries there are init's key import).
    assert not [e for e in accounts.audit.recent() if e.action.startswith("account")]


def test_every_change_to_an_account_is_audited_under_who_asked(
        accounts: AccountService) -> None:
    accounts.create("alice", "cli:ada", admin=True)
    accounts.create("bob", "web:alice")
    accounts.reset_credentials("bob", "web:alice")
    accounts.deactivate("bob", "cli:ada")
    accounts.reactivate("bob", "web:alice")
    with pytest.raises(UsernameTaken):
        accounts.create("BOB", "cli:ada")
    entries = [(e.actor, e.action, e.detail) for e in reversed(accounts.audit.recent())
               if e.action.startswith("account")]
    assert entries == [
        ("cli:ada", "account created", "alice (admin)"),
        ("web:alice", "account created", "bob (journalist)"),
        ("web:alice", "account credentials reset", "bob"),
        ("cli:ada", "account deactivated", "bob"),
        ("web:alice", "account reactivated", "bob"),
    ]


def test_a_hash_made_with_weaker_parameters_is_upgraded_at_login(
        accounts: AccountService, sessions: sessionmaker[Session], clock: Clock,
        sealer: TotpSealer) -> None:
    creds = accounts.create("alice", ACTOR)
    stronger = AccountService(sessions, sealer, AuditLog(sessions), clock=clock,
                              hasher=CountingHasher(time_cost=2, memory_cost=16))
    assert stronger.authenticate("alice", creds.passphrase, code(creds, clock))
    with sessions() as db:
        stored = db.scalars(select(Journalist.passphrase_hash)).one()
    assert "m=16,t=2,p=1" in stored
    clock.advance(30)
    assert accounts.authenticate("alice", creds.passphrase, code(creds, clock))


def test_list_and_get_summarise_accounts(accounts: AccountService) -> None:
    accounts.create("bob", ACTOR)
    accounts.create("alice", ACTOR, admin=True)
    accounts.deactivate("bob", ACTOR)
    listed = accounts.list()
    assert [(a.username, a.is_admin, a.is_active) for a in listed] == [
        ("alice", True, True), ("bob", False, False)]
    assert all(a.created_on == START.date() for a in listed)
    assert accounts.get(listed[1].id) == listed[1]
    assert accounts.get(9999) is None


# --- secrets stay out of reprs, logs and errors --------------------------------------

def test_no_passphrase_code_or_secret_reaches_a_repr_a_log_or_an_error(
        accounts: AccountService, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    creds = accounts.create("alice", ACTOR)
    secrets = [creds.passphrase, creds.totp_secret, "mistyped passphrase words"]
    assert creds.passphrase not in repr(creds) and creds.totp_secret not in repr(creds)
    assert creds.passphrase not in str(creds)
    errors: list[Exception] = []
    for passphrase, steps in [(creds.passphrase, 0), (creds.passphrase, 0),
                              ("mistyped passphrase words", 1)] + [("guess", 0)] * 4:
        secrets.append(code(creds, clock, steps))
        try:
            accounts.authenticate("alice", passphrase, secrets[-1])
        except LoginFailed as exc:
            errors.append(exc)
    with pytest.raises(LoginFailed) as info:
        accounts.authenticate(creds.passphrase, creds.passphrase, "123456")  # wrong field
    errors.append(info.value)
    new = accounts.reset_credentials("alice", ACTOR)
    secrets += [new.passphrase, new.totp_secret]
    assert any(isinstance(e, LoginThrottled) for e in errors)
    assert "login failed: alice" in caplog.text and "credentials reset: alice" in caplog.text
    for secret in secrets:
        assert secret not in caplog.text
        assert secret.upper() not in caplog.text
        for exc in errors:
            assert secret not in str(exc) and secret not in repr(exc.args)


# --- on both databases ---------------------------------------------------------------

class TestOnBothDatabases:
    @pytest.fixture
    def accounts(self, any_database: sessionmaker[Session], clock: Clock,
                 hasher: CountingHasher, sealer: TotpSealer) -> AccountService:
        return AccountService(any_database, sealer, AuditLog(any_database), clock=clock,
                              hasher=hasher)

    def test_login_replay_and_older_codes(self, accounts: AccountService,
                                          clock: Clock) -> None:
        creds = accounts.create("alice", ACTOR, admin=True)
        journalist_id = accounts.authenticate("alice", creds.passphrase, code(creds, clock))
        for stale in (code(creds, clock), code(creds, clock, -1)):
            with pytest.raises(LoginFailed):
                accounts.authenticate("alice", creds.passphrase, stale)
        assert accounts.authenticate("alice", creds.passphrase,
                                     code(creds, clock, +1)) == journalist_id
        with pytest.raises(UsernameTaken):
            accounts.create("ALICE", ACTOR)

    def test_throttle_unlock_and_reset(self, accounts: AccountService, clock: Clock) -> None:
        creds = accounts.create("alice", ACTOR)
        for _ in range(4):
            with pytest.raises(LoginFailed):
                accounts.authenticate("alice", "guess", code(creds, clock))
        with pytest.raises(LoginThrottled, match="Wait 1 minute"):
            accounts.authenticate("alice", "guess", code(creds, clock))
        [summary] = accounts.list()
        assert summary.locked_until == START + dt.timedelta(minutes=1)
        clock.advance(30)
        with pytest.raises(LoginThrottled, match="Wait 30 seconds"):
            accounts.authenticate("alice", creds.passphrase, code(creds, clock))
        clock.advance(30)
        assert accounts.authenticate("alice", creds.passphrase, code(creds, clock))
        new = accounts.reset_credentials("alice", ACTOR)
        clock.advance(30)
        with pytest.raises(LoginFailed):
            accounts.authenticate("alice", creds.passphrase, code(creds, clock))
        assert accounts.authenticate("alice", new.passphrase, code(new, clock))

    def test_parallel_guesses_cannot_slip_past_the_limit(
            self, accounts: AccountService, clock: Clock, hasher: CountingHasher) -> None:
        test_parallel_guesses_cannot_slip_past_the_limit(accounts, clock, hasher)

    def test_logins_racing_with_one_code_let_only_one_in(self, accounts: AccountService,
                                                         clock: Clock) -> None:
        test_logins_racing_with_one_code_let_only_one_in(accounts, clock)
