"""`tipbox users`: an admin creates, lists, resets and deactivates newsroom accounts.

The printed passphrase and TOTP secret are parsed back and used to log in, so the test
proves that what the admin hands over works. The CLI uses the production Argon2id
parameters (a few tenths of a second per test)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from click.testing import CliRunner, Result

from tests.helpers import cli_env, instance_sealer
from tipbox.accounts import AccountService, NewCredentials
from tipbox.audit import AuditLog
from tipbox.cli import main
from tipbox.config import Settings
from tipbox.db import make_engine, make_session_factory
from tipbox.errors import LoginFailed


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    return cli_env(settings)


@pytest.fixture
def accounts(settings: Settings) -> Iterator[AccountService]:
    """What the newsroom app will use to check a login (default hasher, real clock)."""
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    yield AccountService(sessions, instance_sealer(settings), AuditLog(sessions))
    engine.dispose()


def users(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, ["users", *args], env=env)


def printed_credentials(output: str, username: str) -> NewCredentials:
    passphrase = re.search(r"^\s*Passphrase:\s+([a-z -]+?)\s*$", output, re.MULTILINE)
    secret = re.search(r"^\s*TOTP secret:\s+([A-Z2-7]+)\s*$", output, re.MULTILINE)
    assert passphrase and secret, output
    return NewCredentials(username, passphrase.group(1), secret.group(1))


def log_in(accounts: AccountService, creds: NewCredentials) -> int:
    return accounts.authenticate(creds.username, creds.passphrase,
                                 pyotp.TOTP(creds.totp_secret).now())


def test_users_add_prints_working_credentials_a_qr_code_and_a_handover_warning(
        env: dict[str, str], accounts: AccountService) -> None:
    result = users(env, "add", "alice")
    assert result.exit_code == 0, result.output
    creds = printed_credentials(result.output, "alice")
    assert len(creds.passphrase.split()) == 7
    assert "in person" in result.output and "shown only this once" in result.output
    assert f"otpauth URI:  {creds.otpauth_uri}" in result.output
    assert creds.qr_for_terminal() in result.output
    assert "alice (journalist)" in result.output
    journalist_id = log_in(accounts, creds)
    summary = accounts.get(journalist_id)
    assert summary is not None and not summary.is_admin


def test_users_list_shows_roles_and_status(env: dict[str, str]) -> None:
    assert "No accounts yet" in users(env, "list").output
    assert users(env, "add", "bob").exit_code == 0
    result = users(env, "add", "alice", "--admin")
    assert result.exit_code == 0 and "alice (admin)" in result.output
    assert users(env, "deactivate", "bob").exit_code == 0
    result = users(env, "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["USERNAME", "ROLE", "STATUS", "CREATED"]
    assert lines[1].split()[:3] == ["alice", "admin", "active"]
    assert lines[2].split()[:3] == ["bob", "journalist", "deactivated"]


def test_users_reset_prints_new_credentials_and_the_old_ones_stop_working(
        env: dict[str, str], accounts: AccountService) -> None:
    old = printed_credentials(users(env, "add", "alice").output, "alice")
    result = users(env, "reset", "alice")
    assert result.exit_code == 0, result.output
    assert "no longer work" in result.output and "in person" in result.output
    new = printed_credentials(result.output, "alice")
    assert new.passphrase != old.passphrase and new.totp_secret != old.totp_secret
    with pytest.raises(LoginFailed):
        log_in(accounts, old)
    assert log_in(accounts, new)


def test_users_deactivate_refuses_logins_until_reactivate(
        env: dict[str, str], accounts: AccountService) -> None:
    creds = printed_credentials(users(env, "add", "alice").output, "alice")
    result = users(env, "deactivate", "alice")
    assert result.exit_code == 0 and "tipbox users reactivate alice" in result.output
    with pytest.raises(LoginFailed):
        log_in(accounts, creds)
    result = users(env, "reactivate", "alice")
    assert result.exit_code == 0 and "can log in again" in result.output
    assert log_in(accounts, creds)


def test_users_add_refuses_a_taken_or_malformed_name_with_a_next_step(
        env: dict[str, str]) -> None:
    users(env, "add", "alice")
    result = users(env, "add", "Alice")
    assert result.exit_code == 1
    assert "'Alice' is taken by 'alice'" in result.output
    assert "tipbox users reset alice`" in result.output
    result = users(env, "add", "alice smith")
    assert result.exit_code == 1 and "letters, digits" in result.output
    assert "Passphrase" not in result.output


@pytest.mark.parametrize("command", ["reset", "deactivate", "reactivate"])
def test_users_commands_on_an_unknown_account_point_to_the_list(
        env: dict[str, str], command: str) -> None:
    result = users(env, command, "nobody")
    assert result.exit_code == 1
    assert "no account with that name" in result.output
    assert "tipbox users list" in result.output


def test_users_commands_need_an_initialised_data_folder(tmp_path: Path) -> None:
    env = {"TIPBOX_DATA_DIR": str(tmp_path / "data"), "TIPBOX_KEYS_DIR": str(tmp_path / "keys")}
    for args in (["list"], ["add", "alice"]):
        result = users(env, *args)
        assert result.exit_code == 1
        assert "run `tipbox init`" in result.output
    assert not (tmp_path / "data").exists()
