"""Frozen, typed settings built from ``TIPBOX_*`` environment variables.

Everything that varies between a demo, a test run and a deployment lives here and is
handed down from the app factory; nothing reads the environment anywhere else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from tipbox.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


@dataclass(frozen=True)
class ScryptParams:
    """Cost of the codename hash. Production defaults cost ~64 MiB and ~0.2 s per hash."""

    n: int = 2**16
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        if self.n < 2 or self.n & (self.n - 1):
            raise ConfigError("TIPBOX_SCRYPT_N must be a power of two of at least 2")
        if self.r < 1 or self.p < 1:
            raise ConfigError("scrypt r and p must be at least 1")


@dataclass(frozen=True)
class TorSettings:
    """Where tor keeps the two onion services (docs/admin-guide.md, section 3).

    Set only where tipbox's onion services are configured: `tipbox doctor` then checks
    them. Defaults are Debian's."""

    tor_dir: Path = Path("/var/lib/tor")
    pid_file: Path = Path("/run/tor/tor.pid")
    torrc: Path = Path("/etc/tor/torrc")


@dataclass(frozen=True)
class Settings:
    """Everything tipbox needs to run. Build with :meth:`from_env` or directly in tests."""

    data_dir: Path
    keys_dir: Path = REPO_ROOT / "keys"
    database_url: str = ""
    max_message_chars: int = 100_000
    max_submission_bytes: int = 2 * GIB
    max_files: int = 1000
    session_idle_minutes: int = 120
    csrf_time_limit_seconds: int = 24 * 3600
    scrypt: ScryptParams = field(default_factory=ScryptParams)
    gpg_binary: str = "gpg"
    # An encryption whose gpg makes no progress this long is killed (tipbox.crypto.gpg_watchdog).
    gpg_stall_seconds: int = 120
    # Bytes asked of the request body per read while an upload streams through gpg.
    upload_chunk_bytes: int = 1 * MIB
    # `tipbox prune` deletes sources with no submission or reply for this many days.
    retention_days: int | None = None
    # New uploads are refused while the store's disk has less free space than this.
    min_free_bytes: int = 1 * GIB
    # The most one source may send in a day (UTC); None: no limit.
    source_daily_bytes: int | None = 10 * GIB
    # Serving (tipbox.serve; docs/admin-guide.md): a client must send a whole request head
    # within request_head_seconds, and a body (or take our answer) with no pause longer
    # than body_stall_seconds. A request holds one of serve_threads only while it is
    # answered or its body read; at most max_connections are open at once.
    request_head_seconds: int = 30
    body_stall_seconds: int = 300
    serve_threads: int = 256
    max_connections: int = 4096
    # The codename pages (new codename, log-in) answered at once by one worker; 0: one per
    # core but one. A flood of them then waits its turn without holding the interpreter, and every
    # other page is answered beside it (tipbox.web.source, docs/admin-guide.md).
    account_pages_at_once: int = 0
    # None: no onion services configured (TIPBOX_ONION_DIR unset); doctor skips tor.
    tor: TorSettings | None = None
    # The daily digest (`tipbox digest`, tipbox/digest.py): an SMTP server reached with
    # STARTTLS only. The password is read from a file at send time, so it is neither in the
    # environment nor in a unit file; smtp_ca_file trusts a server's own certificate.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password_file: Path | None = None
    smtp_ca_file: Path | None = None
    digest_from: str | None = None
    # Addresses that get the count in clear; and a folder of journalists' public keys,
    # each of whom gets it encrypted, at the e-mail address of the key's user id.
    digest_to: tuple[str, ...] = ()
    digest_keys_dir: Path | None = None
    # Flood defence (tipbox.flood; docs/admin-guide.md): proof of work is asked for once
    # more than pow_create_threshold codenames, or pow_submit_threshold submissions, were
    # made in about ten minutes. Its difficulty, in leading zero bits of SHA-256, starts
    # six bits under pow_max_bits and grows two bits each time the rate doubles. A
    # browser without JavaScript waits instead, as long as a browser that hashes
    # pow_hashes_per_second would work.
    pow_create_threshold: int = 20
    pow_submit_threshold: int = 60
    pow_max_bits: int = 20
    pow_hashes_per_second: int = 50_000
    # An upload sent in pieces (tipbox.intake.pieces) that gets no piece for this long is
    # removed, as it is when its session ends (log-out, expiry).
    upload_idle_minutes: int = 60

    def __post_init__(self) -> None:
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'tipbox.db'}")
        for name in ("max_message_chars", "max_submission_bytes", "max_files",
                     "session_idle_minutes", "csrf_time_limit_seconds", "upload_chunk_bytes",
                     "gpg_stall_seconds", "request_head_seconds", "body_stall_seconds",
                     "serve_threads", "max_connections", "pow_create_threshold",
                     "pow_submit_threshold", "pow_hashes_per_second",
                     "upload_idle_minutes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TIPBOX_{name.upper()} must be a positive number, "
                                  f"got {getattr(self, name)!r}")
        if self.account_pages_at_once < 0:
            raise ConfigError("TIPBOX_ACCOUNT_PAGES_AT_ONCE must be 0 (one per core) or more, "
                              f"got {self.account_pages_at_once!r}")
        if self.max_connections <= self.serve_threads:
            # gunicorn keeps connections alive only while it has more than threads.
            raise ConfigError("TIPBOX_MAX_CONNECTIONS must be larger than TIPBOX_SERVE_THREADS, "
                              f"got {self.max_connections!r} and {self.serve_threads!r}")
        if not 0 < self.smtp_port < 65536:
            raise ConfigError(f"TIPBOX_SMTP_PORT must be a port number (1 to 65535), got "
                              f"{self.smtp_port!r}")
        if not 1 <= self.pow_max_bits <= 32:
            # 32 bits is hours of work in a browser: a higher maximum would lock sources out.
            raise ConfigError("TIPBOX_POW_MAX_BITS must be between 1 and 32, got "
                              f"{self.pow_max_bits!r}")
        if self.min_free_bytes < 0:
            raise ConfigError(f"TIPBOX_MIN_FREE_BYTES must not be negative, got "
                              f"{self.min_free_bytes!r}")
        if self.source_daily_bytes is not None and self.source_daily_bytes < 1:
            raise ConfigError("TIPBOX_SOURCE_DAILY_BYTES must be a positive number of bytes, "
                              f"or 0 for no limit, got {self.source_daily_bytes!r}")
        if self.retention_days is not None and self.retention_days < 1:
            raise ConfigError("TIPBOX_RETENTION_DAYS must be a positive number of days (or "
                              f"unset, to keep sources until deleted), got {self.retention_days!r}")

    @property
    def store_dir(self) -> Path:
        """Where ciphertext files live, named by random ids."""
        return self.data_dir / "store"

    @property
    def gnupg_dir(self) -> Path:
        """Scratch GnuPG homes built from ``keys_dir``; public keys only."""
        return self.data_dir / "gnupg"

    @property
    def secrets_file(self) -> Path:
        return self.data_dir / "instance-secrets.json"

    @property
    def digest_state_file(self) -> Path:
        """The last day the digest has counted (tipbox.digest)."""
        return self.data_dir / "digest-state.json"

    @property
    def written_whole(self) -> tuple[Path, ...]:
        """The data folder's files written by tipbox.durable.write_whole, whose temporaries
        a killed writer leaves: `tipbox init` and each worker's start remove those,
        `tipbox doctor` reports them."""
        return (self.secrets_file, self.digest_state_file)

    @property
    def max_form_field_bytes(self) -> int:
        """Largest non-file form field kept in memory: the message, in UTF-8, plus slack."""
        return self.max_message_chars * 4 + 4 * KIB

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``TIPBOX_*`` variables; any malformed value stops start-up with its name."""
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("TIPBOX_DATA_DIR", str(REPO_ROOT / "data"))).resolve()
        kwargs: dict[str, object] = {"data_dir": data_dir}
        if "TIPBOX_KEYS_DIR" in env:
            kwargs["keys_dir"] = Path(env["TIPBOX_KEYS_DIR"]).resolve()
        if "TIPBOX_DATABASE_URL" in env:
            kwargs["database_url"] = env["TIPBOX_DATABASE_URL"]
        if "TIPBOX_GPG_BINARY" in env:
            kwargs["gpg_binary"] = env["TIPBOX_GPG_BINARY"]
        for var, name in {"TIPBOX_SMTP_HOST": "smtp_host",
                          "TIPBOX_SMTP_USERNAME": "smtp_username",
                          "TIPBOX_DIGEST_FROM": "digest_from"}.items():
            if env.get(var):
                kwargs[name] = env[var]
        for var, name in {"TIPBOX_SMTP_PASSWORD_FILE": "smtp_password_file",
                          "TIPBOX_SMTP_CA_FILE": "smtp_ca_file",
                          "TIPBOX_DIGEST_KEYS_DIR": "digest_keys_dir"}.items():
            if env.get(var):
                kwargs[name] = Path(env[var]).resolve()
        if "TIPBOX_DIGEST_TO" in env:
            kwargs["digest_to"] = tuple(a.strip() for a in env["TIPBOX_DIGEST_TO"].split(",")
                                        if a.strip())
        int_vars = {
            "TIPBOX_MAX_MESSAGE_CHARS": "max_message_chars",
            "TIPBOX_MAX_SUBMISSION_BYTES": "max_submission_bytes",
            "TIPBOX_MAX_FILES": "max_files",
            "TIPBOX_SESSION_IDLE_MINUTES": "session_idle_minutes",
            "TIPBOX_RETENTION_DAYS": "retention_days",
            "TIPBOX_GPG_STALL_SECONDS": "gpg_stall_seconds",
            "TIPBOX_MIN_FREE_BYTES": "min_free_bytes",
            "TIPBOX_REQUEST_HEAD_SECONDS": "request_head_seconds",
            "TIPBOX_BODY_STALL_SECONDS": "body_stall_seconds",
            "TIPBOX_SERVE_THREADS": "serve_threads",
            "TIPBOX_MAX_CONNECTIONS": "max_connections",
            "TIPBOX_ACCOUNT_PAGES_AT_ONCE": "account_pages_at_once",
            "TIPBOX_SMTP_PORT": "smtp_port",
            "TIPBOX_POW_CREATE_THRESHOLD": "pow_create_threshold",
            "TIPBOX_POW_SUBMIT_THRESHOLD": "pow_submit_threshold",
            "TIPBOX_POW_MAX_BITS": "pow_max_bits",
            "TIPBOX_POW_HASHES_PER_SECOND": "pow_hashes_per_second",
            "TIPBOX_UPLOAD_IDLE_MINUTES": "upload_idle_minutes",
        }
        for var, name in int_vars.items():
            if var in env:
                kwargs[name] = _parse_int(var, env[var])
        if "TIPBOX_SOURCE_DAILY_BYTES" in env:
            # 0 turns the quota off: a newsroom that expects very large leaks may want that.
            quota = _parse_int("TIPBOX_SOURCE_DAILY_BYTES", env["TIPBOX_SOURCE_DAILY_BYTES"])
            kwargs["source_daily_bytes"] = quota or None
        if "TIPBOX_ONION_DIR" in env:
            tor = TorSettings(tor_dir=Path(env["TIPBOX_ONION_DIR"]).resolve())
            if "TIPBOX_TOR_PID_FILE" in env:
                tor = replace(tor, pid_file=Path(env["TIPBOX_TOR_PID_FILE"]).resolve())
            if "TIPBOX_TORRC" in env:
                tor = replace(tor, torrc=Path(env["TIPBOX_TORRC"]).resolve())
            kwargs["tor"] = tor
        if "TIPBOX_SCRYPT_N" in env:
            kwargs["scrypt"] = ScryptParams(n=_parse_int("TIPBOX_SCRYPT_N", env["TIPBOX_SCRYPT_N"]))
        return cls(**kwargs)  # type: ignore[arg-type]


def _parse_int(var: str, raw: str) -> int:
    try:
        return int(raw.replace("_", ""))
    except ValueError:
        raise ConfigError(f"{var} must be a whole number, got {raw!r}") from None
