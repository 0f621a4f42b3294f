"""Browsers driven with nothing watching their network, for bench/browser_encrypt.py.

The test drivers observe every request: Playwright enables Chromium's DevTools Network
domain on each page, which keeps request bodies for inspection, and puppeteer subscribes to
Firefox's BiDi network events. Both add memory to the browser for each upload piece, which a
source's browser does not carry. These two drivers speak each browser's own automation
protocol with only the commands a source's actions need (go to a page, click, choose a file,
read the page), so the memory measured is the browser's own:

- Chromium: the DevTools protocol over ``--remote-debugging-pipe`` (NUL-separated JSON on
  file descriptors 3 and 4), in an off-the-record browser context (what Playwright's
  ``new_context`` makes, and what an incognito window is); Page and DOM commands only, no
  ``Network.enable``.
- Firefox ESR: Marionette (length-prefixed JSON over loopback TCP, the protocol geckodriver
  speaks), in a permanent private window (``browser.privatebrowsing.autostart``, as Tor
  Browser). Marionette starts no BiDi session, so no network events are collected.

Each waits with a bounded poll; every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

POLL_SECONDS = 0.1
START_SECONDS = 60

# Enough to keep a headless Firefox from phoning home during a measurement (the same kind
# of preferences every WebDriver client sets); a failed background fetch would only add
# noise to the memory figures.
FIREFOX_PREFS = {
    "marionette.port": 0,  # any free port; Firefox writes it to MarionetteActivePort
    "browser.privatebrowsing.autostart": True,
    "app.update.disabledForTesting": True,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.server": "",
    "services.settings.server": "",
    "extensions.update.enabled": False,
    "app.normandy.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "browser.safebrowsing.update.enabled": False,
    "browser.newtabpage.enabled": False,
}


class BrowserError(RuntimeError):
    pass


def _until(condition: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BrowserError(f"timed out after {seconds:.0f} s waiting for {what}")
        time.sleep(POLL_SECONDS)


class _PageScript:
    """What both drivers build on: run an expression in the page and get its value."""

    def evaluate(self, expression: str) -> Any:
        raise NotImplementedError

    def click(self, selector: str) -> None:
        raise NotImplementedError

    def click_and_load(self, selector: str, seconds: float = 30) -> None:
        before = self.evaluate("location.href")
        self.click(selector)
        _until(lambda: self.evaluate("location.href") != before, seconds, "the next page")
        self._wait_loaded(seconds)

    def wait_for(self, selector: str, seconds: float = 30) -> None:
        _until(lambda: self.evaluate(f"!!document.querySelector({json.dumps(selector)})"),
               seconds, selector)

    def wait_for_text(self, text: str, seconds: float = 30) -> None:
        _until(lambda: self.evaluate(
            f"!!document.body && document.body.innerText.includes({json.dumps(text)})"),
            seconds, repr(text))

    def _wait_loaded(self, seconds: float) -> None:
        _until(lambda: self.evaluate("document.readyState") == "complete", seconds,
               "the page to load")


class ChromiumPipe(_PageScript):
    """Headless Chromium over the DevTools protocol on a pipe, one off-the-record tab."""

    def __init__(self, executable: str, profile: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # Chromium reads commands on fd 3 and writes answers on fd 4; park both ends above
        # 10 first, so moving them there in the child cannot clobber one with the other.
        high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD_CLOEXEC, 10)
        high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD_CLOEXEC, 10)

        def in_child() -> None:
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        args = [executable, "--headless", "--remote-debugging-pipe",
                f"--user-data-dir={profile}", "--no-first-run", "about:blank"]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")
        # preexec_fn is safe here: the bench starts a browser before its memory sampler's
        # thread, and no other thread of this process holds a lock then.
        self.process = subprocess.Popen(
            args, pass_fds=(3, 4), preexec_fn=in_child,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for fd in (to_browser_r, from_browser_w, high_r, high_w):
            os.close(fd)
        self._buffer = b""
        self._id = 0
        self._session: str | None = None
        try:
            self._open_tab()
        except BaseException:
            self.close()
            raise

    def _open_tab(self) -> None:
        context = self._send("Target.createBrowserContext")["browserContextId"]
        target = self._send("Target.createTarget", {"url": "about:blank",
                                                    "browserContextId": context})["targetId"]
        self._session = self._send("Target.attachToTarget",
                                   {"targetId": target, "flatten": True})["sessionId"]

    @property
    def pid(self) -> int:
        return self.process.pid

    def _send(self, method: str, params: dict[str, Any] | None = None,
              session: bool = True) -> Any:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session and self._session is not None:
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + START_SECONDS
        while True:
            while b"\0" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                    raise BrowserError(f"Chromium did not answer {method}")
                chunk = os.read(self._from_browser, 1 << 16)
                if not chunk:
                    raise BrowserError(f"Chromium closed its pipe during {method}")
                self._buffer += chunk
            line, self._buffer = self._buffer.split(b"\0", 1)
            answer = json.loads(line)
            if answer.get("id") != self._id:
                continue  # an event: nothing here subscribes, but the target may still send
            if "error" in answer:
                raise BrowserError(f"{method}: {answer['error']}")
            return answer.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self._send("Runtime.evaluate", {"expression": expression,
                                                 "returnByValue": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def goto(self, url: str, seconds: float = 30) -> None:
        self._send("Page.navigate", {"url": url})
        _until(lambda: self.evaluate("location.href") == url, seconds, url)
        self._wait_loaded(seconds)

    def click(self, selector: str) -> None:
        self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")

    def set_files(self, selector: str, paths: list[Path]) -> None:
        root = self._send("DOM.getDocument")["root"]["nodeId"]
        node = self._send("DOM.querySelector", {"nodeId": root, "selector": selector})
        self._send("DOM.setFileInputFiles", {"nodeId": node["nodeId"],
                                             "files": [str(p) for p in paths]})

    def close(self) -> None:
        with contextlib.suppress(BrowserError, OSError):
            self._send("Browser.close", session=False)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)


class FirefoxMarionette(_PageScript):
    """Headless Firefox ESR over Marionette, in a permanent private window."""

    ELEMENT = "element-6066-11e4-a52e-4f735466cecf"

    def __init__(self, executable: str, profile: Path, log: Path) -> None:
        profile.mkdir(parents=True, exist_ok=True)
        (profile / "user.js").write_text("".join(
            f"user_pref({json.dumps(k)}, {json.dumps(v)});\n"
            for k, v in FIREFOX_PREFS.items()))
        port_file = profile / "MarionetteActivePort"
        port_file.unlink(missing_ok=True)
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [executable, "--headless", "--marionette", "--no-remote",
                 # for the one check below that the window is private
                 "--remote-allow-system-access",
                 "--profile", str(profile), "about:blank"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        try:
            self._connect(port_file)
        except BaseException:
            self.process.kill()
            self.process.wait()
            raise

    def _connect(self, port_file: Path) -> None:
        port = int(_until(lambda: port_file.exists() and port_file.read_text().strip(),
                          START_SECONDS, "Firefox's Marionette port"))
        self._socket = socket.create_connection(("127.0.0.1", port), timeout=START_SECONDS)
        self._reader = self._socket.makefile("rb")
        self._id = 0
        hello = self._read()
        if hello.get("marionetteProtocol") != 3:
            raise BrowserError(f"unexpected Marionette greeting: {hello}")
        self._send("WebDriver:NewSession", {"capabilities": {"alwaysMatch": {}}})
        # The window Marionette drives must be the private one the preference promises.
        self._send("Marionette:SetContext", {"value": "chrome"})
        private = self._send("WebDriver:ExecuteScript", {
            "script": "const { PrivateBrowsingUtils } = ChromeUtils.importESModule("
                      "'resource://gre/modules/PrivateBrowsingUtils.sys.mjs');"
                      "return PrivateBrowsingUtils.isWindowPrivate(window);", "args": []})
        self._send("Marionette:SetContext", {"value": "content"})
        if private.get("value") is not True:
            raise BrowserError("Firefox's window is not private")

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> Any:
        length = b""
        while not length.endswith(b":"):
            byte = self._reader.read(1)
            if not byte:
                raise BrowserError("Firefox closed the Marionette connection")
            length += byte
        return json.loads(self._reader.read(int(length[:-1])))

    def _send(self, command: str, params: dict[str, Any]) -> Any:
        self._id += 1
        data = json.dumps([0, self._id, command, params]).encode()
        self._socket.sendall(str(len(data)).encode() + b":" + data)
        while True:
            kind, number, error, result = self._read()
            if kind == 1 and number == self._id:
                break
        if error:
            raise BrowserError(f"{command}: {error}")
        return result

    def _element(self, selector: str) -> str:
        found = self._send("WebDriver:FindElement", {"using": "css selector",
                                                     "value": selector})
        return str(found["value"][self.ELEMENT])

    def evaluate(self, expression: str) -> Any:
        return self._send("WebDriver:ExecuteScript",
                          {"script": f"return ({expression});", "args": []}).get("value")

    def goto(self, url: str, seconds: float = 30) -> None:
        self._send("WebDriver:Navigate", {"url": url})  # returns once the page has loaded
        self._wait_loaded(seconds)

    def click(self, selector: str) -> None:
        self._send("WebDriver:ElementClick", {"id": self._element(selector)})

    def set_files(self, selector: str, paths: list[Path]) -> None:
        self._send("WebDriver:ElementSendKeys",
                   {"id": self._element(selector), "text": "\n".join(map(str, paths))})

    def close(self) -> None:
        with contextlib.suppress(BrowserError, OSError):
            self._send("Marionette:Quit", {"flags": ["eForceQuit"]})
        with contextlib.suppress(OSError):
            self._socket.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
