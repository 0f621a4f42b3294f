"""In-browser encryption benchmark: encrypt.js in headless Chromium and Firefox ESR against
the server path.

Run from the repository root (after `make install`, which installs OpenPGP.js):

    .venv/bin/python bench/browser_encrypt.py [--sizes 100M,1G] [--repeat 1]

One run sets up a throwaway instance (key pair, `tipbox init`), starts `tipbox serve
source` on loopback and drives each browser (headless; see `--windows`) the way a source
does: get a codename, choose a random file, press Submit.
encrypt.js then reads the file as a stream, encrypts it with OpenPGP.js and uploads the
ciphertext; the server checks and stores it.

Measured per file:
- first piece: from the click to the moment the upload starts (Chromium's own request
  timing through Playwright; otherwise when the server's first piece file appears). encrypt.js
  sends the ciphertext in pieces as it is produced (tipbox/intake/pieces.py), so the rest
  of the encryption overlaps the upload;
- end to end: from the click to the confirmation page;
- memory: every 50 ms, the resident memory (VmRSS, and its anonymous part RssAnon) of
  each browser process and the sum of their proportional set sizes (PSS, so shared pages
  count once), and, for Playwright's Chromium, how much ciphertext it paged into the
  profile's blob_storage folder on disk;
- the server-side path for the same file: GnuPG.encrypt_stream (what the server does
  when JavaScript is off), to the same key, in the server's own GnuPG home.

`--windows` picks the browsers (comma-separated; by default both bare ones):
- `private`, `ordinary`: Chromium through Playwright, off the record or with a profile;
- `firefox-private`: Debian's Firefox ESR, headless in a permanent private window as Tor
  Browser runs, driven as the browser tests drive it (tests/browser/engines.py:
  puppeteer-core over WebDriver BiDi);
- `chromium-bare`, `firefox-bare`: the same two engines driven by bench/bare_browsers.py,
  whose drivers watch no network traffic. The test drivers keep copies of request bodies
  in the browser (Playwright's DevTools Network domain, puppeteer's BiDi network events),
  which a source's browser does not: these give the browser's own memory and speed.

Prints the figures; it writes nothing into docs/.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bare_browsers import ChromiumPipe, FirefoxMarionette
from upload import (
    MIB,
    Instance,
    human_size,
    machine,
    make_instance,
    parse_size,
    positive,
    public_home,
    random_file,
    running_server,
    stop_gpg_agents,
)

from tipbox.crypto.gpg import GnuPG
from tipbox.web.browser_encryption import BrowserEncryption

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
FIREFOX = "/usr/bin/firefox-esr"
SAMPLE_SECONDS = 0.05
PAGE_TIMEOUT_MS = 30 * 60 * 1000


# --- the Chromium process tree ---------------------------------------------------------------

def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def chromium_processes(root: int | None = None) -> dict[int, str]:
    """pid -> process type ("browser", "renderer", "gpu-process", "utility", ...), of the
    Chromium processes under this script, or of ``root`` (a Chromium browser) and its own."""
    result = {}
    for pid in descendants(os.getpid()) if root is None else [root, *descendants(root)]:
        with contextlib.suppress(OSError):
            if "chrom" not in Path(f"/proc/{pid}/comm").read_text():
                continue
            # Child processes rewrite their command line as one space-separated string.
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            kind = re.search(rb"--type=([^\0 ]+)", cmdline)
            sub = re.search(rb"--utility-sub-type=[^\0 ]*?([A-Za-z]+)(?=[\0 ]|$)", cmdline)
            result[pid] = "browser" if kind is None else \
                sub.group(1).decode() if sub else kind.group(1).decode()
    return result


def kib_field(path: str, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def folder_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(dirpath, name)).st_size
    return total


@dataclass
class MemorySampler:
    """Peaks of the browser's memory while the block runs (a background thread)."""

    profile: Path | None
    processes: Callable[[], dict[int, str]] = field(default=lambda: chromium_processes())
    peak_rss_kib: dict[str, int] = field(default_factory=dict)  # per process type, largest
    peak_anon_kib: dict[str, int] = field(default_factory=dict)  # of it, anonymous (heaps)
    peak_pss_total_kib: int = 0
    peak_disk_bytes: int = 0  # the profile's spool folders: OPFS and paged-out Blobs
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(SAMPLE_SECONDS)

    def sample(self) -> None:
        pss_total = 0
        for pid, kind in self.processes().items():
            rss = kib_field(f"/proc/{pid}/status", "VmRSS")
            self.peak_rss_kib[kind] = max(self.peak_rss_kib.get(kind, 0), rss)
            anon = kib_field(f"/proc/{pid}/status", "RssAnon")
            self.peak_anon_kib[kind] = max(self.peak_anon_kib.get(kind, 0), anon)
            pss_total += kib_field(f"/proc/{pid}/smaps_rollup", "Pss")
        self.peak_pss_total_kib = max(self.peak_pss_total_kib, pss_total)
        if self.profile is not None:
            spooled = sum(folder_bytes(self.profile / "Default" / name)
                          for name in ("File System", "blob_storage"))
            self.peak_disk_bytes = max(self.peak_disk_bytes, spooled)


def chromium_profile() -> Path | None:
    for pid, kind in chromium_processes().items():
        if kind == "browser":
            found = re.search(rb"--user-data-dir=([^\0 ]+)",
                              Path(f"/proc/{pid}/cmdline").read_bytes())
            if found:
                return Path(found.group(1).decode())
    return None


# --- one run ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BrowserRun:
    first_piece_s: float
    total_s: float
    memory: MemorySampler
    idle_rss_kib: dict[str, int]
    idle_anon_kib: dict[str, int]


@dataclass(frozen=True)
class ServerRun:
    seconds: float


def clear_stored(instance: Instance, path: Path) -> None:
    """Check the run stored one ciphertext at least as large as ``path``, then remove it
    so the next run starts from an empty store."""
    stored = list((instance.data_dir / "store").glob("*.gpg"))
    if len(stored) != 1 or stored[0].stat().st_size < path.stat().st_size:
        raise RuntimeError(f"expected one ciphertext of at least the file's size: {stored}")
    for item in stored:
        item.unlink()


def browser_run(context: Any, url: str, path: Path, instance: Instance) -> BrowserRun:
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        page.goto(url + "/generate")
        page.click("form[action='/create'] button[type=submit]")
        page.wait_for_url("**/submit")
        page.wait_for_selector("#encrypt-note")  # encrypt.js has taken over the form
        page.set_input_files("#files", str(path))
        idle = MemorySampler(None)
        idle.sample()
        with MemorySampler(chromium_profile()) as memory:
            with page.expect_request(lambda r: is_upload(r.method, r.url),
                                     timeout=PAGE_TIMEOUT_MS) as upload:
                clicked = time.time()
                page.click("#submit-form button[type=submit]")
            request = upload.value
            page.wait_for_selector("text=Thank you. Your submission was received")
            done = time.time()
        started = request.timing["startTime"] / 1000  # epoch ms, from Chromium
        clear_stored(instance, path)
        return BrowserRun(started - clicked, done - clicked, memory,
                          idle.peak_rss_kib, idle.peak_anon_kib)
    finally:
        page.close()


def is_upload(method: str, url: str) -> bool:
    """The request that starts the upload: the first piece, or the one whole request."""
    return (method == "PUT" and "/upload/" in url and "/items/" in url) or \
        (method == "POST" and url.endswith("/submit/encrypted"))


def server_run(instance: Instance, path: Path) -> ServerRun:
    gpg = GnuPG(public_home(instance), agent=False)
    output = instance.root / "server-path.gpg"
    with path.open("rb") as source:
        start = time.perf_counter()
        gpg.encrypt_stream(source, [instance.fingerprint], output, filename=path.name,
                           compress=False)
        seconds = time.perf_counter() - start
    output.unlink()
    return ServerRun(seconds)


# --- browsers driven without Playwright ------------------------------------------------------
#
# Firefox ESR as the browser tests drive it (tests/browser/engines.py: headless, in a
# permanent private window, through puppeteer-core over WebDriver BiDi), and both engines
# through bare_browsers.py, whose drivers watch no network traffic. None of them gives
# request timing, so the upload's start is when the server's first piece file appears in
# the store's temporary folder (polled every 50 ms).

class DrivenTab(Protocol):
    @property
    def pid(self) -> int: ...
    def goto(self, url: str) -> None: ...
    def click(self, selector: str) -> None: ...
    def click_and_load(self, selector: str, seconds: float = 30) -> None: ...
    def set_files(self, selector: str, paths: list[Path]) -> None: ...
    def wait_for(self, selector: str, seconds: float = 30) -> None: ...
    def wait_for_text(self, text: str, seconds: float = 30) -> None: ...
    def close(self) -> None: ...


def named_processes(pids: list[int]) -> dict[int, str]:
    """pid -> process name (firefox-esr, Isolated Web Co, Socket Process, ...)."""
    result = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            result[pid] = Path(f"/proc/{pid}/comm").read_text().strip()
    return result


def driven_tab(kind: str, workdir: Path) -> tuple[DrivenTab, Callable[[], dict[int, str]]]:
    """A new tab of ``kind`` and what lists its browser's processes."""
    if kind == "firefox-private":
        sys.path.insert(0, str(REPO))
        from tests.browser.engines import FirefoxTab

        tab: DrivenTab = FirefoxTab(True, workdir / "firefox-profile", workdir / "firefox.log")
        return tab, lambda: named_processes(descendants(tab.pid))  # under the node bridge
    if kind == "firefox-bare":
        tab = FirefoxMarionette(FIREFOX, workdir / "firefox-bare-profile",
                                workdir / "firefox-bare.log")
        return tab, lambda: named_processes([tab.pid, *descendants(tab.pid)])
    tab = ChromiumPipe(CHROMIUM, workdir / "chromium-bare-profile")
    return tab, lambda: chromium_processes(tab.pid)


def upload_started(instance: Instance) -> bool:
    return any((instance.data_dir / "store" / ".tmp").glob("*.part"))


def driven_run(kind: str, url: str, path: Path, instance: Instance,
               workdir: Path) -> BrowserRun:
    tab, processes = driven_tab(kind, workdir)
    try:
        tab.goto(url + "/generate")
        tab.click_and_load("form[action='/create'] button[type=submit]")
        tab.wait_for("#encrypt-note")
        tab.set_files("#files", [path])
        idle = MemorySampler(None, processes)
        idle.sample()
        with MemorySampler(None, processes) as memory:
            clicked = time.time()
            tab.click("#submit-form button[type=submit]")
            while not upload_started(instance):
                if time.time() - clicked > PAGE_TIMEOUT_MS / 1000:
                    raise RuntimeError("the upload never started")
                time.sleep(SAMPLE_SECONDS)
            started = time.time()
            tab.wait_for_text("Thank you. Your submission was received",
                              seconds=PAGE_TIMEOUT_MS / 1000)
            done = time.time()
    finally:
        tab.close()
    clear_stored(instance, path)
    return BrowserRun(started - clicked, done - clicked, memory,
                      idle.peak_rss_kib, idle.peak_anon_kib)


# --- the report -----------------------------------------------------------------------------

WINDOWS = {
    "private": "a private window (Playwright's default context: off the record, storage in "
               "memory)",
    "ordinary": "an ordinary window (a persistent profile: storage on disk)",
    "firefox-private": "Firefox ESR in a permanent private window (as Tor Browser), driven "
                       "as the browser tests drive it (puppeteer-core over WebDriver BiDi); "
                       "memory is per Firefox process name",
    "chromium-bare": "Chromium in an off-the-record context, driven over a DevTools pipe with "
                     "no Network domain (bench/bare_browsers.py)",
    "firefox-bare": "Firefox ESR in a permanent private window, driven over Marionette with "
                    "no network events (bench/bare_browsers.py)",
}
DRIVEN = ("firefox-private", "chromium-bare", "firefox-bare")
Results = dict[tuple[str, int], list[BrowserRun]]


def mib_s(size: int, seconds: float) -> str:
    return f"{size / MIB / seconds:.1f}"


def rise_mib(run: BrowserRun, kind: str) -> str:
    """The rise of the process's VmRSS over idle, and of its anonymous part (its heaps,
    without mapped files and shared memory)."""
    rss = run.memory.peak_rss_kib.get(kind, 0) - run.idle_rss_kib.get(kind, 0)
    anon = run.memory.peak_anon_kib.get(kind, 0) - run.idle_anon_kib.get(kind, 0)
    return f"{rss / 1024:+.0f} ({anon / 1024:+.0f})"


def report(browser: Results, server: dict[int, list[ServerRun]], argv: Sequence[str],
           versions: dict[str, str], load_at_start: str) -> str:
    lines = [f"Command: `{' '.join(shlex.quote(a) for a in ['.venv/bin/python', *argv])}`", ""]
    lines += ["| Machine | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in machine(load_at_start)]
    lines += [f"| {k} | {v} |" for k, v in versions.items()]
    lines += ["", "Windows: " + "; ".join(f"**{k}**: {v}" for k, v in WINDOWS.items()), ""]
    # encrypt.js sends each item in pieces as OpenPGP.js makes them, so the encryption
    # overlaps the upload: the time to the first piece is only the start-up (keys, proof,
    # the first 2 MiB), and end to end is what a source waits for.
    lines += ["### Throughput (median of runs; MiB/s of plaintext)", "",
              "| Window | Size | First piece after s | End to end s | Browser end to end "
              "MiB/s | Server path (GnuPG.encrypt_stream) MiB/s | Browser end to end / "
              "server path |",
              "|---|---|---|---|---|---|---|"]
    for (window, size), runs in browser.items():
        first = statistics.median(r.first_piece_s for r in runs)
        total = statistics.median(r.total_s for r in runs)
        srv = statistics.median(r.seconds for r in server[size])
        lines.append(f"| {window} | {human_size(size)} | {first:.2f} | {total:.2f} | "
                     f"{mib_s(size, total)} | {mib_s(size, srv)} | {srv / total:.2f} |")
    lines += ["", "### Rise over idle, each run (MiB of VmRSS, and in brackets of its "
              "anonymous part; the page process, where encrypt.js and its Worker run, and the "
              "parent process)", "",
              "| Window | Size | Page process | Parent process | End to end MiB/s |",
              "|---|---|---|---|---|"]
    for (window, size), runs in browser.items():
        page, parent = ("Isolated Web Co", "firefox-esr") if window.startswith("firefox") \
            else ("renderer", "browser")
        lines.append(f"| {window} | {human_size(size)} | "
                     + ", ".join(rise_mib(r, page) for r in runs) + " | "
                     + ", ".join(rise_mib(r, parent) for r in runs) + " | "
                     + ", ".join(mib_s(size, r.total_s) for r in runs) + " |")
    kinds = sorted({k for runs in browser.values() for r in runs for k in r.memory.peak_rss_kib},
                   key=lambda k: (k not in ("renderer", "browser"), k))
    lines += ["", "### The browser's memory (MiB; the largest process of each type, idle → peak "
              "during the run, sampled every 50 ms; worst run)", "",
              "| Window | Size | " + " | ".join(f"{k} RSS" for k in kinds)
              + " | All processes, PSS | Spooled on disk |",
              "|---|---|" + "---|" * (len(kinds) + 2)]
    for (window, size), runs in browser.items():
        run = max(runs, key=lambda r: r.memory.peak_pss_total_kib)
        cells = [f"{run.idle_rss_kib.get(k, 0) / 1024:.0f} → "
                 f"{run.memory.peak_rss_kib.get(k, 0) / 1024:.0f}" for k in kinds]
        lines.append(f"| {window} | {human_size(size)} | " + " | ".join(cells)
                     + f" | {run.memory.peak_pss_total_kib / 1024:.0f}"
                     + f" | {run.memory.peak_disk_bytes / MIB:.0f} |")
    return "\n".join(lines)


@contextlib.contextmanager
def window(playwright: Any, kind: str, workdir: Path) -> Iterator[Any]:
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    if kind == "ordinary":
        context = playwright.chromium.launch_persistent_context(
            str(workdir / "chromium-profile"), executable_path=CHROMIUM, headless=True,
            args=args)
        try:
            yield context
        finally:
            context.close()
        return
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
    try:
        context = chromium.new_context()
        yield context
        context.close()
    finally:
        chromium.close()


def run(sizes: Sequence[int], repeat: int, windows: Sequence[str], workdir: Path) -> tuple[
        Results, dict[int, list[ServerRun]], dict[str, str]]:
    from playwright.sync_api import sync_playwright

    instance = make_instance(workdir)
    browser: Results = {}
    server: dict[int, list[ServerRun]] = {}
    versions = {"OpenPGP.js": BrowserEncryption.load(
        REPO / "static", REPO / "package-lock.json").openpgp_version or "?"}
    try:
        with running_server(instance) as srv, sync_playwright() as playwright:
            url = f"http://127.0.0.1:{srv.port}"
            for size in sizes:
                path = random_file(workdir, size)
                if any(w.startswith("firefox") for w in windows):
                    versions["Firefox"] = subprocess.run(
                        [FIREFOX, "--version"], capture_output=True, text=True,
                        check=True).stdout.strip()
                for kind in (w for w in windows if w in DRIVEN):
                    for i in range(repeat):
                        print(f"{human_size(size)}, {kind}, run {i + 1}/{repeat}", flush=True)
                        browser.setdefault((kind, size), []).append(
                            driven_run(kind, url, path, instance, workdir))
                for kind in (w for w in windows if w not in DRIVEN):
                    with window(playwright, kind, workdir) as context:
                        versions["Chromium"] = context.browser.version if context.browser \
                            else versions.get("Chromium", "?")
                        for i in range(repeat):
                            print(f"{human_size(size)}, {kind} window, run {i + 1}/{repeat}",
                                  flush=True)
                            browser.setdefault((kind, size), []).append(
                                browser_run(context, url, path, instance))
                for i in range(repeat):
                    print(f"{human_size(size)}, server path, run {i + 1}/{repeat}", flush=True)
                    server.setdefault(size, []).append(server_run(instance, path))
                path.unlink()
    finally:
        stop_gpg_agents(workdir)
    return browser, server, versions


def windows_list(text: str) -> list[str]:
    chosen = text.split(",")
    unknown = [w for w in chosen if w not in WINDOWS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown window(s) {', '.join(unknown)}: choose from "
                                         + ", ".join(WINDOWS))
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100M,1G",
                        type=lambda s: [parse_size(x) for x in s.split(",")])
    parser.add_argument("--repeat", type=positive, default=1)
    parser.add_argument("--windows", default="chromium-bare,firefox-bare", type=windows_list,
                        help="comma-separated, of: " + ", ".join(WINDOWS))
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where to put the random files (default: a temp folder)")
    args = parser.parse_args(args_list)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: sudo apt-get install chromium", file=sys.stderr)
        return 2
    if any(w.startswith("firefox") for w in args.windows) and not Path(FIREFOX).exists():
        print(f"{FIREFOX} is missing: sudo apt-get install firefox-esr", file=sys.stderr)
        return 2
    if not BrowserEncryption.load(REPO / "static", REPO / "package-lock.json").enabled:
        print("OpenPGP.js is not installed: run `make install` first", file=sys.stderr)
        return 2
    load_at_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="tipbox-bench-browser-",
                                     dir=args.workdir) as tmp:
        browser, server, versions = run(args.sizes, args.repeat, args.windows, Path(tmp))
    print()
    print(report(browser, server, ["bench/browser_encrypt.py", *args_list], versions,
                 load_at_start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
