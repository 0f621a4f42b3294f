"""In-browser encryption benchmark: encrypt.js in headless Chromium against the server path.

Run from the repository root (after `make install`, which installs OpenPGP.js):

    .venv/bin/python bench/browser_encrypt.py [--sizes 100M,1G] [--repeat 1]

One run sets up a throwaway instance (key pair, `tipbox init`), starts `tipbox serve
source` on loopback and drives Debian's Chromium (/usr/bin/chromium, headless, through
Playwright) the way a source does: get a codename, choose a random file, press Submit.
encrypt.js then reads the file as a stream, encrypts it with OpenPGP.js and uploads the
ciphertext; the server checks and stores it.

Measured per file:
- browser encryption: from the click to the moment the upload starts (Chromium's own
  request timing): the first piece's request (encrypt.js sends the ciphertext in pieces
  as it is produced, tipbox/intake/pieces.py), or, from a page without pieces, the one
  request, sent once encrypt.js has the whole ciphertext;
- upload + check + store: from then until the confirmation page (with pieces, the
  encryption of the rest overlaps it);
- memory: every 50 ms, the resident memory (VmRSS) of each Chromium process and the sum of
  their proportional set sizes (PSS, so shared pages count once), and how much ciphertext
  Chromium paged into the profile's blob_storage folder on disk;
- the server-side path for the same file: GnuPG.encrypt_stream (what the server does
  when JavaScript is off), to the same key, in the server's own GnuPG home.

`--windows firefox-private` (alone or beside `private,ordinary`) measures Debian's Firefox
ESR too, headless in a permanent private window as Tor Browser runs, driven as the browser
tests drive it (tests/browser/engines.py: puppeteer-core over WebDriver BiDi).

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
from typing import Any

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


def chromium_processes() -> dict[int, str]:
    """pid -> process type ("browser", "renderer", "gpu-process", "utility", ...)."""
    result = {}
    for pid in descendants(os.getpid()):
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
    encrypt_s: float
    upload_s: float
    total_s: float
    memory: MemorySampler
    idle_rss_kib: dict[str, int]


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
        return BrowserRun(started - clicked, done - started, done - clicked, memory,
                          idle.peak_rss_kib)
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


# --- Firefox ESR -------------------------------------------------------------------------------
#
# Driven as the browser tests drive it (tests/browser/engines.py): headless, in a permanent
# private window, through puppeteer-core over WebDriver BiDi. BiDi gives no request timing,
# so the upload's start is when the bridge first lists the POST (polled every 50 ms).

def firefox_processes(bridge_pid: int) -> dict[int, str]:
    """pid -> process name (firefox-esr, Isolated Web Co, Socket Process, ...)."""
    result = {}
    for pid in descendants(bridge_pid):
        with contextlib.suppress(OSError):
            result[pid] = Path(f"/proc/{pid}/comm").read_text().strip()
    return result


def firefox_run(url: str, path: Path, instance: Instance, workdir: Path) -> BrowserRun:
    sys.path.insert(0, str(REPO))
    from tests.browser.engines import FirefoxTab

    tab = FirefoxTab(True, workdir / "firefox-profile", workdir / "firefox.log")
    try:
        tab.goto(url + "/generate")
        tab.click_and_load("form[action='/create'] button[type=submit]")
        tab.wait_for("#encrypt-note")
        tab.set_files("#files", [path])
        processes = lambda: firefox_processes(tab.pid)  # noqa: E731
        idle = MemorySampler(None, processes)
        idle.sample()
        with MemorySampler(None, processes) as memory:
            clicked = time.time()
            tab.click("#submit-form button[type=submit]")
            while not any(is_upload(method, target) for method, target in tab.request_log()):
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
    return BrowserRun(started - clicked, done - started, done - clicked, memory,
                      idle.peak_rss_kib)


# --- the report -----------------------------------------------------------------------------

WINDOWS = {
    "private": "a private window (Playwright's default context: off the record, storage in "
               "memory)",
    "ordinary": "an ordinary window (a persistent profile: storage on disk)",
    "firefox-private": "Firefox ESR in a permanent private window (as Tor Browser); memory "
                       "is per Firefox process name",
}
Results = dict[tuple[str, int], list[BrowserRun]]


def mib_s(size: int, seconds: float) -> str:
    return f"{size / MIB / seconds:.1f}"


def report(browser: Results, server: dict[int, list[ServerRun]], argv: Sequence[str],
           versions: dict[str, str], load_at_start: str) -> str:
    lines = [f"Command: `{' '.join(shlex.quote(a) for a in ['.venv/bin/python', *argv])}`", ""]
    lines += ["| Machine | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in machine(load_at_start)]
    lines += [f"| {k} | {v} |" for k, v in versions.items()]
    lines += ["", "Windows: " + "; ".join(f"**{k}**: {v}" for k, v in WINDOWS.items()), ""]
    lines += ["### Throughput (median of runs; MiB/s of plaintext)", "",
              "| Window | Size | Browser encryption MiB/s | Browser encryption s | Upload + "
              "check + store s | Browser end to end MiB/s | Server path "
              "(GnuPG.encrypt_stream) MiB/s | Browser / server encryption |",
              "|---|---|---|---|---|---|---|---|"]
    for (window, size), runs in browser.items():
        enc = statistics.median(r.encrypt_s for r in runs)
        up = statistics.median(r.upload_s for r in runs)
        total = statistics.median(r.total_s for r in runs)
        srv = statistics.median(r.seconds for r in server[size])
        lines.append(f"| {window} | {human_size(size)} | {mib_s(size, enc)} | {enc:.2f} | "
                     f"{up:.2f} | {mib_s(size, total)} | {mib_s(size, srv)} | "
                     f"{srv / enc:.2f} |")
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
                if "firefox-private" in windows:
                    versions["Firefox"] = subprocess.run(
                        ["/usr/bin/firefox-esr", "--version"], capture_output=True, text=True,
                        check=True).stdout.strip()
                for i in range(repeat if "firefox-private" in windows else 0):
                    print(f"{human_size(size)}, Firefox private window, run {i + 1}/{repeat}",
                          flush=True)
                    browser.setdefault(("firefox-private", size), []).append(
                        firefox_run(url, path, instance, workdir))
                for kind in (w for w in windows if w != "firefox-private"):
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


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100M,1G",
                        type=lambda s: [parse_size(x) for x in s.split(",")])
    parser.add_argument("--repeat", type=positive, default=1)
    parser.add_argument("--windows", default="private,ordinary",
                        type=lambda s: [w for w in s.split(",") if w in WINDOWS])
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where to put the random files (default: a temp folder)")
    args = parser.parse_args(args_list)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: sudo apt-get install chromium", file=sys.stderr)
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
