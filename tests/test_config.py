"""Settings come from TIPBOX_* variables, are frozen, and fail fast with the variable's name."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tipbox.config import GIB, ScryptParams, Settings, TorSettings
from tipbox.errors import ConfigError


def test_defaults_put_everything_in_the_data_folder(tmp_path: Path) -> None:
    s = Settings.from_env({"TIPBOX_DATA_DIR": str(tmp_path)})
    assert s.data_dir == tmp_path
    assert s.database_url == f"sqlite:///{tmp_path / 'tipbox.db'}"
    assert s.store_dir == tmp_path / "store"
    assert s.max_submission_bytes == 2 * GIB
    assert s.max_message_chars == 100_000
    assert s.session_idle_minutes == 120
    assert s.csrf_time_limit_seconds == 24 * 3600


def test_every_variable_is_read(tmp_path: Path) -> None:
    s = Settings.from_env({
        "TIPBOX_DATA_DIR": str(tmp_path), "TIPBOX_KEYS_DIR": str(tmp_path / "k"),
        "TIPBOX_DATABASE_URL": "postgresql+psycopg://u@h/db",
        "TIPBOX_MAX_MESSAGE_CHARS": "500", "TIPBOX_MAX_SUBMISSION_BYTES": "1_000_000",
        "TIPBOX_MAX_FILES": "7", "TIPBOX_SESSION_IDLE_MINUTES": "5",
        "TIPBOX_SCRYPT_N": "1024", "TIPBOX_GPG_BINARY": "/opt/gpg",
    })
    assert (s.keys_dir, s.database_url) == (tmp_path / "k", "postgresql+psycopg://u@h/db")
    assert (s.max_message_chars, s.max_submission_bytes, s.max_files) == (500, 1_000_000, 7)
    assert (s.session_idle_minutes, s.scrypt.n, s.gpg_binary) == (5, 1024, "/opt/gpg")


def test_serving_limits_are_read_and_checked(tmp_path: Path) -> None:
    s = Settings.from_env({
        "TIPBOX_DATA_DIR": str(tmp_path), "TIPBOX_REQUEST_HEAD_SECONDS": "10",
        "TIPBOX_BODY_STALL_SECONDS": "60", "TIPBOX_SERVE_THREADS": "64",
        "TIPBOX_MAX_CONNECTIONS": "500",
    })
    assert (s.request_head_seconds, s.body_stall_seconds) == (10, 60)
    assert (s.serve_threads, s.max_connections) == (64, 500)
    with pytest.raises(ConfigError, match="TIPBOX_MAX_CONNECTIONS must be larger"):
        Settings(data_dir=tmp_path, serve_threads=64, max_connections=64)


def test_flood_defence_settings_are_read_and_checked(tmp_path: Path) -> None:
    quiet = Settings(data_dir=tmp_path)
    assert (quiet.pow_create_threshold, quiet.pow_submit_threshold) == (20, 60)
    assert (quiet.pow_max_bits, quiet.pow_hashes_per_second) == (20, 50_000)
    s = Settings.from_env({
        "TIPBOX_DATA_DIR": str(tmp_path), "TIPBOX_POW_CREATE_THRESHOLD": "5",
        "TIPBOX_POW_SUBMIT_THRESHOLD": "7", "TIPBOX_POW_MAX_BITS": "12",
        "TIPBOX_POW_HASHES_PER_SECOND": "1_000",
    })
    assert (s.pow_create_threshold, s.pow_submit_threshold) == (5, 7)
    assert (s.pow_max_bits, s.pow_hashes_per_second) == (12, 1000)
    for bits in ("0", "33"):
        with pytest.raises(ConfigError, match="TIPBOX_POW_MAX_BITS must be between 1 and 32"):
            Settings.from_env({"TIPBOX_DATA_DIR": str(tmp_path), "TIPBOX_POW_MAX_BITS": bits})
    with pytest.raises(ConfigError, match="TIPBOX_POW_CREATE_THRESHOLD must be a positive"):
        Settings.from_env({"TIPBOX_DATA_DIR": str(tmp_path),
                           "TIPBOX_POW_CREATE_THRESHOLD": "0"})


@pytest.mark.parametrize(("var", "value", "message"), [
    ("TIPBOX_MAX_FILES", "lots", "TIPBOX_MAX_FILES must be a whole number"),
    ("TIPBOX_MAX_SUBMISSION_BYTES", "0", "TIPBOX_MAX_SUBMISSION_BYTES must be a positive"),
    ("TIPBOX_SCRYPT_N", "1000", "power of two"),
])
def test_malformed_values_stop_start_up_with_a_clear_message(
        tmp_path: Path, var: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"TIPBOX_DATA_DIR": str(tmp_path), var: value})


def test_settings_are_frozen(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.max_files = 1  # type: ignore[misc]
    assert s.with_overrides(max_files=3).max_files == 3
    assert s.max_files == 1000


def test_scrypt_parameters_are_checked() -> None:
    with pytest.raises(ConfigError):
        ScryptParams(n=3)


def test_onion_services_are_checked_only_where_their_folder_is_set(tmp_path: Path) -> None:
    assert Settings.from_env({"TIPBOX_DATA_DIR": str(tmp_path)}).tor is None
    debian = Settings.from_env({"TIPBOX_DATA_DIR": str(tmp_path),
                                "TIPBOX_ONION_DIR": "/var/lib/tor"}).tor
    assert debian == TorSettings(Path("/var/lib/tor"), Path("/run/tor/tor.pid"),
                                 Path("/etc/tor/torrc"))
    moved = Settings.from_env({"TIPBOX_DATA_DIR": str(tmp_path),
                               "TIPBOX_ONION_DIR": str(tmp_path / "tor"),
                               "TIPBOX_TOR_PID_FILE": str(tmp_path / "tor.pid"),
                               "TIPBOX_TORRC": str(tmp_path / "torrc")}).tor
    assert moved == TorSettings(tmp_path / "tor", tmp_path / "tor.pid", tmp_path / "torrc")
