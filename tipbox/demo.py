"""A demonstration instance: a throwaway newsroom key pair and a demo journalist.

Plain Python, no click and no printing: `tipbox demo` calls these and says what they did.
Nothing here is fit for real sources: the demo key's secret half sits unprotected on the
server's own disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tipbox.accounts import AccountService, NewCredentials
from tipbox.crypto.gpg import GnuPG
from tipbox.crypto.keyring import KEY_SUFFIXES
from tipbox.errors import NoSuchAccount

DEMO_KEY_NAME = "tipbox DEMO newsroom key - NOT SECRET, NOT FOR REAL SOURCES"
DEMO_KEY_FILE = "DEMO-newsroom-key.asc"
DEMO_JOURNALIST = "demo-journalist"


@dataclass(frozen=True)
class DemoKey:
    """A demo key pair made just now."""

    fingerprint: str
    public_key_file: Path
    secret_home: Path  # the GnuPG home standing for the air-gapped machine


def ensure_demo_key(keys_dir: Path, offline_dir: Path) -> DemoKey | None:
    """Make a demo key pair unless the keys folder already has a key (then None): the
    public half into ``keys_dir``, the secret half into a GnuPG home in ``offline_dir``."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    if any(p.suffix in KEY_SUFFIXES for p in keys_dir.iterdir()):
        return None
    secret_home = offline_dir / "gnupg"
    gpg = GnuPG(secret_home)
    fpr = gpg.generate_key(DEMO_KEY_NAME, "demo-newsroom@tipbox.invalid", passphrase=None,
                           expire="1y")
    public_key_file = keys_dir / DEMO_KEY_FILE
    public_key_file.write_text(str(gpg.export_public(fpr)))
    return DemoKey(fpr, public_key_file, secret_home)


def demo_journalist_credentials(accounts: AccountService, actor: str) -> NewCredentials:
    """Fresh credentials for the demo journalist, an admin, made on first use. New ones at
    every start: only their hashes are stored, so this is the only way to show them."""
    try:
        return accounts.reset_credentials(DEMO_JOURNALIST, actor)
    except NoSuchAccount:
        return accounts.create(DEMO_JOURNALIST, actor, admin=True)
