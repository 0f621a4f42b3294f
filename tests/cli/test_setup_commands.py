"""The `tipbox` command: init is repeatable, demo makes a clearly labelled key, serve checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from tipbox.cli import main
from tipbox.crypto.keyring import load_keyring
from tipbox.db import make_engine
from tipbox.demo import DEMO_KEY_FILE
from tipbox.errors import ConfigError
from tipbox.instance import InstanceSecrets
from tipbox.models import Journalist


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"TIPBOX_DATA_DIR": str(tmp_path / "data"), "TIPBOX_KEYS_DIR": str(tmp_path / "keys"),
            "TIPBOX_SCRYPT_N": "16"}


def test_init_creates_the_data_folder_and_can_run_again(env: dict[str, str]) -> None:
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(main, ["init"], env=env)
        assert result.exit_code == 0, result.output
    data = Path(env["TIPBOX_DATA_DIR"])
    assert (data / "tipbox.db").exists() and (data / "store").is_dir()
    secrets_file = data / "instance-secrets.json"
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    assert data.stat().st_mode & 0o777 == 0o700


def test_two_inits_at_once_on_a_new_data_folder_both_succeed(env: dict[str, str]) -> None:
    """A deploy script and an admin by hand, say: the real command, twice at once, in
    several rounds (without turns, one of two failed within three rounds here)."""
    tipbox = Path(sys.executable).parent / "tipbox"
    for round_ in range(4):
        data = Path(env["TIPBOX_DATA_DIR"]) / str(round_)
        both = [subprocess.Popen([str(tipbox), "init"], env={
            **os.environ, **env, "TIPBOX_DATA_DIR": str(data)}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True) for _ in range(2)]
        outputs = [init.communicate(timeout=120)[0] for init in both]
        assert [init.returncode for init in both] == [0, 0], outputs
        assert InstanceSecrets.load(data / "instance-secrets.json")
        assert (data / "tipbox.db").exists()


def test_init_completes_an_older_secrets_file_and_keeps_what_it_has(
        env: dict[str, str]) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["init"], env=env).exit_code == 0
    secrets_file = Path(env["TIPBOX_DATA_DIR"]) / "instance-secrets.json"
    older = json.loads(secrets_file.read_text())
    del older["totp_key"]  # as written before TOTP secrets were sealed
    secrets_file.write_text(json.dumps(older))
    with pytest.raises(ConfigError, match=r"lacks totp_key.*run `tipbox init`"):
        InstanceSecrets.load(secrets_file)

    assert runner.invoke(main, ["init"], env=env).exit_code == 0
    completed = json.loads(secrets_file.read_text())
    assert {k: completed[k] for k in older} == older
    assert len(bytes.fromhex(completed["totp_key"])) == 32
    assert secrets_file.stat().st_mode & 0o777 == 0o600


def test_init_refuses_a_secrets_file_without_the_key_the_accounts_were_sealed_with(
        env: dict[str, str]) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["init"], env=env).exit_code == 0
    assert runner.invoke(main, ["users", "add", "ada"], env=env).exit_code == 0
    secrets_file = Path(env["TIPBOX_DATA_DIR"]) / "instance-secrets.json"
    older = json.loads(secrets_file.read_text())
    del older["totp_key"]  # an instance-secrets.json restored from an older backup
    secrets_file.write_text(json.dumps(older))
    result = runner.invoke(main, ["init"], env=env)
    assert result.exit_code != 0
    assert "does not belong with this database" in result.output
    assert "restore the instance-secrets.json that was backed up" in result.output
    assert json.loads(secrets_file.read_text()) == older  # nothing added


def test_init_warns_when_the_accounts_do_not_open_with_the_key(env: dict[str, str]) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["init"], env=env).exit_code == 0
    assert runner.invoke(main, ["users", "add", "ada"], env=env).exit_code == 0
    secrets_file = Path(env["TIPBOX_DATA_DIR"]) / "instance-secrets.json"
    other = json.loads(secrets_file.read_text()) | {"totp_key": "ab" * 32}
    secrets_file.write_text(json.dumps(other))
    result = runner.invoke(main, ["init"], env=env)
    assert result.exit_code == 0, result.output
    assert "WARNING: the TOTP secrets of ada do not open" in result.output
    assert "`tipbox users reset`" in result.output


@pytest.mark.parametrize("length", [16, 31, 33])
def test_a_secret_of_the_wrong_length_is_a_damaged_file(
        env: dict[str, str], length: int) -> None:
    assert CliRunner().invoke(main, ["init"], env=env).exit_code == 0
    secrets_file = Path(env["TIPBOX_DATA_DIR"]) / "instance-secrets.json"
    short = json.loads(secrets_file.read_text()) | {"totp_key": "ab" * length}
    secrets_file.write_text(json.dumps(short))
    with pytest.raises(ConfigError, match="is damaged"):
        InstanceSecrets.load(secrets_file)


def test_init_seals_totp_secrets_an_older_version_stored_in_clear(
        env: dict[str, str]) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["init"], env=env).exit_code == 0
    assert runner.invoke(main, ["users", "add", "ada"], env=env).exit_code == 0
    url = f"sqlite:///{Path(env['TIPBOX_DATA_DIR']) / 'tipbox.db'}"
    engine = make_engine(url)
    with engine.begin() as db:
        db.execute(update(Journalist).values(totp_secret="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"))
    result = runner.invoke(main, ["init"], env=env)
    assert result.exit_code == 0, result.output
    assert "Sealed the TOTP secrets of 1 account(s)." in result.output
    with engine.begin() as db:
        stored = db.execute(select(Journalist.totp_secret)).scalar_one()
    engine.dispose()
    assert stored.startswith("v1:") and "JBSWY3DP" not in stored


def test_demo_makes_a_labelled_key_pair_with_the_secret_half_kept_apart(
        env: dict[str, str], tmp_path: Path) -> None:
    offline = tmp_path / "offline"
    result = CliRunner().invoke(main, ["demo", "--no-serve", "--offline-dir", str(offline)],
                                env=env)
    assert result.exit_code == 0, result.output
    assert "DEMO KEY CREATED - FOR DEMONSTRATION ONLY" in result.output
    public = Path(env["TIPBOX_KEYS_DIR"]) / DEMO_KEY_FILE
    assert "PUBLIC KEY BLOCK" in public.read_text()
    assert "PRIVATE" not in public.read_text()
    ring = load_keyring(public.parent, tmp_path / "gnupg")
    assert ring.accepting and ring.is_demo
    assert any((offline / "gnupg" / "private-keys-v1.d").iterdir())


def test_demo_keeps_a_key_that_is_already_there(env: dict[str, str], tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["demo", "--no-serve", "--offline-dir", str(tmp_path / "offline")]
    runner.invoke(main, args, env=env)
    first = (Path(env["TIPBOX_KEYS_DIR"]) / DEMO_KEY_FILE).read_text()
    result = runner.invoke(main, args, env=env)
    assert result.exit_code == 0 and "Using the key(s) already in" in result.output
    assert (Path(env["TIPBOX_KEYS_DIR"]) / DEMO_KEY_FILE).read_text() == first


def test_serve_refuses_an_uninitialised_data_folder(env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["serve", "source", "--port", "1"], env=env)
    assert result.exit_code != 0
    assert "run `tipbox init`" in result.output


def test_a_malformed_setting_is_reported_by_name(env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["init"], env={**env, "TIPBOX_MAX_FILES": "many"})
    assert result.exit_code != 0
    assert "TIPBOX_MAX_FILES must be a whole number" in result.output
