"""Upload benchmark: the real source server against plain ``gpg --encrypt``.

Run from the repository root:

    .venv/bin/python bench/upload.py [--sizes 10M,1G] [--repeat 3] [--no-write]

One run sets up a throwaway instance (key pair, keys folder, data folder, ``tipbox init``),
starts ``tipbox serve source`` on a free loopback port, creates a source over HTTP and
uploads random files of each size as multipart/form-data, streamed from disk. Each upload
is paired with the gpg command line on the same file (the baseline). Around each one the
script records the gunicorn worker's resident memory (sampled in a thread), the CPU time
and page faults of the worker, of gpg and of itself, and the CPU the rest of the machine
used meanwhile, and checks that one ciphertext of about the right size reached the store.
Results replace the previous section of docs/benchmarks.md.

The HTTP client uses only the standard library, as a stand-in for a browser; tipbox is
imported for nothing but making the throwaway key pair. The server runs the tipbox next to
this script (PYTHONPATH), so a patched copy of the repository benchmarks itself.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import html.parser
import http.client
import http.cookies
import importlib.metadata
import os
import platform
import re
import resource
import secrets
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from tipbox.crypto.gpg import GnuPG

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "benchmarks.md"
MIB = 1024 * 1024
# Client read size and socket send size: large enough that the client costs little CPU
# (it shares the machine with the server and gpg), small enough to stay a stream.
CLIENT_BLOCK = 1 * MIB
SAMPLE_SECONDS = 0.02
THROUGHPUT_GOAL = 0.9
RSS_GOAL_MIB = 64
SECTION_START = "<!-- bench/upload.py: generated section, replaced on every run -->"
SECTION_END = "<!-- end of bench/upload.py section -->"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- /proc helpers --------------------------------------------------------------------------

def proc_status_kib(pid: int, key: str) -> int | None:
    """A ``kB`` line of /proc/<pid>/status (VmRSS, VmHWM), or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


@dataclass(frozen=True)
class ProcTimes:
    """CPU seconds and minor page faults of a process and of its reaped children.

    python-gnupg waits for its gpg process, so gpg's figures show up in the worker's
    children figures once an upload is answered.
    """

    user: float
    system: float
    faults: int
    children_user: float
    children_system: float
    children_faults: int

    @classmethod
    def of(cls, pid: int) -> ProcTimes:
        with open(f"/proc/{pid}/stat") as fh:
            # The command name may hold spaces; the numbered fields follow its last paren.
            fields = [int(f) for f in fh.read().rsplit(")", 1)[1].split()[1:15]]
        minflt, cminflt, utime, stime, cutime, cstime = (fields[i] for i in (6, 7, 10, 11,
                                                                              12, 13))
        return cls(utime / CLK_TCK, stime / CLK_TCK, minflt, cutime / CLK_TCK,
                   cstime / CLK_TCK, cminflt)

    @classmethod
    def of_children(cls) -> ProcTimes:
        """This process's reaped children, from getrusage (the baseline gpg)."""
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return cls(0, 0, 0, usage.ru_utime, usage.ru_stime, usage.ru_minflt)

    def __sub__(self, other: ProcTimes) -> ProcTimes:
        return ProcTimes(*(a - b for a, b in zip(dataclasses.astuple(self),
                                                 dataclasses.astuple(other), strict=True)))


def proc_comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def child_pids(pid: int) -> list[int]:
    """Children of every thread of ``pid`` (gpg is started from a worker thread, and
    /proc/<pid>/task/<tid>/children lists only that thread's children)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for tid in tasks:
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended while we looked
    return found


def machine_busy_seconds() -> float:
    """CPU seconds every CPU of the machine has spent busy since boot (not idle, not
    waiting for I/O, not stolen by the hypervisor), from /proc/stat."""
    with open("/proc/stat") as fh:
        user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in
                                                            fh.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / CLK_TCK


class Sampler:
    """Calls :meth:`sample` once on entry, every ``interval`` seconds on a thread of its
    own, and once on exit: the scaffolding every bench's probe of a process shares."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__,
                                        daemon=True)

    def __enter__(self) -> Self:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        raise NotImplementedError


class RssSampler(Sampler):
    """Peak VmRSS of one process and of its ``gpg`` children."""

    def __init__(self, pid: int, interval: float = SAMPLE_SECONDS) -> None:
        super().__init__(interval)
        self.pid = pid
        self.peak_kib = 0
        self.gpg_peak_kib = 0
        self.samples = 0

    def sample(self) -> None:
        rss = proc_status_kib(self.pid, "VmRSS")
        if rss is not None:
            self.peak_kib = max(self.peak_kib, rss)
            self.samples += 1
        for child in child_pids(self.pid):
            if proc_comm(child) == "gpg":
                self.gpg_peak_kib = max(self.gpg_peak_kib, proc_status_kib(child, "VmRSS") or 0)


# --- the instance under test -----------------------------------------------------------------

@dataclass(frozen=True)
class Instance:
    root: Path
    data_dir: Path
    keys_dir: Path
    secret_home: Path
    fingerprint: str
    env: dict[str, str]


def tipbox_command() -> list[str]:
    script = Path(sys.executable).with_name("tipbox")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tipbox.cli"]


def make_instance(root: Path) -> Instance:
    """Throwaway newsroom key pair, keys folder and data folder, initialised."""
    secret_home = root / "newsroom-gnupg"
    gpg = GnuPG(secret_home)
    fpr = gpg.generate_key("tipbox bench newsroom", "bench@tipbox.invalid", passphrase=None,
                           expire="1d")
    keys_dir = root / "keys"
    keys_dir.mkdir()
    (keys_dir / "newsroom.asc").write_text(str(gpg.export_public(fpr)))
    data_dir = root / "data"
    # No per-source daily share: the bench sends many GiB as one source.
    env = dict(os.environ, TIPBOX_DATA_DIR=str(data_dir), TIPBOX_KEYS_DIR=str(keys_dir),
               TIPBOX_SOURCE_DAILY_BYTES="0",
               # The server must run the tipbox next to this script, even from a copy.
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO),
                                                        os.environ.get("PYTHONPATH")])))
    # The bench holds the secret key itself, so the key ceremony (challenge, proof of
    # possession) would prove nothing here: trust the keys folder, as the tests do.
    subprocess.run([*tipbox_command(), "init", "--trust-keys-folder"], env=env, check=True,
                   capture_output=True)
    return Instance(root, data_dir, keys_dir, secret_home, fpr, env)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    worker: int = 0


@contextlib.contextmanager
def running_server(instance: Instance) -> Iterator[Server]:
    port = free_port()
    log = instance.root / "server.log"
    with log.open("wb") as log_fh:
        process = subprocess.Popen(
            [*tipbox_command(), "serve", "source", "--host", "127.0.0.1", "--port", str(port)],
            env=instance.env, stdout=log_fh, stderr=subprocess.STDOUT)
    server = Server(process, port, log)
    try:
        wait_until_ready(server)
        workers = child_pids(process.pid)
        if len(workers) != 1:
            raise RuntimeError(f"expected one gunicorn worker, found {workers}")
        server.worker = workers[0]
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_ready(server: Server, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited:\n{server.log.read_text()}")
        # Ready means the worker answers, not just that the master has bound the port.
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            conn.request("GET", "/")
            if conn.getresponse().status == 200 and child_pids(server.process.pid):
                conn.close()
                return
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer within {timeout} s:\n{server.log.read_text()}")


def public_home(instance: Instance) -> Path:
    """The GnuPG home the server built from the newsroom's public key and encrypts with
    (the newest, should an older key set have left one behind)."""
    homes = sorted((p.parent for p in (instance.data_dir / "gnupg").glob("home-*/ready")),
                   key=lambda home: home.stat().st_mtime)
    if not homes:
        raise RuntimeError(f"no public GnuPG home under {instance.data_dir / 'gnupg'}")
    return homes[-1]


def stop_gpg_agents(root: Path) -> None:
    """Key generation starts a gpg-agent in the newsroom's home; end it with the run."""
    for home in {p.parent for p in root.rglob("pubring.kbx")}:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"],
                       capture_output=True, check=False)


# --- a source, over plain HTTP ------------------------------------------------------------------

class _HiddenInputs(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "input" and values.get("type") == "hidden" and values.get("name"):
            self.fields[values["name"] or ""] = values.get("value") or ""


def hidden_inputs(page: str) -> dict[str, str]:
    parser = _HiddenInputs()
    parser.feed(page)
    return parser.fields


class SourceClient:
    """What a browser with JavaScript off does, with one cookie jar, over http.client."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def _connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=600,
                                          blocksize=CLIENT_BLOCK)

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return headers

    def _keep_cookies(self, response: http.client.HTTPResponse) -> None:
        for raw in response.headers.get_all("Set-Cookie") or []:
            jar = http.cookies.SimpleCookie()
            jar.load(raw)
            for name, morsel in jar.items():
                self.cookies[name] = morsel.value

    def get(self, path: str) -> str:
        conn = self._connection()
        try:
            conn.request("GET", path, headers=self._headers())
            response = conn.getresponse()
            body = response.read().decode("utf-8")
            self._keep_cookies(response)
        finally:
            conn.close()
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}")
        return body

    def post_form(self, path: str, fields: dict[str, str]) -> int:
        conn = self._connection()
        try:
            conn.request("POST", path, body=urllib.parse.urlencode(fields),
                         headers=self._headers(
                             {"Content-Type": "application/x-www-form-urlencoded"}))
            response = conn.getresponse()
            response.read()
            self._keep_cookies(response)
        finally:
            conn.close()
        return response.status

    def new_codename(self) -> None:
        fields = hidden_inputs(self.get("/generate"))
        status = self.post_form("/create", {k: fields[k] for k in ("csrf_token", "codename",
                                                                   "mac")})
        if status != 302:
            raise RuntimeError(f"POST /create answered {status}")

    def upload(self, path: Path, filename: str) -> tuple[int, float]:
        """Post the submission form with one file streamed from disk.

        Returns the status and the wall time from the first byte sent to the whole answer
        read, which includes encryption, fsync and the database commit on the server.
        """
        token = hidden_inputs(self.get("/submit"))["csrf_token"]
        body = MultipartBody(token, path, filename)
        conn = self._connection()
        try:
            start = time.perf_counter()
            # If the server answers early (an error) and closes, read its answer below.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                conn.request("POST", "/submit", body=body, headers=self._headers({
                    "Content-Type": f"multipart/form-data; boundary={body.boundary}",
                    "Content-Length": str(body.length)}))
            response = conn.getresponse()
            response.read()
            elapsed = time.perf_counter() - start
            self._keep_cookies(response)
        finally:
            body.close()
            conn.close()
        return response.status, elapsed


class MultipartBody:
    """A file-like request body: form fields, then the file read from disk, then the end.

    The CSRF token comes first because the server checks it before encrypting a byte.
    The length is known up front, so the request carries Content-Length, as browsers do.
    """

    def __init__(self, csrf_token: str, path: Path, filename: str) -> None:
        self.boundary = "----tipboxbench" + secrets.token_hex(16)
        head = "".join([
            self._field("csrf_token", csrf_token),
            self._field("message", ""),  # browsers send an empty message field too
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="files"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n",
        ]).encode()
        tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.length = len(head) + path.stat().st_size + len(tail)
        self._file = path.open("rb")
        self._pieces: Iterator[bytes] = iter([head])
        self._tail = tail

    def _field(self, name: str, value: str) -> str:
        return (f"--{self.boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                f"{value}\r\n")

    def read(self, size: int = -1) -> bytes:
        head = next(self._pieces, b"")
        if head:
            return head
        if self._file.closed:
            return b""
        data = self._file.read(size if size > 0 else CLIENT_BLOCK)
        if data:
            return data
        self._file.close()
        return self._tail

    def close(self) -> None:
        self._file.close()


# --- one measured upload, one measured baseline ------------------------------------------------

@dataclass
class UploadRun:
    seconds: float
    rss_before_kib: int
    rss_peak_kib: int
    hwm_before_kib: int
    hwm_after_kib: int
    gpg_peak_kib: int
    worker: ProcTimes  # its own figures are the worker's; its children's, gpg's
    client_cpu: float
    others_cpu: float  # CPU seconds other processes on the machine used meanwhile
    ciphertext_bytes: int


@dataclass
class BaselineRun:
    seconds: float
    gpg_peak_kib: int
    gpg: ProcTimes
    others_cpu: float
    fsync_seconds: float  # not in ``seconds``: the server fsyncs, the gpg command does not
    ciphertext_bytes: int


@dataclass
class SizeResult:
    size: int
    uploads: list[UploadRun] = field(default_factory=list)
    baselines: list[BaselineRun] = field(default_factory=list)

    @property
    def server_mib_s(self) -> float:
        return self.size / MIB / statistics.median(r.seconds for r in self.uploads)

    @property
    def baseline_mib_s(self) -> float:
        return self.size / MIB / statistics.median(r.seconds for r in self.baselines)

    @property
    def ratio(self) -> float:
        return self.server_mib_s / self.baseline_mib_s

    @property
    def rss_peak_kib(self) -> int:
        return max(r.rss_peak_kib for r in self.uploads)


def store_files(instance: Instance) -> set[Path]:
    return set((instance.data_dir / "store").glob("*.gpg"))


def check_ciphertext(size: int, ciphertext: int, what: str) -> None:
    # No compression: the ciphertext is the plaintext plus packet headers, a session key
    # packet per recipient and the MDC, so a few hundred bytes, whatever the size.
    if not size < ciphertext < size + 4096 + size // 1000:
        raise RuntimeError(f"{what}: {ciphertext} bytes of ciphertext for {size} of plaintext")


def measure_upload(client: SourceClient, server: Server, instance: Instance,
                   path: Path, size: int) -> UploadRun:
    before_files = store_files(instance)
    hwm_before = proc_status_kib(server.worker, "VmHWM") or 0
    rss_before = proc_status_kib(server.worker, "VmRSS") or 0
    worker_before = ProcTimes.of(server.worker)
    busy = machine_busy_seconds()
    client_cpu = time.process_time()
    with RssSampler(server.worker) as sampler:
        status, seconds = client.upload(path, "bench.bin")
    client_cpu = time.process_time() - client_cpu
    worker = ProcTimes.of(server.worker) - worker_before
    busy = machine_busy_seconds() - busy
    if status != 303:
        raise RuntimeError(f"upload of {size} bytes answered {status}:\n"
                           f"{server.log.read_text()[-2000:]}")
    new = store_files(instance) - before_files
    if len(new) != 1:
        raise RuntimeError(f"expected one new ciphertext in the store, found {len(new)}")
    stored = new.pop()
    ciphertext = stored.stat().st_size
    check_ciphertext(size, ciphertext, "server")
    stored.unlink()  # nothing reads it; keeps a long run from filling the disk
    return UploadRun(
        seconds=seconds, rss_before_kib=rss_before, rss_peak_kib=sampler.peak_kib,
        hwm_before_kib=hwm_before,
        hwm_after_kib=proc_status_kib(server.worker, "VmHWM") or 0,
        gpg_peak_kib=sampler.gpg_peak_kib, worker=worker, client_cpu=client_cpu,
        others_cpu=busy - worker.user - worker.system - worker.children_user
        - worker.children_system - client_cpu, ciphertext_bytes=ciphertext)


def baseline_command(home: Path, fingerprint: str, path: Path, output: Path) -> list[str]:
    return ["gpg", "--homedir", str(home), "--batch", "--trust-model", "always",
            "--compress-algo", "none", "-r", fingerprint, "--encrypt", "-o", str(output),
            str(path)]


def measure_baseline(home: Path, fingerprint: str, path: Path, size: int) -> BaselineRun:
    output = path.with_suffix(".baseline.gpg")
    output.unlink(missing_ok=True)
    before = ProcTimes.of_children()
    busy = machine_busy_seconds()
    start = time.perf_counter()
    process = subprocess.Popen(baseline_command(home, fingerprint, path, output),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with RssSampler(process.pid) as sampler:
        _, stderr = process.communicate()
    seconds = time.perf_counter() - start
    gpg = ProcTimes.of_children() - before
    busy = machine_busy_seconds() - busy
    if process.returncode != 0:
        raise RuntimeError(f"baseline gpg failed: {stderr.decode(errors='replace')}")
    # What the server's store adds before it answers: the ciphertext made durable.
    start = time.perf_counter()
    fd = os.open(output, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_seconds = time.perf_counter() - start
    ciphertext = output.stat().st_size
    check_ciphertext(size, ciphertext, "baseline")
    output.unlink()
    others = busy - gpg.children_user - gpg.children_system
    return BaselineRun(seconds, sampler.peak_kib, gpg, others, fsync_seconds, ciphertext)


def random_file(directory: Path, size: int) -> Path:
    """``size`` random bytes (incompressible, like most leaked documents), written in
    chunks so the benchmark never holds a whole file in memory."""
    path = directory / f"random-{size}.bin"
    with path.open("wb") as fh:
        left = size
        while left:
            chunk = os.urandom(min(left, 4 * MIB))
            fh.write(chunk)
            left -= len(chunk)
    return path


# --- the report -------------------------------------------------------------------------------

def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+)([KMG]?)(?:i?B)?", text.strip(), re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 10M, 1G)")
    factor = {"": 1, "K": 1024, "M": MIB, "G": 1024 * MIB}[match.group(2).upper()]
    return int(match.group(1)) * factor


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return int(text)


def human_size(size: int) -> str:
    for unit, factor in (("GiB", 1024 * MIB), ("MiB", MIB), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} B"


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def median_s(values: Iterable[float]) -> str:
    return f"{statistics.median(values):.2f}"


def cpu(user: Iterable[float], system: Iterable[float]) -> str:
    return f"{statistics.median(user):.2f} + {statistics.median(system):.2f}"


def rate(mib_s: float) -> str:
    return f"{mib_s:.1f}" if mib_s >= 10 else f"{mib_s:.3g}"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine(load_at_start: str) -> list[tuple[str, str]]:
    meminfo = Path("/proc/meminfo").read_text()
    mem_kib = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))  # type: ignore[union-attr]
    model = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    gpg_version = subprocess.run(["gpg", "--version"], capture_output=True, text=True,
                                 check=True).stdout.splitlines()
    libs = ", ".join(f"{name} {importlib.metadata.version(name)}"
                     for name in ("gunicorn", "Werkzeug", "Flask", "python-gnupg"))
    return [
        ("Date (UTC)", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")),
        ("CPUs (`nproc`)", str(os.cpu_count())),
        ("CPU", model.group(1).strip() if model else platform.processor() or "unknown"),
        ("Memory", f"{mem_kib / 1024 / 1024:.1f} GiB"),
        ("Kernel", platform.release()),
        ("Python", platform.python_version()),
        ("GnuPG", f"{gpg_version[0]} ({gpg_version[1]})"),
        ("Libraries", libs),
        # Client, server and gpg share the machine: anything else running skews the times.
        ("Load average (1, 5, 15 min) at start → end", f"{load_at_start} → {load_average()}"),
    ]


def throughput_table(results: Sequence[SizeResult], repeat: int) -> list[str]:
    lines = [f"### Throughput (median of {repeat})", "",
             "| Size | Server MiB/s | Baseline gpg MiB/s | Server / baseline | Goal ≥ "
             f"{THROUGHPUT_GOAL} | Server runs (s) | Baseline runs (s) |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {human_size(r.size)} | {rate(r.server_mib_s)} | {rate(r.baseline_mib_s)} "
            f"| {r.ratio:.2f} | {'met' if r.ratio >= THROUGHPUT_GOAL else '**missed**'} "
            f"| {', '.join(f'{u.seconds:.2f}' for u in r.uploads)} "
            f"| {', '.join(f'{b.seconds:.2f}' for b in r.baselines)} |")
    return lines


def time_tables(results: Sequence[SizeResult]) -> list[str]:
    lines = ["### Where the time goes (median per upload, seconds)", "",
             "CPU time is user + system. Worker: the gunicorn worker itself (HTTP, multipart, "
             "the pipe into gpg). gpg: the process it started. Client: this script. Faults: "
             "the worker's minor page faults, in thousands. Others: CPU that the rest of the "
             "machine used meanwhile.", "",
             "| Size | Wall | Worker CPU | Worker faults (k) | gpg CPU | Client CPU | Others |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        ups = r.uploads
        lines.append(" | ".join([
            f"| {human_size(r.size)}", median_s(u.seconds for u in ups),
            cpu((u.worker.user for u in ups), (u.worker.system for u in ups)),
            f"{statistics.median(u.worker.faults for u in ups) / 1000:.0f}",
            cpu((u.worker.children_user for u in ups), (u.worker.children_system for u in ups)),
            median_s(u.client_cpu for u in ups), median_s(u.others_cpu for u in ups) + " |"]))
    lines += ["", "The baseline, for comparison. fsync: making its ciphertext durable "
              "afterwards (not in its time), which the server does before it answers.", "",
              "| Size | Wall | gpg CPU | fsync | Others |", "|---|---|---|---|---|"]
    for r in results:
        bls = r.baselines
        lines.append(" | ".join([
            f"| {human_size(r.size)}", median_s(b.seconds for b in bls),
            cpu((b.gpg.children_user for b in bls), (b.gpg.children_system for b in bls)),
            median_s(b.fsync_seconds for b in bls), median_s(b.others_cpu for b in bls) + " |"]))
    return lines


def memory_table(results: Sequence[SizeResult]) -> list[str]:
    lines = [f"### Memory of the gunicorn worker (MiB, VmRSS sampled every "
             f"{SAMPLE_SECONDS * 1000:.0f} ms)", "",
             "| Size | RSS before | Peak RSS during | VmHWM before → after | gpg peak RSS "
             "(server) | gpg peak RSS (baseline) |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {human_size(r.size)} | {mib(min(u.rss_before_kib for u in r.uploads))} "
            f"| {mib(r.rss_peak_kib)} "
            f"| {mib(r.uploads[0].hwm_before_kib)} → {mib(r.uploads[-1].hwm_after_kib)} "
            f"| {mib(max(u.gpg_peak_kib for u in r.uploads))} "
            f"| {mib(max(b.gpg_peak_kib for b in r.baselines))} |")
    if len(results) > 1:
        small, large = min(results, key=lambda r: r.size), max(results, key=lambda r: r.size)
        diff = (large.rss_peak_kib - small.rss_peak_kib) / 1024
        lines += ["", f"Peak RSS, {human_size(large.size)} minus {human_size(small.size)}: "
                  f"**{diff:.1f} MiB** (goal < {RSS_GOAL_MIB} MiB: "
                  f"{'met' if diff < RSS_GOAL_MIB else '**missed**'})."]
    return lines


def render(results: Sequence[SizeResult], argv: Sequence[str], repeat: int,
           load_at_start: str) -> str:
    command = shlex.join([".venv/bin/python", "bench/upload.py", *argv])
    lines = [SECTION_START, "", "## Latest run", "", f"Command: `{command}`", "",
             "| Machine | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in machine(load_at_start)]
    for table in (throughput_table(results, repeat), time_tables(results),
                  memory_table(results)):
        lines += ["", *table]
    lines += ["", SECTION_END, ""]
    return "\n".join(lines)


INTRO = f"""\
# Benchmarks

## Uploads: `bench/upload.py`

What is measured: the real source interface (`tipbox serve source`, gunicorn gthread, one
worker) on loopback, receiving one random (incompressible) file per submission as
multipart/form-data streamed from disk by a standard-library client, with the CSRF token
as the first field. The time runs from the first byte sent to the end of the `303` answer,
so it includes streaming through `gpg --encrypt`, the fsync of the ciphertext and the
database commit. The baseline is the gpg command line on the same file, to the same key,
in the same GnuPG home:

    gpg --homedir HOME --batch --trust-model always --compress-algo none \\
        -r FPR --encrypt -o OUT FILE

Goals: server throughput at least {THROUGHPUT_GOAL} × the baseline's, and a worker whose
peak resident memory during a 1 GiB upload is within {RSS_GOAL_MIB} MiB of its peak during
a 10 MiB one (memory must not grow with the upload). Client, server and gpg share the
machine below, so on few cores they compete for CPU.

Each run replaces the section below.

"""


def write_report(section: str, path: Path = DOCS) -> None:
    text = path.read_text() if path.exists() else INTRO
    if SECTION_START in text and SECTION_END in text:
        before = text.split(SECTION_START, 1)[0]
        after = text.split(SECTION_END, 1)[1].strip("\n")
        # Hand-written notes after the section (findings, say) stay where they are.
        text = before + section + ("\n" + after + "\n" if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# --- main ---------------------------------------------------------------------------------------

def measure_size(client: SourceClient, server: Server, instance: Instance, home: Path,
                 size: int, repeat: int) -> SizeResult:
    result = SizeResult(size)
    path = random_file(instance.root, size)
    try:
        # Alternate server and baseline so that drift (page cache, neighbours on a VM)
        # hits both alike; start each with no dirty pages, so neither pays for the
        # writeback of the other's ciphertext.
        for i in range(repeat):
            os.sync()
            result.uploads.append(measure_upload(client, server, instance, path, size))
            os.sync()
            result.baselines.append(measure_baseline(home, instance.fingerprint, path, size))
            u, b = result.uploads[-1], result.baselines[-1]
            print(f"{human_size(size)} #{i + 1}: server {size / MIB / u.seconds:.1f} MiB/s, "
                  f"baseline {size / MIB / b.seconds:.1f} MiB/s, worker peak RSS "
                  f"{mib(u.rss_peak_kib)} MiB, gpg {mib(u.gpg_peak_kib)} MiB", flush=True)
    finally:
        path.unlink()
    return result


def run(sizes: Sequence[int], repeat: int, workdir: Path | None) -> list[SizeResult]:
    with tempfile.TemporaryDirectory(prefix="tipbox-bench-", dir=workdir) as tmp:
        root = Path(tmp)
        try:
            instance = make_instance(root)
            with running_server(instance) as server:
                print(f"server on port {server.port}, worker pid {server.worker}", flush=True)
                client = SourceClient(server.port)
                client.new_codename()
                home = public_home(instance)
                return [measure_size(client, server, instance, home, size, repeat)
                        for size in sizes]
        finally:
            stop_gpg_agents(root)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10M,1G",
                        type=lambda s: [parse_size(x) for x in s.split(",")],
                        help="comma-separated sizes (K, M, G are binary units); default 10M,1G")
    parser.add_argument("--repeat", type=positive, default=7, metavar="N",
                        help="uploads per size, alternating with the baseline; median (default 7)")
    parser.add_argument("--no-write", action="store_true",
                        help=f"print the results only; leave {DOCS.relative_to(REPO)} alone")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the throwaway instance and files go (default: system temp)")
    args = parser.parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)

    load_at_start = load_average()
    results = run(args.sizes, args.repeat, args.workdir)
    section = render(results, argv, args.repeat, load_at_start)
    print(section)
    if not args.no_write:
        write_report(section)
        print(f"written to {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
