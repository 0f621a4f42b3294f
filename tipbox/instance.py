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

    @classmethod
    def generate(cls) -> InstanceSecrets:
        return cls(secrets.token_bytes(32), secrets.token_bytes(32), secrets.token_bytes(32))

    def save(self, path: Path) -> None:
        """Write atomically with mode 0600; an existing file is never overwritten."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        payload = json.dumps({
            "flask_secret_key": self.flask_secret_key.hex(),
            "codename_pepper": self.codename_pepper.hex(),
            "codename_mac_key": self.codename_mac_key.hex(),
        })
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())

    @classmethod
    def load(cls, path: Path) -> InstanceSecrets:
        try:
            raw = json.loads(path.read_text())
            return cls(**{k: bytes.fromhex(raw[k]) for k in
                          ("flask_secret_key", "codename_pepper", "codename_mac_key")})
        except FileNotFoundError:
            raise ConfigError(
                f"{path} does not exist. Run `tipbox init` once to create the data folder."
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path} is damaged ({exc.__class__.__name__}). Restore it from "
                              "backup: without it no source can log in again.") from None

    @classmethod
    def load_or_create(cls, path: Path) -> InstanceSecrets:
        if not path.exists():
            cls.generate().save(path)
        return cls.load(path)
