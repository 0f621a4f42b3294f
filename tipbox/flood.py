"""The flood defence: proof of work, or a wait, when codenames or submissions pour in.

A codename costs nothing to get and a submission little to send, so one client can make
thousands an hour (issue 8 measured 1.86 creations a second from 4 connections). Without
IP addresses there is no client to slow down, so the site slows down every request
instead, and only while it is flooded:

- **Quiet** (fewer than the threshold in about ten minutes): nothing is asked, and no
  round trip is added.
- **Flooded**: each creation and each submission must carry a *ticket* the site signed
  (HMAC with a key derived from the instance's secret: purpose, difficulty, when it
  becomes ready, when it expires, a random nonce). The ticket is redeemed either by
  *work* (a number ``s`` such that SHA-256 of ``ticket:s`` starts with ``bits`` zero
  bits, found by static/pow-worker.js) or, for a browser without JavaScript, by *time*
  (it becomes ready after a wait as long as the work would take; the wait page reloads
  itself). Checking costs one HMAC and one SHA-256.
- Each ticket is accepted once: its nonce goes into the ``spent_tickets`` table, whose
  primary key refuses it a second time, in every worker process and after a restart.
  Rows go once the ticket has expired.
- The rate is counted in the database (``flood_counts``), so every worker process sees
  the same figure: one row per purpose per ten-minute bucket, the last two kept. Each
  process adds its own counts, and reads everyone's, once a second at most, so a burst
  of requests costs one write a second, not one each. The estimate is the usual sliding
  window: the current bucket plus the previous one weighted by how much of it still lies
  in the last ten minutes.

The difficulty starts six bits under the maximum as the threshold is crossed and grows
two bits (four times the work) each time the rate doubles, up to TIPBOX_POW_MAX_BITS.

Plain Python, no Flask: tipbox.web.source turns it into pages.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import math
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tipbox import clock as clocks
from tipbox.config import Settings
from tipbox.errors import ProofRefused
from tipbox.models import FloodCount, SpentTicket

CREATE = "create"
SUBMIT = "submit"
PURPOSES = (CREATE, SUBMIT)

BUCKET_SECONDS = 600
# Each process adds its counts to the database, and reads everyone's, at most this often.
SHARE_SECONDS = 1.0
# Difficulty at the threshold: this many bits under the maximum, then two more bits per
# doubling of the rate, so the maximum is reached at eight times the threshold.
START_BELOW_MAX = 6
BITS_PER_DOUBLING = 2
# How long a ticket may be used: a codename page is read in minutes; the submission form
# may be written for an hour or more before it is sent (the check is made as the upload
# starts, however long it then takes).
TICKET_SECONDS: Mapping[str, int] = MappingProxyType({CREATE: 1800, SUBMIT: 4 * 3600})
_MAX_SOLUTION_DIGITS = 16
_TOKEN_VERSION = "1"  # noqa: S105 - a format version, not a secret


@dataclass(frozen=True)
class FloodPolicy:
    """When proof of work starts and how hard it gets: from Settings."""

    thresholds: Mapping[str, int]
    max_bits: int
    hashes_per_second: int

    @classmethod
    def from_settings(cls, settings: Settings) -> FloodPolicy:
        return cls(MappingProxyType({CREATE: settings.pow_create_threshold,
                                     SUBMIT: settings.pow_submit_threshold}),
                   settings.pow_max_bits, settings.pow_hashes_per_second)

    def bits_for(self, purpose: str, recent: float) -> int:
        """Leading zero bits asked for, given ``recent`` actions in about ten minutes."""
        threshold = self.thresholds[purpose]
        if recent <= threshold:
            return 0
        doublings = int(math.log2(recent / threshold))
        start = max(1, self.max_bits - START_BELOW_MAX)
        return min(self.max_bits, start + BITS_PER_DOUBLING * doublings)

    def wait_seconds(self, bits: int) -> int:
        """What a browser without JavaScript waits instead: as long as finding the answer
        takes on average at hashes_per_second, and at least a second."""
        return max(1, math.ceil((1 << bits) / self.hashes_per_second))


@dataclass(frozen=True)
class Ticket:
    purpose: str
    bits: int
    ready_at: int  # seconds since the epoch: from then on, it passes without work
    expires_at: int
    nonce: str  # 32 hex digits
    token: str  # what the browser carries

    def ready(self, now: float) -> bool:
        return now >= self.ready_at

    def seconds_left(self, now: float) -> int:
        return max(0, math.ceil(self.ready_at - now))


class TicketSigner:
    """Makes and reads tickets; the key never leaves the server."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("a ticket key needs at least 32 bytes")
        self._key = key

    @classmethod
    def from_instance_key(cls, instance_key: bytes) -> TicketSigner:
        """A key of its own, derived from an instance secret, so that a ticket can never
        pass for anything else the instance signs."""
        return cls(hmac.new(instance_key, b"tipbox flood tickets v1", hashlib.sha256).digest())

    def issue(self, purpose: str, bits: int, wait: int, now: float) -> Ticket:
        issued = int(now)
        fields = (_TOKEN_VERSION, purpose, str(bits), str(issued + wait),
                  str(issued + TICKET_SECONDS[purpose]), secrets.token_hex(16))
        body = ".".join(fields)
        return Ticket(purpose, bits, issued + wait, issued + TICKET_SECONDS[purpose],
                      fields[5], f"{body}.{self._mac(body)}")

    def read(self, token: str, purpose: str) -> Ticket:
        """The ticket ``token`` stands for, or ProofRefused: forged, or for another page."""
        body, _, mac = token.rpartition(".")
        if len(token) > 200 or not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            raise ProofRefused.forged()
        version, ticket_purpose, bits, ready_at, expires_at, nonce = body.split(".")
        if version != _TOKEN_VERSION or ticket_purpose != purpose:
            raise ProofRefused.forged()  # signed by us, but for the other page
        return Ticket(purpose, int(bits), int(ready_at), int(expires_at), nonce, token)

    def _mac(self, body: str) -> str:
        digest = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()


def solves(ticket: Ticket, solution: str) -> bool:
    """Whether SHA-256 of ``token:solution`` starts with ``ticket.bits`` zero bits."""
    if not solution.isdigit() or not solution.isascii() or \
            len(solution) > _MAX_SOLUTION_DIGITS:
        return False
    digest = hashlib.sha256(f"{ticket.token}:{solution}".encode()).digest()
    return int.from_bytes(digest, "big") >> (256 - ticket.bits) == 0


@dataclass(frozen=True)
class Gate:
    """What a page asks of the browser now: nothing (``ticket`` None), a wait of ``wait``
    seconds or work on ``ticket`` (``passed`` False), or nothing more because ``ticket``
    (with ``solution`` when it was worked out) will pass (``passed`` True)."""

    ticket: Ticket | None
    solution: str = ""
    passed: bool = True
    wait: int = 0


class FloodGuard:
    """Counts what is made, says how hard it is to make more, and checks tickets."""

    def __init__(self, sessions: sessionmaker[Session], signer: TicketSigner,
                 policy: FloodPolicy, clock: Callable[[], float] = clocks.seconds) -> None:
        self._sessions = sessions
        self._signer = signer
        self.policy = policy
        self._clock = clock
        self._lock = threading.Lock()
        # Counts this process has admitted but not yet written, by (purpose, bucket), and
        # everyone's counts as last read from the database.
        self._pending: dict[tuple[str, int], int] = {}
        self._shared: dict[str, dict[int, int]] = {}
        self._next_share = float("-inf")

    def recent(self, purpose: str) -> float:
        """About how many ``purpose`` actions were admitted in the last ten minutes, by
        every worker process (as of at most SHARE_SECONDS ago) and by this one."""
        now = self._clock()
        self._share(now)
        bucket = int(now // BUCKET_SECONDS)
        with self._lock:
            counts = dict(self._shared.get(purpose, {}))
            for (counted, at), n in self._pending.items():
                if counted == purpose:
                    counts[at] = counts.get(at, 0) + n
        elapsed = (now % BUCKET_SECONDS) / BUCKET_SECONDS
        return counts.get(bucket, 0) + counts.get(bucket - 1, 0) * (1 - elapsed)

    def difficulty(self, purpose: str) -> int:
        return self.policy.bits_for(purpose, self.recent(purpose))

    def new_ticket(self, purpose: str, bits: int | None = None) -> Ticket | None:
        """A fresh ticket at today's difficulty; None while the site is quiet."""
        bits = self.difficulty(purpose) if bits is None else bits
        if bits == 0:
            return None
        return self._signer.issue(purpose, bits, self.policy.wait_seconds(bits), self._clock())

    def gate(self, purpose: str, token: str, solution: str) -> Gate:
        """What the page for ``purpose`` asks of a browser that brought ``token`` and
        ``solution`` (either may be empty). Nothing is spent here: only :meth:`admit`
        spends. A ticket that will not pass (forged, expired, used) is replaced by a
        fresh one rather than refused, so that a page reached from an old link starts
        the wait again instead of showing an error."""
        bits = self.difficulty(purpose)
        if bits == 0:
            return Gate(None)
        if token:
            try:
                ticket = self._usable(purpose, token)
            except ProofRefused:
                pass
            else:
                if solution and solves(ticket, solution):
                    return Gate(ticket, solution)
                now = self._clock()
                return Gate(ticket, passed=ticket.ready(now), wait=ticket.seconds_left(now))
        fresh = self.new_ticket(purpose, bits)
        assert fresh is not None  # noqa: S101 - bits > 0
        return Gate(fresh, passed=False, wait=fresh.seconds_left(self._clock()))

    def admit(self, purpose: str, token: str, solution: str) -> None:
        """Let one ``purpose`` action through and count it, or raise ProofRefused.

        While the site is quiet nothing is asked (a ticket that comes along is ignored).
        Under flood the ticket must be genuine, for this purpose, unexpired, unused, and
        worked out or ready; it is then spent. The difficulty a ticket was issued with is
        the one it is held to: the rate may have risen since, but the browser did what
        it was asked."""
        now = self._clock()
        ticket: Ticket | None = None
        if self.difficulty(purpose) > 0:
            if not token:
                raise ProofRefused.missing()
            ticket = self._usable(purpose, token)
            if not (solution and solves(ticket, solution)):
                if solution:
                    raise ProofRefused.unsolved()
                if not ticket.ready(now):
                    raise ProofRefused.early(ticket.seconds_left(now))
        if ticket is not None:
            try:
                with self._sessions.begin() as db:
                    self._spend(db, ticket, now)
            except IntegrityError:
                raise ProofRefused.reused() from None
        with self._lock:
            key = (purpose, int(now // BUCKET_SECONDS))
            self._pending[key] = self._pending.get(key, 0) + 1
        self._share(now)

    def _share(self, now: float) -> None:
        """At most once every SHARE_SECONDS: add this process's counts to the database's
        and read everyone's back. Writing each count as it happens cost a committed
        transaction per request: a burst of 100 clients then kept the database's
        connections busy for seconds, and other visitors' pages waited for one."""
        with self._lock:
            if now < self._next_share:
                return
            self._next_share = now + SHARE_SECONDS
            pending, self._pending = self._pending, {}
        try:
            bucket = int(now // BUCKET_SECONDS)
            with self._sessions.begin() as db:
                if pending:
                    self._add_counts(db, pending, bucket)
                rows = list(db.execute(select(FloodCount.purpose, FloodCount.bucket,
                                              FloodCount.count)
                                       .where(FloodCount.bucket >= bucket - 1)))
        except Exception:
            with self._lock:  # counted at the next turn instead
                for key, n in pending.items():
                    self._pending[key] = self._pending.get(key, 0) + n
            raise
        shared: dict[str, dict[int, int]] = {}
        for purpose, at, count in rows:
            shared.setdefault(purpose, {})[at] = count
        with self._lock:
            self._shared = shared

    def _usable(self, purpose: str, token: str) -> Ticket:
        """The ticket, if genuine, for ``purpose``, unexpired and not spent."""
        try:
            ticket = self._signer.read(token, purpose)
        except ValueError:  # a token of the right shape but for another version
            raise ProofRefused.forged() from None
        if self._clock() >= ticket.expires_at:
            raise ProofRefused.expired()
        with self._sessions() as db:
            if db.get(SpentTicket, ticket.nonce) is not None:
                raise ProofRefused.reused()
        return ticket

    @staticmethod
    def _spend(db: Session, ticket: Ticket, now: float) -> None:
        # Expired tickets cannot pass anyway, so their rows go: the table holds at most
        # the tickets of the last few hours, and only while the site is flooded. The
        # expiry is rounded up to ten minutes, as sessions' are: a row says little about
        # when the ticket was used.
        db.execute(delete(SpentTicket).where(SpentTicket.expires_at < _moment(now)))
        coarse = ticket.expires_at + (-ticket.expires_at % BUCKET_SECONDS)
        db.add(SpentTicket(nonce=ticket.nonce, expires_at=_moment(coarse)))
        db.flush()  # a nonce already there fails here, inside the transaction

    @staticmethod
    def _add_counts(db: Session, pending: Mapping[tuple[str, int], int], bucket: int) -> None:
        db.execute(delete(FloodCount).where(FloodCount.bucket < bucket - 1))
        # One statement per count, so two workers adding at once cannot lose any.
        upsert = postgresql.insert if db.get_bind().dialect.name == "postgresql" \
            else sqlite.insert
        for (purpose, at), n in sorted(pending.items()):
            if at < bucket - 1:
                continue  # too old to matter any more
            db.execute(upsert(FloodCount).values(purpose=purpose, bucket=at, count=n)
                       .on_conflict_do_update(index_elements=["purpose", "bucket"],
                                              set_={"count": FloodCount.count + n}))


def _moment(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
