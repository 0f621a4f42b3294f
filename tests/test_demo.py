"""The demonstration set-up without the CLI: a labelled throwaway key pair, made once, and a
demo journalist whose credentials are new at every start."""

from __future__ import annotations

from pathlib import Path

import pyotp
import pytest

from tests.helpers import ACTOR, Clock
from tipbox.accounts import AccountService, NewCredentials
from tipbox.demo import (
    DEMO_JOURNALIST,
    DEMO_KEY_FILE,
    demo_journalist_credentials,
    ensure_demo_key,
)
from tipbox.errors import LoginFailed


def test_a_demo_key_pair_is_made_once_with_the_secret_half_apart(tmp_path: Path) -> None:
    keys_dir, offline = tmp_path / "keys", tmp_path / "offline"
    made = ensure_demo_key(keys_dir, offline)
    assert made is not None
    assert made.public_key_file == keys_dir / DEMO_KEY_FILE
    public = made.public_key_file.read_text()
    assert "PUBLIC KEY BLOCK" in public and "PRIVATE" not in public
    assert made.secret_home == offline / "gnupg"
    assert any((made.secret_home / "private-keys-v1.d").iterdir())
    assert ensure_demo_key(keys_dir, offline) is None  # the folder has a key now
    assert made.public_key_file.read_text() == public


def log_in(accounts: AccountService, creds: NewCredentials, clock: Clock) -> int:
    clock.tick()
    return accounts.authenticate(creds.username, creds.passphrase,
                                 pyotp.TOTP(creds.totp_secret).at(clock.now))


def test_the_demo_journalist_is_an_admin_with_new_credentials_at_every_start(
        accounts: AccountService, clock: Clock) -> None:
    first = demo_journalist_credentials(accounts, ACTOR)
    summary = accounts.get(log_in(accounts, first, clock))
    assert summary is not None and summary.username == DEMO_JOURNALIST and summary.is_admin
    second = demo_journalist_credentials(accounts, ACTOR)
    with pytest.raises(LoginFailed):
        log_in(accounts, first, clock)
    assert log_in(accounts, second, clock) == summary.id
    entries = [(e.action, e.detail) for e in reversed(accounts.audit.recent())
               if e.action.startswith("account")]
    assert entries == [("account created", f"{DEMO_JOURNALIST} (admin)"),
                       ("account credentials reset", DEMO_JOURNALIST)]
