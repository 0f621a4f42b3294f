"""`tipbox backup` and `tipbox restore` at the command line: the passphrase typed twice
and never shown, and refusals that say what to do next."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from tests.helpers import Newsroom, cli_env
from tipbox.cli import main
from tipbox.config import Settings

PASSPHRASE = "correct horse battery staple"


def test_a_mistyped_confirmation_asks_for_the_passphrase_again(settings: Settings,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "b.backup"
    typed = f"{PASSPHRASE}\n{PASSPHRASE}x\n{PASSPHRASE}\n{PASSPHRASE}\n"

    result = CliRunner().invoke(main, ["backup", "--out", str(out)], input=typed,
                                env=cli_env(settings))

    assert result.exit_code == 0, result.output
    assert "do not match" in result.output
    assert PASSPHRASE not in result.output
    assert out.is_file()


def test_a_short_passphrase_is_refused_and_nothing_is_written(settings: Settings,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "b.backup"

    result = CliRunner().invoke(main, ["backup", "--out", str(out)], input="short\nshort\n",
                                env=cli_env(settings))

    assert result.exit_code == 1
    assert "shorter than 12 characters" in result.output
    assert list(tmp_path.glob("*b.backup*")) == []


def test_backup_of_a_folder_never_initialised_says_to_run_init(tmp_path: Path,
                                                               newsroom: Newsroom) -> None:
    env = {"TIPBOX_DATA_DIR": str(tmp_path / "nothing"), "TIPBOX_KEYS_DIR": str(newsroom.keys_dir)}

    result = CliRunner().invoke(main, ["backup", "--out", str(tmp_path / "b")], env=env)

    assert result.exit_code == 1
    assert "run `tipbox init` first" in result.output


def test_restore_over_a_live_folder_is_refused_before_the_passphrase_is_asked(
        settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "b.backup"
    CliRunner().invoke(main, ["backup", "--out", str(out)],
                       input=f"{PASSPHRASE}\n{PASSPHRASE}\n", env=cli_env(settings))

    result = CliRunner().invoke(main, ["restore", str(out)], input=f"{PASSPHRASE}\n",
                                env=cli_env(settings))

    assert result.exit_code == 1
    assert "is not empty: a restore never overwrites an instance" in result.output
    assert "passphrase" not in result.output.lower()


def test_a_backup_for_a_key_is_restored_without_asking_a_passphrase(
        settings: Settings, tmp_path: Path, newsroom: Newsroom) -> None:
    out = tmp_path / "b.backup"
    made = CliRunner().invoke(main, ["backup", "--out", str(out), "--recipient-key",
                                     str(newsroom.public_key_file)], env=cli_env(settings))
    assert made.exit_code == 0, made.output
    target = settings.with_overrides(data_dir=tmp_path / "new",
                                     database_url=f"sqlite:///{tmp_path / 'new' / 'tipbox.db'}")

    result = CliRunner().invoke(main, ["restore", str(out), "--gnupghome",
                                       str(newsroom.secret_home)], env=cli_env(target))

    assert result.exit_code == 0, result.output
    assert "passphrase" not in result.output.lower()
    assert "Restored into" in result.output
    assert "Next: run `tipbox init`" in result.output
    doctor = CliRunner().invoke(main, ["doctor"], env=cli_env(target))
    assert "1 active key(s)" in doctor.output
