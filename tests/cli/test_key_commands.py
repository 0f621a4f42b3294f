"""`tipbox keys` and `tipbox doctor`: the key ceremony from the server's command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.crypto.keyfactory import export, gpg, new_key
from tipbox.cli import main


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = {"TIPBOX_DATA_DIR": str(tmp_path / "data"), "TIPBOX_KEYS_DIR": str(tmp_path / "keys"),
           "TIPBOX_SCRYPT_N": "16"}
    assert CliRunner().invoke(main, ["init"], env=env).exit_code == 0
    return env


def test_the_whole_ceremony_from_the_command_line(env: dict[str, str], tmp_path: Path) -> None:
    runner = CliRunner()
    home = tmp_path / "offline"
    fpr = new_key(home)
    key_file = export(home, fpr, tmp_path / "newsroom.asc")

    doctor = runner.invoke(main, ["doctor"], env=env)
    assert doctor.exit_code == 1 and "No newsroom key is active" in doctor.output

    added = runner.invoke(main, ["keys", "add", str(key_file)], env=env)
    assert added.exit_code == 0, added.output
    assert f"Added {fpr}" in added.output and "PENDING" in added.output

    challenge = tmp_path / "challenge.gpg"
    result = runner.invoke(main, ["keys", "challenge", fpr, "--out", str(challenge)], env=env)
    assert result.exit_code == 0, result.output
    code = gpg(home, "--decrypt", str(challenge)).decode().split()[-1]

    wrong = runner.invoke(main, ["keys", "activate", fpr, "--proof", "NOPE"], env=env)
    assert wrong.exit_code != 0 and "does not match" in wrong.output
    right = runner.invoke(main, ["keys", "activate", fpr, "--proof", code], env=env)
    assert right.exit_code == 0 and "ACTIVE" in right.output

    listed = runner.invoke(main, ["keys", "list"], env=env)
    assert fpr in listed.output and "ACTIVE" in listed.output and "0 item(s)" in listed.output

    last = runner.invoke(main, ["keys", "retire", fpr], env=env)
    assert last.exit_code != 0 and "only usable active key" in last.output
    assert runner.invoke(main, ["doctor"], env=env).exit_code == 0


def test_a_refused_key_file_says_why(env: dict[str, str], tmp_path: Path) -> None:
    home = tmp_path / "h"
    fpr = new_key(home)
    secret = export(home, fpr, tmp_path / "secret.asc", secret=True)
    result = CliRunner().invoke(main, ["keys", "add", str(secret)], env=env)
    assert result.exit_code != 0 and "SECRET key material" in result.output


def test_activation_needs_a_code_or_the_loud_flag(env: dict[str, str], tmp_path: Path) -> None:
    home = tmp_path / "h"
    fpr = new_key(home)
    runner = CliRunner()
    runner.invoke(main, ["keys", "add", str(export(home, fpr, tmp_path / "k.asc"))], env=env)
    assert runner.invoke(main, ["keys", "activate", fpr], env=env).exit_code != 0
    result = runner.invoke(main, ["keys", "activate", fpr, "--skip-proof-of-possession"],
                           env=env)
    assert result.exit_code == 0, result.output
