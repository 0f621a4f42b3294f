"""What every browser test drives: a real `tipbox serve source` behind a recording relay,
and the session's Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser.kit import CHROMIUM, MARKER, WireRecorder, chromium_args, require_chromium
from tests.e2e.server import tipbox_server
from tests.helpers import Newsroom, require_browser_encryption


@dataclass
class Site:
    relay: WireRecorder
    server_port: int
    data_dir: Path
    env: dict[str, str]

    @property
    def url(self) -> str:
        return self.relay.url


@pytest.fixture
def site(tmp_path: Path, newsroom: Newsroom) -> Iterator[Site]:
    tmp = tmp_path / "server-tmp"
    tmp.mkdir()
    env = {"TIPBOX_DATA_DIR": str(tmp_path / "data"), "TIPBOX_KEYS_DIR": str(newsroom.keys_dir),
           "TIPBOX_SCRYPT_N": "16", "TMPDIR": str(tmp)}
    with tipbox_server("source", env, tmp_path / "server.log") as server:
        relay = WireRecorder(server.port, [MARKER.encode()])
        try:
            yield Site(relay, server.port, tmp_path / "data", env)
        finally:
            relay.close()


@pytest.fixture
def js_required() -> None:
    require_browser_encryption()


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=chromium_args())
        yield browser
        browser.close()
