"""The two browsers a source's journey is tested in, behind one small page interface.

Chromium is Debian's, driven through Playwright's Python package. Firefox ESR is Debian's
too (Tor Browser is built on it), driven by tests/browser/firefox_bridge.mjs: a Node
process using puppeteer-core over WebDriver BiDi, one JSON command per line. Playwright
cannot drive a stock Firefox (it needs its own patched build), and no Python client of
WebDriver BiDi on PyPI drives Debian's firefox-esr without a geckodriver binary that
Debian does not ship.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol

from tests.helpers import require
from tipbox.config import REPO_ROOT

FIREFOX = Path("/usr/bin/firefox-esr")
BRIDGE = Path(__file__).with_name("firefox_bridge.mjs")
PUPPETEER = REPO_ROOT / "node_modules" / "puppeteer-core" / "package.json"
ENGINES = ["chromium", "firefox"]


def require_firefox() -> None:
    """Skip (on a developer's machine only) when Firefox ESR, node or puppeteer-core is
    missing; under CI=true the test fails instead."""
    problem = None
    if not FIREFOX.exists():
        problem = f"Firefox ESR is not installed ({FIREFOX}): sudo apt-get install firefox-esr"
    elif shutil.which("node") is None:
        problem = "node is missing: sudo apt-get install npm"
    elif not PUPPETEER.exists():
        problem = "puppeteer-core is missing: make install-test (npm ci)"
    require(problem, ci="CI must run the Firefox tests", here="Firefox tests skipped")


class Tab(Protocol):
    """What a scenario does with a page, in either browser."""

    engine: str

    def goto(self, url: str) -> None: ...
    def url(self) -> str: ...
    def click(self, selector: str) -> None: ...
    def click_and_load(self, selector: str, seconds: float = 30) -> None:
        """Click, then wait until the next page has loaded."""
    def fill(self, selector: str, value: str) -> None: ...
    def set_files(self, selector: str, paths: list[Path]) -> None: ...
    def wait_for(self, selector: str, seconds: float = 30) -> None:
        """Wait until the selector matches a visible element."""
    def wait_for_text(self, text: str, seconds: float = 30) -> None: ...
    def inner_text(self, selector: str) -> str: ...
    def is_visible(self, selector: str) -> bool: ...
    def content(self) -> str: ...
    def evaluate(self, function: str) -> Any:
        """Call a JavaScript function (source text, may be async) in the page."""
    def screenshot(self, path: Path) -> None: ...
    def request_log(self) -> list[tuple[str, str]]:
        """(method, URL) of every request the page made, in order."""
    def failed_requests(self) -> list[tuple[str, str]]:
        """(method, URL) of every request that got no answer (the browser showed an error)."""


class ChromiumTab:
    engine = "chromium"

    def __init__(self, page: Any) -> None:
        self.page = page
        self._requests: list[tuple[str, str]] = []
        self._failed: list[tuple[str, str]] = []
        page.on("request", lambda r: self._requests.append((r.method, r.url)))
        page.on("requestfailed", lambda r: self._failed.append((r.method, r.url)))

    def goto(self, url: str) -> None:
        from playwright.sync_api import Error

        # After a form's POST that a broken connection cut off, Chromium may navigate to
        # the same address by itself (again and again within a second, seen three times
        # in a row in CI), and each such navigation interrupts ours. Wait for it to
        # settle, pause, and ask again: five tries at most, a few seconds in all.
        for attempt in range(5):
            try:
                self.page.goto(url)
                return
            except Error as error:
                if "interrupted by another navigation" not in error.message or attempt == 4:
                    raise
                self.page.wait_for_load_state()
                self.page.wait_for_timeout(1000 * (attempt + 1))

    def url(self) -> str:
        return str(self.page.url)

    def click(self, selector: str) -> None:
        self.page.click(selector)

    def click_and_load(self, selector: str, seconds: float = 30) -> None:
        with self.page.expect_navigation(timeout=seconds * 1000):
            self.page.click(selector)

    def fill(self, selector: str, value: str) -> None:
        self.page.fill(selector, value)

    def set_files(self, selector: str, paths: list[Path]) -> None:
        self.page.set_input_files(selector, [str(p) for p in paths])

    def wait_for(self, selector: str, seconds: float = 30) -> None:
        self.page.wait_for_selector(selector, state="visible", timeout=seconds * 1000)

    def wait_for_text(self, text: str, seconds: float = 30) -> None:
        self.page.wait_for_selector(f"text={text}", timeout=seconds * 1000)

    def inner_text(self, selector: str) -> str:
        return str(self.page.inner_text(selector))

    def is_visible(self, selector: str) -> bool:
        return bool(self.page.is_visible(selector))

    def content(self) -> str:
        return str(self.page.content())

    def evaluate(self, function: str) -> Any:
        return self.page.evaluate(function)

    def screenshot(self, path: Path) -> None:
        self.page.screenshot(path=str(path), full_page=True)

    def request_log(self) -> list[tuple[str, str]]:
        return list(self._requests)

    def failed_requests(self) -> list[tuple[str, str]]:
        return list(self._failed)


class FirefoxTab:
    """Firefox ESR headless in a permanent private window, through the Node bridge."""

    engine = "firefox"

    def __init__(self, javascript: bool, profile: Path, log: Path) -> None:
        profile.mkdir(parents=True, exist_ok=True)
        self._log = log.open("wb")
        self._process = subprocess.Popen(
            ["node", str(BRIDGE), str(FIREFOX), "on" if javascript else "off", str(profile)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, cwd=REPO_ROOT)

    @property
    def pid(self) -> int:
        """The Node bridge's; Firefox's processes are its descendants."""
        return self._process.pid

    def close(self) -> None:
        with suppress(OSError, RuntimeError, ValueError):
            self._call("close")
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                pipe.close()
        self._log.close()

    def _call(self, name: str, **args: Any) -> Any:
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps({"name": name, **args}).encode() + b"\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"the Firefox bridge stopped (see {self._log.name})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"Firefox: {name}: {answer['error']}")
        return answer["ok"]

    def goto(self, url: str) -> None:
        # The bridge accepts a navigation whose page arrived whole although puppeteer
        # missed its load event (after one of Firefox's own error pages). A navigation
        # that really did not arrive is asked for once more before giving up.
        for attempt in range(2):
            try:
                self._call("goto", url=url)
                return
            except RuntimeError as error:
                if "Navigation timeout" not in str(error) or attempt == 1:
                    raise

    def url(self) -> str:
        return str(self._call("url"))

    def click(self, selector: str) -> None:
        self._call("click", selector=selector)

    def click_and_load(self, selector: str, seconds: float = 30) -> None:
        self._call("clickAndLoad", selector=selector, ms=seconds * 1000)

    def fill(self, selector: str, value: str) -> None:
        self._call("fill", selector=selector, value=value)

    def set_files(self, selector: str, paths: list[Path]) -> None:
        self._call("setFiles", selector=selector, paths=[str(p) for p in paths])

    def wait_for(self, selector: str, seconds: float = 30) -> None:
        self._call("waitFor", selector=selector, ms=seconds * 1000)

    def wait_for_text(self, text: str, seconds: float = 30) -> None:
        self._call("waitForText", text=text, ms=seconds * 1000)

    def inner_text(self, selector: str) -> str:
        return str(self._call("innerText", selector=selector))

    def is_visible(self, selector: str) -> bool:
        return bool(self._call("isVisible", selector=selector))

    def content(self) -> str:
        return str(self._call("content"))

    def evaluate(self, function: str) -> Any:
        return self._call("evaluate", source=f"({function})()")

    def screenshot(self, path: Path) -> None:
        self._call("screenshot", path=str(path))

    def request_log(self) -> list[tuple[str, str]]:
        return [(r["method"], r["url"]) for r in self._call("requests")]

    def failed_requests(self) -> list[tuple[str, str]]:
        return [(r["method"], r["url"]) for r in self._call("failedRequests")]


@contextmanager
def open_tab(engine: str, javascript: bool, tmp_path: Path,
             chromium: Callable[[], Any]) -> Iterator[Tab]:
    """A fresh private window with JavaScript on or off; closed on exit. `chromium` gives
    the session's Chromium (one Playwright per session: its synchronous API allows no
    second one while the first runs)."""
    if engine == "firefox":
        require_firefox()
        firefox = FirefoxTab(javascript, tmp_path / "firefox-profile", tmp_path / "firefox.log")
        try:
            yield firefox
        finally:
            firefox.close()
        return
    context = chromium().new_context(java_script_enabled=javascript,
                                     viewport={"width": 900, "height": 700})
    try:
        yield ChromiumTab(context.new_page())
    finally:
        context.close()
