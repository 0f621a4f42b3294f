"""Fixtures for tipbox-open: a sender holding the newsroom public keys, and helpers."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Newsroom
from tests.offline.kit import Sender
from tipbox.crypto.gpg import GnuPG


@pytest.fixture(scope="session")
def sender(tmp_path_factory: pytest.TempPathFactory, newsroom: Newsroom,
           second_newsroom_key: Newsroom) -> Sender:
    """Encrypts like the server: a home with both newsroom public keys, no secret key."""
    root = tmp_path_factory.mktemp("sender")
    gpg = GnuPG(root / "gnupg")
    gpg.import_keys(newsroom.public_key_file.read_text())
    gpg.import_keys(second_newsroom_key.public_key_file.read_text())
    return Sender(gpg, root / "items")


@pytest.fixture
def own_home(tmp_path: Path) -> Iterator[Path]:
    """A GnuPG home for one test; its gpg-agent is stopped afterwards."""
    home = tmp_path / "own-gnupg"
    yield home
    if home.exists():
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                       capture_output=True, check=False)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """An empty working directory for the tool, next to the bundle and the output."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    return cwd
