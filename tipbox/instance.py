"""Per-instance secrets, made once by ``tipbox init`` and kept in the data folder (0600)."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

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
        """Write atomically with mode 0600; an existing file is never overwritten."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        payload = json.dumps({name: getattr(self, name).hex() for name in FIELDS})
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())

    @classmethod
    def load(cls, path: Path) -> InstanceSecrets:
        raw = _read(path)
        missing = [name for name in FIELDS if name not in raw]
        if missing:
            raise ConfigError(f"{path} lacks {', '.join(missing)}, which this version of "
                              "tipbox needs: run `tipbox init` once to add it.")
        try:
            return cls(**{name: bytes.fromhex(raw[name]) for name in FIELDS})
        except (ValueError, TypeError) as exc:
            raise _damaged(path, exc) from None

    @classmethod
    def load_or_create(cls, path: Path) -> InstanceSecrets:
        """The instance's secrets; made if there are none, and completed if the file was
        written by an older tipbox (secrets it has are kept, never replaced)."""
        if not path.exists():
            cls.generate().save(path)
            return cls.load(path)
        raw = _read(path)
        missing = [name for name in FIELDS if name not in raw]
        if missing:
            raw.update({name: secrets.token_bytes(32).hex() for name in missing})
            temp = path.with_name(path.name + ".new")
            temp.unlink(missing_ok=True)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(raw))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temp, path)
        return cls.load(path)


FIELDS = ("flask_secret_key", "codename_pepper", "codename_mac_key", "totp_key")


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
