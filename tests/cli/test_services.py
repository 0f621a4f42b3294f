"""What every command shares: who the audit log names, and how the instance is reached
(the checks before the database is opened, its errors told without the URL)."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.helpers import cli_env
from tipbox.cli import cli_actor, main
from tipbox.config import Settings


@pytest.mark.parametrize(("variables", "expected"), [
    ({"SUDO_USER": "ada", "USER": "root"}, "cli:ada"),
    ({"USER": "bob"}, "cli:bob"),
    ({}, None),  # neither set (a bare shell, a service): the system's name for this uid
])
def test_the_audit_log_names_who_ran_a_command(
        monkeypatch: pytest.MonkeyPatch, variables: dict[str, str],
        expected: str | None) -> None:
    for name in ("SUDO_USER", "USER", "LOGNAME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert cli_actor() == (expected or f"cli:{pwd.getpwuid(os.getuid()).pw_name}")


def test_a_database_that_cannot_be_reached_is_named_by_its_error_class_not_its_url(
        settings: Settings) -> None:
    # Port 1 on loopback: nothing listens, so the driver fails at once.
    url = "postgresql+psycopg://tipbox:hunter2-secret@127.0.0.1:1/tipbox"
    result = CliRunner().invoke(main, ["users", "list"],
                                env=cli_env(settings, TIPBOX_DATABASE_URL=url))
    assert result.exit_code == 1
    assert "Cannot use the database (OperationalError)" in result.output
    assert "TIPBOX_DATABASE_URL is right" in result.output
    assert "hunter2" not in result.output and "127.0.0.1" not in result.output


@pytest.mark.parametrize(("url", "cause"), [
    ("postgresql//tipbox:hunter2-secret@db/tipbox", "ArgumentError"),
    ("postgresql+psycopg://tipbox:hunter2-secret@db:port/tipbox", "ValueError"),
    ("nosuchdb://tipbox:hunter2-secret@db/tipbox", "NoSuchModuleError"),
])
def test_a_malformed_database_url_is_a_clear_error_without_a_traceback_or_the_password(
        tmp_path: Path, url: str, cause: str) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    result = CliRunner().invoke(main, ["init"], env=cli_env(settings, TIPBOX_DATABASE_URL=url))
    assert result.exit_code == 1
    assert f"TIPBOX_DATABASE_URL is not a database URL tipbox can use ({cause})" \
        in result.output
    assert "hunter2" not in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("args", [["keys", "list"], ["doctor"], ["serve", "source", "--port", "1"],
                                  ["prune", "--older-than", "1"]])
def test_no_command_creates_a_database_in_a_folder_that_is_not_initialised(
        tmp_path: Path, args: list[str]) -> None:
    env = {"TIPBOX_DATA_DIR": str(tmp_path / "data"), "TIPBOX_KEYS_DIR": str(tmp_path / "keys")}
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 1
    assert "is not initialised: run `tipbox init` first." in result.output
    assert not (tmp_path / "data").exists()
