"""Newsroom accounts: generated passphrases hashed with Argon2id, TOTP codes that work once,
and throttling after repeated failures.

Plain Python, no Flask: the ``tipbox users`` commands and the newsroom app both use
:class:`AccountService`. A passphrase or a code never reaches a log, an exception or a
repr. The database keeps the passphrase only as an Argon2id hash. It must keep the TOTP
secret itself, since the server computes the codes it checks, but keeps it sealed
(:class:`TotpSealer`) under a key that lives in the data folder, not in the database.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import logging
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pyotp
import segno
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pyotp.exceptions import OTPVerificationError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from tipbox.audit import AuditLog
from tipbox.codenames import eff_words
from tipbox.db import rows_matched
from tipbox.errors import (
    AccountError,
    InvalidUsername,
    LoginFailed,
    LoginThrottled,
    NoSuchAccount,
    UsernameTaken,
)
from tipbox.hashing_slots import UNLIMITED, HashingSlots
from tipbox.i18n import N_
from tipbox.login_throttle import (
    MAX_FAILURES,
    UnknownNames,
    lock_time,
    seconds_until,
)
from tipbox.models import Journalist

__all__ = ["AccountService", "AccountSummary", "LoginFailed", "LoginThrottled",
           "NewCredentials", "TotpSealer", "check_username"]

log = logging.getLogger(__name__)

# 7 words of the EFF large list: 7 x 12.9 = 90 bits, out of reach of offline guessing
# even if the hashes leak.
PASSPHRASE_WORDS = 7
TOTP_ISSUER = "tipbox"
# One 30-second step either way, for clocks that drift and codes typed near a step's end.
TOTP_DRIFT_STEPS = 1
# Longer input is not worth hashing: no generated passphrase comes near it.
MAX_PASSPHRASE_CHARS = 1024
USERNAME_RULE = re.compile(r"[A-Za-z0-9._-]{1,64}")
SEALED = "v1:"


@dataclass(frozen=True)
class TotpSealer:
    """Encrypts TOTP secrets for the database with AES-256-GCM.

    The key is ``totp_key`` in the data folder's instance-secrets.json, so a copy of the
    database or of its backups (often kept elsewhere, with PostgreSQL on another host)
    gives nobody a journalist's second factor. Each secret is bound to its username, so
    secrets cannot be swapped between rows either.
    """

    key: bytes = field(repr=False)

    def seal(self, username: str, secret: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self.key).encrypt(nonce, secret.encode(), _bound_to(username))
        return SEALED + base64.urlsafe_b64encode(nonce + sealed).decode()

    def unseal(self, username: str, stored: str) -> str | None:
        """The secret, or None (logged) if it does not open with this instance's key.

        A secret in clear is refused too: only `tipbox init` (seal_plaintext_secrets)
        reads those. Otherwise anyone who can write to the database could set a TOTP
        secret of their choosing without the key."""
        if not stored.startswith(SEALED):
            log.error("the TOTP secret of %s is not sealed: run `tipbox init` to seal it",
                      username)
            return None
        try:
            raw = base64.urlsafe_b64decode(stored[len(SEALED):])
            return AESGCM(self.key).decrypt(raw[:12], raw[12:], _bound_to(username)).decode()
        except (ValueError, InvalidTag):
            log.error("the TOTP secret of %s does not open with totp_key from "
                      "instance-secrets.json: the database and the data folder do not belong "
                      "together. Restore the matching instance-secrets.json, or reset the "
                      "account (`tipbox users reset`).", username)
            return None


def _bound_to(username: str) -> bytes:
    return b"tipbox totp secret\0" + username.encode()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class NewCredentials:
    """What a journalist needs to log in. Shown once, at creation or reset, then gone."""

    username: str
    passphrase: str = field(repr=False)
    totp_secret: str = field(repr=False)

    @property
    def otpauth_uri(self) -> str:
        """The ``otpauth://`` URI an authenticator app enrols from (it holds the secret)."""
        return pyotp.TOTP(self.totp_secret).provisioning_uri(name=self.username,
                                                             issuer_name=TOTP_ISSUER)

    def qr_for_terminal(self) -> str:
        """The otpauth URI as a QR code drawn in Unicode blocks, for a terminal."""
        out = io.StringIO()
        segno.make(self.otpauth_uri, micro=False).terminal(out=out, compact=True)
        return out.getvalue()


@dataclass(frozen=True)
class AccountSummary:
    id: int
    username: str
    is_admin: bool
    is_active: bool
    created_on: dt.date
    # Set only while a lock is in force.
    locked_until: dt.datetime | None
    # Bumped by a reset or a deactivation: a session from an older epoch is over.
    session_epoch: int = 0


@dataclass(frozen=True)
class _Attempt:
    """An account as read at the start of a login, with this attempt already counted."""

    journalist_id: int
    passphrase_hash: str
    totp_secret: str
    last_totp_step: int
    is_active: bool
    failures: int
    # The lock this attempt has set in advance; it stands if the attempt fails.
    locked_until: dt.datetime | None


@dataclass(frozen=True)
class AccountService:
    """Create, check and manage newsroom accounts.

    Every change to an account is recorded in ``audit`` under the ``actor`` who asked for
    it, as :class:`~tipbox.key_registry.KeyService` does for keys, so no caller can forget.
    ``clock`` must return an aware datetime; ``hasher`` is Argon2id with argon2-cffi's
    defaults (RFC 9106, low memory) unless a test hands in cheap parameters.
    """

    sessions: sessionmaker[Session]
    sealer: TotpSealer
    audit: AuditLog
    clock: Callable[[], dt.datetime] = utcnow
    hasher: PasswordHasher = field(default_factory=PasswordHasher)
    slots: HashingSlots = UNLIMITED  # the app's shared bound on memory-hard hashing
    unknown_names: UnknownNames = field(default_factory=UnknownNames)

    def create(self, username: str, actor: str, *, admin: bool = False) -> NewCredentials:
        """Make an account with a fresh passphrase and TOTP secret, and return them."""
        check_username(username)
        creds = _new_credentials(username)
        row = Journalist(username=username, passphrase_hash=self._hash(creds.passphrase),
                         totp_secret=self.sealer.seal(username, creds.totp_secret),
                         is_admin=admin,
                         created_on=self._now().date())
        with _no_parameters_in_errors():
            try:
                with self.sessions.begin() as db:
                    # Names differing only in case would let one account pass for another.
                    clash = db.scalar(select(Journalist.username).where(
                        func.lower(Journalist.username) == username.lower()))
                    if clash is not None:
                        raise _taken(username, clash)
                    db.add(row)
            except IntegrityError:
                raise _taken(username, username) from None  # a concurrent create won
        log.info("account created: %s%s", username, " (admin)" if admin else "")
        self.audit.record(actor, "account created",
                          f"{username} ({'admin' if admin else 'journalist'})")
        return creds

    def authenticate(self, username: str, passphrase: str, code: str) -> int:
        """The journalist's id if the account is active and passphrase and TOTP code are
        right. Raises :class:`LoginFailed` (one message whatever was wrong) or
        :class:`LoginThrottled` (without checking anything) while the account is locked.
        """
        now = self._now()
        candidate = _canonical_passphrase(passphrase)
        # One hashing slot for the whole attempt, taken before anything is counted: when
        # the site is busy, every name gets the same answer and none is charged a failure.
        with self.slots.slot():
            return self._authenticate(username, candidate, code, now)

    def _authenticate(self, username: str, candidate: str, code: str,
                      now: dt.datetime) -> int:
        attempt = self._begin_attempt(username, now)
        if attempt is None:
            # Answered as a known account would be: counted before the slow check, locked
            # after the same failures, and as slow as one until then.
            wait = self.unknown_names.locked_for(username, now)
            if wait:
                raise LoginThrottled(wait)
            wait = self.unknown_names.fail(username, now)
            self._verify(self._dummy_hash, candidate)
            # The name is not logged: it may be a passphrase typed into the wrong field.
            log.info("login failed: unknown username")
            raise LoginThrottled(wait) if wait else LoginFailed()
        passphrase_ok = self._verify(attempt.passphrase_hash, candidate)
        totp_secret = self.sealer.unseal(username, attempt.totp_secret)
        step = None if totp_secret is None else _matching_step(totp_secret, code, now)
        if (attempt.is_active and passphrase_ok and step is not None
                and step > attempt.last_totp_step and self._finish(attempt, step, candidate)):
            log.info("login: %s", username)
            return attempt.journalist_id
        log.info("login failed: %s (%d in a row)", username, attempt.failures)
        if attempt.locked_until is not None:
            raise LoginThrottled(seconds_until(attempt.locked_until, now))
        raise LoginFailed()

    def reset_credentials(self, username: str, actor: str) -> NewCredentials:
        """Replace both the passphrase and the TOTP secret, and lift any login lock.
        The old passphrase and the old authenticator stop working at once."""
        creds = _new_credentials(username)
        with _no_parameters_in_errors(), self.sessions.begin() as db:
            row = _find(db, username)
            row.passphrase_hash = self._hash(creds.passphrase)
            row.totp_secret = self.sealer.seal(username, creds.totp_secret)
            row.last_totp_step = 0
            row.failed_logins = 0
            row.locked_until = None
            row.session_epoch += 1  # every session opened with the old ones ends
        log.info("credentials reset: %s", username)
        self.audit.record(actor, "account credentials reset", username)
        return creds

    def deactivate(self, username: str, actor: str) -> None:
        """Refuse every login to the account from now on (its data stays)."""
        with self.sessions.begin() as db:
            row = _find(db, username)
            row.is_active = False
            row.session_epoch += 1
        log.info("account deactivated: %s", username)
        self.audit.record(actor, "account deactivated", username)

    def reactivate(self, username: str, actor: str) -> None:
        """Let the account log in again with its current credentials; lifts a login lock."""
        with self.sessions.begin() as db:
            row = _find(db, username)
            row.is_active = True
            row.failed_logins = 0
            row.locked_until = None
        log.info("account reactivated: %s", username)
        self.audit.record(actor, "account reactivated", username)

    def seal_plaintext_secrets(self) -> int:
        """Seal TOTP secrets that an older tipbox stored in clear; how many there were."""
        sealed = 0
        with _no_parameters_in_errors(), self.sessions.begin() as db:
            rows = db.execute(select(Journalist.id, Journalist.username, Journalist.totp_secret)
                              .where(Journalist.totp_secret.not_like(SEALED + "%"))).all()
            for journalist_id, username, secret in rows:
                # Only if unchanged meanwhile: a reset that won the race keeps its secret.
                done = db.execute(
                    update(Journalist)
                    .where(Journalist.id == journalist_id, Journalist.totp_secret == secret)
                    .values(totp_secret=self.sealer.seal(username, secret))
                    .execution_options(synchronize_session=False))
                sealed += rows_matched(done)
        return sealed

    def unopenable_secrets(self) -> list[str]:
        """Usernames whose TOTP secret does not open with this sealer's key."""
        with self.sessions() as db:
            rows = db.execute(select(Journalist.username, Journalist.totp_secret)).all()
        return [name for name, stored in rows if self.sealer.unseal(name, stored) is None]

    def get(self, journalist_id: int) -> AccountSummary | None:
        with self.sessions() as db:
            row = db.get(Journalist, journalist_id)
            return None if row is None else _summary(row, self._now())

    def list(self) -> list[AccountSummary]:
        """Every account, by username."""
        now = self._now()
        with self.sessions() as db:
            rows = db.scalars(select(Journalist).order_by(Journalist.username))
            return [_summary(row, now) for row in rows]

    def _begin_attempt(self, username: str, now: dt.datetime) -> _Attempt | None:
        """Read the account and count this attempt as a failure before the slow checks
        (success undoes it). The count is written only if nobody changed it meanwhile, so
        parallel guesses cannot all slip in under the limit. None: no such account."""
        if not USERNAME_RULE.fullmatch(username):
            return None
        for _ in range(5):
            with self.sessions.begin() as db:
                row = db.scalar(select(Journalist).where(Journalist.username == username))
                if row is None:
                    return None
                wait = seconds_until(row.locked_until, now)
                if wait > 0:
                    raise LoginThrottled(wait)
                failures = row.failed_logins + 1
                attempt = _Attempt(row.id, row.passphrase_hash, row.totp_secret,
                                   row.last_totp_step, row.is_active, failures,
                                   now + lock_time(failures) if failures >= MAX_FAILURES
                                   else None)
                counted = db.execute(
                    update(Journalist)
                    .where(Journalist.id == row.id,
                           Journalist.failed_logins == row.failed_logins)
                    .values(failed_logins=failures, locked_until=attempt.locked_until)
                    .execution_options(synchronize_session=False))
                if rows_matched(counted) == 1:
                    return attempt
        raise LoginFailed()  # five lost races in a row: someone is hammering the account

    def _finish(self, attempt: _Attempt, step: int, candidate: str) -> bool:
        """Record a successful login. False if another login used this code first, or the
        credentials were reset or the account deactivated during the checks."""
        values: dict[str, Any] = {"last_totp_step": step, "failed_logins": 0,
                                  "locked_until": None}
        if self.hasher.check_needs_rehash(attempt.passphrase_hash):
            # In the log-in's slot.
            values["passphrase_hash"] = self.slots.run(self.hasher.hash, candidate)
        with _no_parameters_in_errors(), self.sessions.begin() as db:
            done = db.execute(
                update(Journalist)
                .where(Journalist.id == attempt.journalist_id,
                       Journalist.last_totp_step < step,
                       Journalist.passphrase_hash == attempt.passphrase_hash,
                       Journalist.totp_secret == attempt.totp_secret,
                       Journalist.is_active)
                .values(**values)
                .execution_options(synchronize_session=False))
            return rows_matched(done) == 1

    def _verify(self, passphrase_hash: str, candidate: str) -> bool:
        """Only within a log-in, which holds a hashing slot already."""
        try:
            return self.slots.run(self.hasher.verify, passphrase_hash, candidate)
        except (VerificationError, InvalidHashError):
            return False

    def _hash(self, passphrase: str) -> str:
        return self.slots.compute(self.hasher.hash, passphrase)

    @cached_property
    def _dummy_hash(self) -> str:
        """A hash no passphrase matches, made with this service's parameters, so that an
        unknown username costs the same verification as a known one."""
        # First made in a log-in's slot.
        return self.slots.run(self.hasher.hash, secrets.token_urlsafe(32))

    def _now(self) -> dt.datetime:
        return self.clock().astimezone(dt.UTC)


def check_username(username: str) -> None:
    if not USERNAME_RULE.fullmatch(username):
        raise InvalidUsername(N_("A username is 1 to 64 characters: letters, digits, '.', "
                                 "'_' and '-' only. Choose another."))


def _taken(username: str, existing: str) -> UsernameTaken:
    if existing == username:
        return UsernameTaken(N_("The username '%(name)s' is taken. Choose another."),
                             existing, name=username)
    return UsernameTaken(N_("The username '%(name)s' is taken by '%(holder)s' (names that "
                            "differ only in case count as the same). Choose another."),
                         existing, name=username, holder=existing)


def _find(db: Session, username: str) -> Journalist:
    row = db.scalar(select(Journalist).where(Journalist.username == username))
    if row is None:
        raise NoSuchAccount(N_("There is no account with that username."))
    return row


def _summary(row: Journalist, now: dt.datetime) -> AccountSummary:
    locked = row.locked_until if seconds_until(row.locked_until, now) > 0 else None
    return AccountSummary(row.id, row.username, row.is_admin, row.is_active, row.created_on,
                          None if locked is None else _utc(locked), row.session_epoch)


def _new_credentials(username: str) -> NewCredentials:
    words = eff_words()
    passphrase = " ".join(secrets.choice(words) for _ in range(PASSPHRASE_WORDS))
    return NewCredentials(username, passphrase, pyotp.random_base32())


def _canonical_passphrase(raw: str) -> str:
    """Case and spacing are forgiven: passphrases are generated lower-case words, one
    space apart, so this costs no strength and spares a retyped passphrase."""
    if len(raw) > MAX_PASSPHRASE_CHARS:
        return ""  # matches no hash, and is checked in the same time as any other
    return " ".join(raw.lower().split())


def _matching_step(totp_secret: str, raw_code: str, now: dt.datetime) -> int | None:
    """The time step whose code this is, within the allowed drift; None if none."""
    code = "".join(raw_code.split())
    if len(code) != 6 or not (code.isascii() and code.isdigit()):
        return None
    try:
        return pyotp.TOTP(totp_secret).verify_and_get_timecode(
            code, for_time=now, valid_window=TOTP_DRIFT_STEPS)
    except OTPVerificationError:
        return None


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; tipbox only ever writes UTC.
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


@contextmanager
def _no_parameters_in_errors() -> Iterator[None]:
    """SQLAlchemy's errors quote a statement's parameters, which here include a TOTP
    secret; pass such an error on without them."""
    try:
        yield
    except StatementError as exc:
        reason = type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__
        raise AccountError(N_("The database refused the change (%(reason)s), so nothing "
                              "was saved. Check that the database is reachable, then try "
                              "again."), reason=reason) from None
