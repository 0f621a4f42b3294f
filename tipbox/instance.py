"""Per-instance secrets, made once by ``tipbox init`` and kept in the data folder (0600)."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tipbox.durable import write_whole
from tipbox.errors import ConfigError


@dataclass(frozen=True)
class InstanceSecrets:
    # repr=False: these never reach a log or a traceback.
    flask_secret_key: bytes = field(repr=False)
    codename_pepper: bytes = field(repr=False)
    codename_mac_key: bytes = field(repr=False)
    # Seals the journalists' TOTP secrets in the database (tipbox.accounts.TotpSealer).
    totp_key: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> InstanceSecrets:
        return cls(**{name: secrets.token_bytes(32) for name in FIELDS})

    def save(self, path: Path) -> None:
        """Write atomically with mode 0600; an existing file is never overwritten
        (FileExistsError).

        Written whole under a temporary name, then linked to ``path``: a full disk, a kill
        or a power cut while writing must not leave an empty ``path``, which every later
        start would call damaged and ask to restore from a backup that cannot exist yet.
        """
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        payload = json.dumps({name: getattr(self, name).hex() for name in FIELDS})
        write_whole(path, payload, replace=False)

    @classmethod
    def load(cls, path: Path) -> InstanceSecrets:
        raw = _read(path)
        missing = [name for name in FIELDS if name not in raw]
        if missing:
            raise ConfigError(f"{path} lacks {', '.join(missing)}, which this version of "
                              "tipbox needs: run `tipbox init` once to add it.")
        try:
            values = {name: bytes.fromhex(raw[name]) for name in FIELDS}
        except (ValueError, TypeError) as exc:
            raise _damaged(path, exc) from None
        if any(len(value) != KEY_BYTES for value in values.values()):
            raise _damaged(path, ValueError())
        return cls(**values)

    @staticmethod
    def missing(path: Path) -> list[str]:
        """The secrets an existing file lacks (written by an older tipbox)."""
        return [name for name in FIELDS if name not in _read(path)]

    @classmethod
    def load_or_create(cls, path: Path) -> InstanceSecrets:
        """The instance's secrets; made if there are none, and completed if the file was
        written by an older tipbox (secrets it has are kept, never replaced)."""
        if not path.exists():
            try:
                cls.generate().save(path)
            except FileExistsError:
                pass  # another `tipbox init` wrote it at the same instant: theirs is kept
            else:
                return cls.load(path)
        # Under a lock, and read again under it: two `tipbox init` at once must not
        # each add a different key.
        with _locked(path):
            raw = _read(path)
            missing = [name for name in FIELDS if name not in raw]
            if missing:
                raw.update({name: secrets.token_bytes(KEY_BYTES).hex() for name in missing})
                write_whole(path, json.dumps(raw))  # the old file or the new, never half
        return cls.load(path)


FIELDS = ("flask_secret_key", "codename_pepper", "codename_mac_key", "totp_key")
KEY_BYTES = 32


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _read(path: Path) -> dict[str, str]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{path} does not exist. Run `tipbox init` once to create the data folder."
        ) from None
    except ValueError as exc:
        raise _damaged(path, exc) from None
    if not isinstance(raw, dict):
        raise _damaged(path, TypeError())
    return raw


def _damaged(path: Path, exc: Exception) -> ConfigError:
    return ConfigError(f"{path} is damaged ({exc.__class__.__name__}). Restore it from "
                       "backup: without it no source can log in again.")
