"""The newsroom key lifecycle: pending -> active -> retired, with proof of possession.

A key is only ever encrypted to once someone has shown, by decrypting a challenge on the
offline machine, that its secret half exists. There is never a moment with no active key
while submissions are accepted: retiring the last one is refused.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tipbox.audit import AuditLog
from tipbox.clock import today
from tipbox.config import Settings
from tipbox.crypto.gpg import GnuPG, KeyInfo
from tipbox.crypto.gpg_watchdog import DEFAULT_STALL_SECONDS
from tipbox.crypto.keyring import Keyring, build_home, keyring_for, secret_material_problem
from tipbox.crypto.packets import (
    PacketError,
    asks_for_ocb,
    has_secret_material,
    weak_binding_hashes,
)
from tipbox.errors import KeyOperationRefused
from tipbox.i18n import N_
from tipbox.models import Item, KeyState, NewsroomKey, Reply

EXPIRY_WARNING_DAYS = 30
MAX_KEY_BYTES = 1024 * 1024

_ALGORITHMS = {1: "RSA", 2: "RSA", 3: "RSA", 16: "ElGamal", 17: "DSA", 18: "ECDH",
               19: "ECDSA", 20: "ElGamal", 22: "EdDSA", 25: "X25519", 26: "X448",
               27: "Ed25519", 28: "Ed448"}
_RSA = {1, 2, 3}
_REFUSED_ALGORITHMS = {16: "ElGamal", 17: "DSA", 20: "ElGamal"}


@dataclass(frozen=True)
class KeyRecord:
    fingerprint: str
    state: KeyState
    algorithm: str
    uids: list[str]
    created_on: dt.date
    expires_on: dt.date | None
    added_on: dt.date
    activated_on: dt.date | None
    retired_on: dt.date | None
    items: int
    pending_challenge: bool


@dataclass(frozen=True)
class Inspected:
    info: KeyInfo
    armored: str
    algorithm: str


def _day(ts: int | None) -> dt.date | None:
    return dt.datetime.fromtimestamp(ts, dt.UTC).date() if ts else None


def _normalise_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def _code_hash(code: str) -> str:
    return hashlib.sha256(_normalise_code(code).encode()).hexdigest()


@dataclass(frozen=True)
class KeyService:
    sessions: sessionmaker[Session]
    gnupg_root: Path
    audit: AuditLog
    gpg_binary: str = "gpg"
    clock: Callable[[], dt.date] = today

    # --- looking --------------------------------------------------------------------

    def inspect(self, data: bytes) -> Inspected:
        """Check a candidate public key; :class:`KeyOperationRefused` says exactly why not."""
        if len(data) > MAX_KEY_BYTES:
            raise KeyOperationRefused(N_(
                "That file is larger than any public key (over 1 MiB). Export "
                "just the newsroom public key: gpg --export --armor FPR > key.asc"))
        # Judged on the bytes, before gpg sees them, and never written anywhere.
        if has_secret_material(data):
            raise KeyOperationRefused(N_(
                "That file holds SECRET key material, so it was refused and not "
                "stored. The secret key must stay on the offline machine. "
                "Export only the public half: gpg --export --armor FPR > key.asc"))
        scanner = GnuPG(self.gnupg_root / "scan", self.gpg_binary, agent=False)
        infos = scanner.scan_key_data(data)
        if not infos:
            raise KeyOperationRefused(N_(
                "No OpenPGP public key was found in that file. Export one with: "
                "gpg --export --armor FPR > key.asc"))
        if len(infos) > 1:
            raise KeyOperationRefused(N_(
                "That file holds %(count)s keys; add them one at a time (one "
                "key per file)."), count=len(infos))
        info = infos[0]
        if info.secret:  # gpg's own view, behind the packet check above
            raise KeyOperationRefused(N_(
                "That file holds SECRET key material, so it was refused and not "
                "stored. Export only the public half: gpg --export --armor FPR"))
        self._check(info, time.time())
        try:
            weak = weak_binding_hashes(data)
            ocb = asks_for_ocb(data)
        except PacketError:
            raise KeyOperationRefused(N_(
                "That key file is damaged: its packets could not be read.")) from None
        if ocb:
            raise KeyOperationRefused(N_(
                "Key %(fpr)s asks for OCB (AEAD) encryption, as keys made by "
                "GnuPG 2.3 or later can. A server with such a GnuPG would then store items "
                "that Sequoia's sq and GnuPG before 2.2.21 cannot read. On the offline "
                "computer run `gpg --homedir ~/newsroom-gnupg --edit-key %(fpr)s`; "
                "at the gpg> prompt type `setpref AES256 AES192 AES SHA512 SHA384 SHA256 ZLIB "
                "BZIP2 ZIP Uncompressed`, then `save`. Export the public key again and add "
                "that file."), fpr=info.fingerprint)
        if weak:
            raise KeyOperationRefused(N_(
                "Key %(fpr)s binds its parts with %(hashes)s "
                "signatures, which can be forged. Re-sign it with a current "
                "GnuPG (gpg --quick-set-expire FPR 2y refreshes the self-"
                "signatures) and export it again."), fpr=info.fingerprint, hashes=", ".join(weak))
        armored = str(self._home_for([data], [info]).export_public(info.fingerprint))
        return Inspected(info, armored, _describe(info))

    @staticmethod
    def _check(info: KeyInfo, now: float) -> None:
        fpr = info.fingerprint
        if info.revoked:
            raise KeyOperationRefused(N_("Key %(fpr)s is revoked. Use the newsroom's current key."),
                                      fpr=fpr)
        if info.expired_at(now):
            raise KeyOperationRefused(N_(
                "Key %(fpr)s has expired. Extend it on the offline machine "
                "(gpg --quick-set-expire FPR 2y, and for subkeys FPR 2y '*'), "
                "then export it and run `tipbox keys add` with it again."), fpr=fpr)
        if not info.can_encrypt or not info.usable_at(now):
            raise KeyOperationRefused(N_(
                "Key %(fpr)s has no valid encryption-capable key or subkey, so "
                "nothing could be encrypted to it. Add an encryption subkey "
                "(gpg --quick-add-key FPR cv25519 encr 2y)."), fpr=fpr)
        algorithms = [(info.algorithm, info.length), *info.encryption_algorithms]
        for algo, bits in algorithms:
            if algo in _REFUSED_ALGORITHMS:
                raise KeyOperationRefused(N_(
                    "Key %(fpr)s uses %(algorithm)s, which is obsolete. Make a new "
                    "Ed25519/Cv25519 key (tipbox-open keys generate)."),
                    fpr=fpr, algorithm=_REFUSED_ALGORITHMS[algo])
            if algo in _RSA and bits < 3072:
                raise KeyOperationRefused(N_(
                    "Key %(fpr)s is RSA-%(bits)s; at least RSA-3072 is needed. "
                    "Make a new key (tipbox-open keys generate)."), fpr=fpr, bits=bits)

    def records(self) -> list[KeyRecord]:
        with self.sessions() as db:
            rows = db.scalars(select(NewsroomKey).order_by(NewsroomKey.added_on,
                                                           NewsroomKey.fingerprint)).all()
            return [KeyRecord(
                r.fingerprint, r.state, r.algorithm, r.uids.split("\n"), r.key_created_on,
                r.expires_on, r.added_on, r.activated_on, r.retired_on,
                (db.scalar(select(func.count(Item.id))
                           .where(Item.key_fingerprints.contains(r.fingerprint))) or 0)
                + (db.scalar(select(func.count(Reply.id))
                             .where(Reply.key_fingerprints.contains(r.fingerprint))) or 0),
                r.challenge_hash is not None and r.state is KeyState.PENDING,
            ) for r in rows]

    def public_key(self, fingerprint: str) -> str | None:
        with self.sessions() as db:
            row = db.get(NewsroomKey, fingerprint.upper())
            return row.public_key if row else None

    def expiry_warnings(self, today_: dt.date | None = None) -> list[str]:
        """What `tipbox doctor` and the admin pages warn about."""
        day = today_ or self.clock()
        active = [k for k in self.records() if k.state is KeyState.ACTIVE]
        if not active:
            return ["No newsroom key is active: the source interface is not accepting "
                    "submissions. Add, prove and activate a key (docs/admin-guide.md)."]
        warnings = []
        if all(k.expires_on is not None for k in active):
            last = max(k.expires_on for k in active if k.expires_on is not None)
            if last <= day:
                warnings.append("Every active newsroom key has expired: submissions are "
                                "off. Rotate to a new key now (docs/admin-guide.md).")
            elif (last - day).days <= EXPIRY_WARNING_DAYS:
                warnings.append(f"The last active newsroom key expires on {last.isoformat()} "
                                f"({(last - day).days} days). Extend it or rotate to a new "
                                "key before then (docs/admin-guide.md).")
        return warnings

    # --- changing -------------------------------------------------------------------

    def add(self, data: bytes, actor: str) -> Inspected:
        """Import a public key as ``pending``; for a key already known (not retired),
        refresh its public key, for instance after its expiry was extended offline."""
        found = self.inspect(data)
        info = found.info
        expires_on = _day(_earliest(info.expires, info.encryption_expires))
        with self.sessions.begin() as db:
            known = db.get(NewsroomKey, info.fingerprint)
            if known is not None:
                if known.state is KeyState.RETIRED:
                    raise KeyOperationRefused(N_(
                        "Key %(fpr)s is retired; a retired key is "
                        "never used again. Add a new key instead."), fpr=info.fingerprint)
                known.public_key = found.armored
                known.uids = "\n".join(info.uids)
                known.expires_on = expires_on
                state = known.state.value
        if known is not None:
            self.audit.record(actor, "key updated",
                              f"{info.fingerprint} ({state}), expires {expires_on or 'never'}")
            return found
        with self.sessions.begin() as db:
            db.add(NewsroomKey(
                fingerprint=info.fingerprint, public_key=found.armored,
                state=KeyState.PENDING, algorithm=found.algorithm, uids="\n".join(info.uids),
                key_created_on=_day(info.created) or self.clock(),
                expires_on=expires_on,
                added_on=self.clock()))
        self.audit.record(actor, "key added", f"{info.fingerprint} ({found.algorithm}) pending")
        return found

    def challenge(self, fingerprint: str, actor: str) -> bytes:
        """A small OpenPGP message to the pending key holding a random code."""
        code = _new_code()
        with self.sessions.begin() as db:
            row = self._get(db, fingerprint)
            if row.state is not KeyState.PENDING:
                raise KeyOperationRefused(N_(
                    "Key %(fpr)s is %(state)s; only a pending "
                    "key needs a challenge."), fpr=row.fingerprint, state=row.state.value)
            row.challenge_hash = _code_hash(code)
            public = row.public_key.encode()
            fpr = row.fingerprint
        info = GnuPG(self.gnupg_root / "scan", self.gpg_binary, agent=False) \
            .scan_key_data(public)
        home = self._home_for([public], info)
        with tempfile.TemporaryDirectory(dir=self.gnupg_root) as tmp:
            out = Path(tmp) / "challenge.gpg"
            # A fixed shape that `tipbox-open keys prove` checks before it shows the code.
            home.encrypt_bytes(f"tipbox-challenge v1 {fpr} {code}\n".encode(), [fpr], out,
                               filename="challenge.txt")
            message = out.read_bytes()
        self.audit.record(actor, "key challenge issued", fpr)
        return message

    def activate(self, fingerprint: str, proof: str, actor: str) -> None:
        with self.sessions.begin() as db:
            row = self._get_pending(db, fingerprint)
            if row.challenge_hash is None:
                raise KeyOperationRefused(N_(
                    "No challenge was issued for this key yet: run `tipbox keys "
                    "challenge %(fpr)s` first."), fpr=row.fingerprint)
            ok = hmac.compare_digest(row.challenge_hash, _code_hash(proof))
            if ok:
                self._make_active(row)
        self.audit.record(actor, "key activated" if ok else "key activation refused",
                          row.fingerprint)
        if not ok:
            raise KeyOperationRefused(N_(
                "That code does not match the last challenge, so the key stays "
                "pending. Decrypt the newest challenge file on the offline "
                "machine (tipbox-open keys prove FILE) and copy the code exactly."))

    def activate_without_proof(self, fingerprint: str, actor: str, reason: str) -> None:
        """For demonstrations and tests only: the audit log says so."""
        with self.sessions.begin() as db:
            row = self._get_pending(db, fingerprint)
            self._make_active(row)
        self.audit.record(actor, "key activated WITHOUT proof of possession",
                          f"{row.fingerprint}: {reason}")

    def retire(self, fingerprint: str, actor: str) -> None:
        with self.sessions.begin() as db:
            row = self._get(db, fingerprint)
            if row.state is KeyState.RETIRED:
                raise KeyOperationRefused(N_("Key %(fpr)s is retired already."),
                                          fpr=row.fingerprint)
            if row.state is KeyState.ACTIVE:
                # Locked rows: two retirements at once cannot both see "one other left".
                others = db.scalars(select(NewsroomKey).where(
                    NewsroomKey.state == KeyState.ACTIVE,
                    NewsroomKey.fingerprint != row.fingerprint).with_for_update()).all()
                usable = [k for k in others if k.expires_on is None
                          or k.expires_on > self.clock()]
                if not usable:
                    raise KeyOperationRefused(N_(
                        "Key %(fpr)s is the only usable active key: "
                        "retiring it would stop all submissions. Activate its "
                        "successor first, then retire this one."), fpr=row.fingerprint)
            row.state = KeyState.RETIRED
            row.retired_on = self.clock()
            row.challenge_hash = None
        self.audit.record(actor, "key retired", row.fingerprint)

    # --- internals ------------------------------------------------------------------

    def _make_active(self, row: NewsroomKey) -> None:
        row.state = KeyState.ACTIVE
        row.activated_on = self.clock()
        row.challenge_hash = None

    @classmethod
    def _get_pending(cls, db: Session, fingerprint: str) -> NewsroomKey:
        row = cls._get(db, fingerprint)
        if row.state is not KeyState.PENDING:
            raise KeyOperationRefused(N_("Key %(fpr)s is already %(state)s."),
                                      fpr=row.fingerprint, state=row.state.value)
        return row

    @staticmethod
    def _get(db: Session, fingerprint: str) -> NewsroomKey:
        fpr = fingerprint.replace(" ", "").upper()
        row = db.get(NewsroomKey, fpr)
        if row is None:
            raise KeyOperationRefused(N_("No key %(fpr)s is known; see `tipbox keys list`."),
                                      fpr=fingerprint)
        return row

    def _home_for(self, blobs: list[bytes], infos: list[KeyInfo]) -> GnuPG:
        return build_home(blobs, infos, self.gnupg_root, self.gpg_binary)


def _earliest(*stamps: int | None) -> int | None:
    values = [s for s in stamps if s]
    return min(values) if values else None


def _describe(info: KeyInfo) -> str:
    name = _ALGORITHMS.get(info.algorithm, f"algo {info.algorithm}")
    if info.algorithm in _RSA:
        name += f"-{info.length}"
    subs = "+".join(sorted({_ALGORITHMS.get(a, str(a)) + (f"-{b}" if a in _RSA else "")
                            for a, b in info.encryption_algorithms}))
    return f"{name}/{subs}" if subs else name


def _new_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(10)).decode()
    return "-".join(raw[i:i + 4] for i in range(0, 16, 4))


class KeyringProvider:
    """The keyring to encrypt with right now: the registry's active keys.

    Looked up on each request (one small query), rebuilt only when the active set
    changes, so an activation or retirement takes effect without a restart.
    """

    def __init__(self, sessions: sessionmaker[Session], gnupg_root: Path,
                 gpg_binary: str = "gpg", keys_dir: Path | None = None,
                 stall_seconds: float = DEFAULT_STALL_SECONDS) -> None:
        self._sessions = sessions
        self._root = gnupg_root
        self._binary = gpg_binary
        self._stall_seconds = stall_seconds
        # A secret key lying in the keys folder stops everything until it is removed.
        self._folder_problem = secret_material_problem(keys_dir, gnupg_root, gpg_binary) \
            if keys_dir else None
        self._lock = threading.Lock()
        self._cached: tuple[tuple[str, ...], Keyring] | None = None

    @classmethod
    def from_settings(cls, sessions: sessionmaker[Session], settings: Settings
                      ) -> KeyringProvider:
        """The provider an app uses: the configured gpg, keys folder and stall limit."""
        return cls(sessions, settings.gnupg_dir, settings.gpg_binary, settings.keys_dir,
                   settings.gpg_stall_seconds)

    def current(self) -> Keyring:
        with self._sessions() as db:
            rows = db.execute(select(NewsroomKey.fingerprint, NewsroomKey.public_key)
                              .where(NewsroomKey.state == KeyState.ACTIVE)
                              .order_by(NewsroomKey.fingerprint)).all()
        signature = tuple(r[0] for r in rows)
        with self._lock:
            if self._cached is None or self._cached[0] != signature:
                ring = keyring_for([r[1].encode() for r in rows], self._root, self._binary,
                                   problem=self._folder_problem,
                                   stall_seconds=self._stall_seconds)
                self._cached = (signature, ring)
            return self._cached[1]


class StaticKeyring:
    """A fixed keyring, for tests that hand one in."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    def current(self) -> Keyring:
        return self._keyring
