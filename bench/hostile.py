"""Hostile-client benchmark: what other visitors see while clients hold connections open.

Run from the repository root:

    .venv/bin/python bench/hostile.py [--visitors 200] [--rate 20] [--only half-heads,...]

One run sets up a throwaway instance (key pair, keys folder, data folder, ``tipbox init``)
and, for each case below, starts a fresh ``tipbox serve source`` on a free loopback port,
sets the hostile clients going, then sends the landing page ``GET /`` from other visitors
at a steady rate (each on a new connection, as Tor Browser's circuits do; from a Python
process of their own, so that they do not wait for this one's GIL) and records how
long each waited for the whole answer, or that it failed (refused, reset, not a 200, or no
answer within the visitor timeout). Meanwhile it samples the resident memory of the
gunicorn master and workers (and, apart, of their gpg children) every 50 ms, and the
proportional memory (PSS) of all of them together, gpg included, every 200 ms.

The cases:
- quiet: no hostile client (the reference);
- half-heads: connections that send ``GET / HTTP/1.1`` and one header, then stay silent;
- idle: connections that send nothing at all;
- kept-alive: connections that each made one request (the landing page) and stay open,
  idle, as HTTP/1.1 allows;
- slow-uploads: POST /submit with a valid session and CSRF token; each sends the first
  1.5 MiB of its file at once (past the server's first read of 1 MiB, so its gpg runs, as
  for an upload that has been going for a while), then 20 KiB/s (an ordinary upload over
  Tor), never finishing while measured;
- log-ins: concurrent clients creating codenames (a page, then one memory-hard hash each);
- codename-log-ins: concurrent clients logging in with well-formed codenames this site
  never gave out (one memory-hard hash each, as a guess or a mistyped codename costs);
- pow-creations: the same flood of codename creations with the flood defence on, at its
  default settings (tipbox.flood): once the site counts more than 20 creations in ten
  minutes, each client must work out a ticket before it may create one. The clients
  solve it the way static/pow-worker.js does (SHA-256 until enough leading zero bits),
  in Python, in one process of their own at the lowest CPU priority (an attacker with
  one core of their own, which should not take the server's); the case prints
  how many codenames they made, how fast, and the difficulty they met.

Every case but pow-creations runs with the flood defence off (its thresholds set out of
reach), so that they measure what they did before it existed: connections, uploads and
hashing, not refusals.

Every loop is bounded in count and in time, everything targets 127.0.0.1 only, and the
script stops by itself. It prints a Markdown table; docs/benchmarks.md keeps the runs.
The server runs the tipbox next to this script (PYTHONPATH), so a copy of the repository
at another commit benchmarks itself.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import hashlib
import html
import http.client
import json
import math
import multiprocessing
import os
import queue
import re
import resource
import secrets
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from upload import (
    Instance,
    Sampler,
    Server,
    SourceClient,
    child_pids,
    hidden_inputs,
    machine,
    make_instance,
    proc_comm,
    proc_status_kib,
    running_server,
    stop_gpg_agents,
)

from tipbox.codenames import generate_codename

KIB = 1024
HOST = "127.0.0.1"
VISITOR_TIMEOUT = 10.0
SAMPLE_SECONDS = 0.05
# Goals for other visitors while each case runs, and for the server's memory.
P99_GOAL_S = 0.25
RSS_GOAL_MIB = 600
# No case may take longer than this to set up its hostile clients.
SETUP_LIMIT_S = 120.0
UPLOAD_RATE = 20 * KIB  # bytes per second per upload
UPLOAD_TICK = 0.1  # the pacer sends each upload its share this often
UPLOAD_DECLARED = 64 * 1024 * KIB  # Content-Length: far more than a run can send
UPLOAD_HEAD_START = 1536 * KIB  # sent at once, before the pace
UPLOAD_SOURCES = 8  # sources whose sessions the uploads share
HALF_HEAD = b"GET / HTTP/1.1\r\nHost: x\r\n"


# --- memory -------------------------------------------------------------------------------------

class ServerRss(Sampler):
    """Peaks, sampled every 50 ms, of the server's memory: summed VmRSS of the gunicorn
    master and its workers; summed VmRSS of their gpg children, apart; and every 4th
    sample, the summed PSS of all of them (master, workers and every child, gpg
    included). RSS counts each shared page (gpg's libraries, pages the workers share with
    the master since the fork) once per process that maps it: 200 gpg processes show
    5 MiB of RSS each but about 0.6 MiB of PSS (bench/upload_memory.py). PSS shares each
    page among its processes, so the sum is what the server really holds."""

    def __init__(self, master: int) -> None:
        super().__init__(SAMPLE_SECONDS)
        self.master = master
        self.peak_kib = 0
        self.gpg_peak_kib = 0
        self.total_pss_peak_kib = 0
        self._tick = 0

    def sample(self) -> None:
        workers = child_pids(self.master)
        children = [pid for worker in workers for pid in child_pids(worker)]
        server = sum(proc_status_kib(pid, "VmRSS") or 0 for pid in [self.master, *workers])
        gpg = sum(proc_status_kib(pid, "VmRSS") or 0 for pid in children
                  if proc_comm(pid) == "gpg")
        self.peak_kib = max(self.peak_kib, server)
        self.gpg_peak_kib = max(self.gpg_peak_kib, gpg)
        if self._tick % 4 == 0:
            pss = sum(smaps_kib(pid, "Pss") for pid in [self.master, *workers, *children])
            self.total_pss_peak_kib = max(self.total_pss_peak_kib, pss)
        self._tick += 1


def smaps_kib(pid: int, key: str) -> int:
    """A ``kB`` line of /proc/<pid>/smaps_rollup, or 0 once the process is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    return 0


# --- other visitors -----------------------------------------------------------------------------

def visit(port: int) -> float:
    """One landing-page visit on a new connection: seconds to the whole answer, or inf."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=VISITOR_TIMEOUT)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            return math.inf
    except (OSError, http.client.HTTPException):
        return math.inf
    finally:
        conn.close()
    return time.perf_counter() - start


def visitors_apart(port: int, count: int, rate: float) -> list[float]:
    """:func:`visitors` in a Python process of their own.

    Other visitors are other people: timed from threads of this process they would wait
    for its GIL behind the hostile clients' threads (100 of them in the log-ins case), and
    that wait was counted as the server's. Measured so in the log-ins case, the first
    visits' waits doubled."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import hostile; "
            "print(json.dumps([t if t != float('inf') else None for t in "
            "hostile.visitors(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))]))")
    budget = count / rate + VISITOR_TIMEOUT + 60
    done = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(port),
                           str(count), str(rate)], capture_output=True, text=True,
                          check=True, timeout=budget)
    return [math.inf if t is None else float(t) for t in json.loads(done.stdout)]


def visitors(port: int, count: int, rate: float) -> list[float]:
    """``count`` visits started at ``rate`` per second whatever the answers (an open loop:
    a slow server does not slow the arrivals down)."""
    results: list[float] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=count) as pool:
        start = time.monotonic()
        futures = []
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(visit, port))
        for future in futures:
            results.append(future.result())
    return results


# --- hostile clients ----------------------------------------------------------------------------

# A case: given the server's port, holds its hostile clients while the body of the ``with``
# runs, and says what it holds.
Case = Callable[[int], contextlib.AbstractContextManager[str]]


def connect(port: int) -> socket.socket:
    return socket.create_connection((HOST, port), timeout=5)


@contextlib.contextmanager
def held_sockets(port: int, count: int, first: bytes) -> Iterator[list[socket.socket]]:
    """``count`` connections that each send ``first`` (maybe nothing) and then nothing more."""
    socks: list[socket.socket] = []
    deadline = time.monotonic() + SETUP_LIMIT_S
    try:
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            try:
                sock = connect(port)
            except OSError:
                continue  # counted below: the table says how many were held
            socks.append(sock)
            if first:
                with contextlib.suppress(OSError):
                    sock.sendall(first)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def half_heads(count: int) -> Case:
    @contextlib.contextmanager
    def case(port: int) -> Iterator[str]:
        with held_sockets(port, count, HALF_HEAD) as socks:
            yield f"{len(socks)} half-sent heads held"
    return case


def idle(count: int) -> Case:
    @contextlib.contextmanager
    def case(port: int) -> Iterator[str]:
        with held_sockets(port, count, b"") as socks:
            yield f"{len(socks)} silent connections held"
    return case


def kept_alive(count: int) -> Case:
    @contextlib.contextmanager
    def case(port: int) -> Iterator[str]:
        conns: list[http.client.HTTPConnection] = []
        deadline = time.monotonic() + SETUP_LIMIT_S
        try:
            for _ in range(count):
                if time.monotonic() > deadline:
                    break
                conn = http.client.HTTPConnection(HOST, port, timeout=VISITOR_TIMEOUT)
                conns.append(conn)
                try:
                    conn.request("GET", "/")
                    response = conn.getresponse()
                    response.read()
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conns.pop()
            yield f"{len(conns)} kept-alive connections held"
        finally:
            for conn in conns:
                conn.close()
    return case


@dataclass
class _Upload:
    sock: socket.socket
    sent: int = 0
    failed: bool = False


def _upload_head(port: int, client: SourceClient, token: str) -> bytes:
    boundary = "----tipboxhostile" + secrets.token_hex(12)
    preamble = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n"
        f"{token}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"message\"\r\n\r\n"
        f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
        f"filename=\"slow.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    head = (f"POST /submit HTTP/1.1\r\nHost: {HOST}:{port}\r\nCookie: {cookie}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {UPLOAD_DECLARED + len(preamble)}\r\n\r\n").encode()
    return head + preamble


def slow_uploads(count: int) -> Case:
    @contextlib.contextmanager
    def case(port: int) -> Iterator[str]:
        sessions = []
        for _ in range(UPLOAD_SOURCES):
            client = SourceClient(port)
            client.new_codename()
            sessions.append((client, hidden_inputs(client.get("/submit"))["csrf_token"]))
        uploads: list[_Upload] = []
        stop = threading.Event()
        try:
            for i in range(count):
                client, token = sessions[i % len(sessions)]
                sock = connect(port)
                upload = _Upload(sock)
                uploads.append(upload)
                try:
                    sock.sendall(_upload_head(port, client, token))
                    sock.sendall(os.urandom(UPLOAD_HEAD_START))
                    upload.sent = UPLOAD_HEAD_START
                except OSError:  # a server that does not read it within the timeout
                    upload.failed = True
                sock.setblocking(False)
            pacer = threading.Thread(target=_pace, args=(uploads, stop), name="pacer")
            pacer.start()
            try:
                time.sleep(2)  # let every upload reach gpg before visitors come
                yield (f"{len(uploads)} uploads at {UPLOAD_RATE // KIB} KiB/s (after "
                       f"{UPLOAD_HEAD_START / 1024 / KIB:g} MiB at once)")
            finally:
                stop.set()
                pacer.join()
            failed = sum(u.failed for u in uploads)
            sent = sum(u.sent for u in uploads) // KIB
            print(f"    slow uploads: {sent} KiB sent in all; {failed} stopped (cut off, or "
                  "not read by the server)", file=sys.stderr)
        finally:
            for upload in uploads:
                upload.sock.close()
    return case


def _pace(uploads: list[_Upload], stop: threading.Event) -> None:
    """Every tick, each upload's share of its rate, from one thread and never blocking."""
    block = os.urandom(int(UPLOAD_RATE * UPLOAD_TICK))
    while not stop.wait(UPLOAD_TICK):
        for upload in uploads:
            if upload.failed:
                continue
            try:
                upload.sent += upload.sock.send(block)
            except BlockingIOError:
                continue  # the server is not reading: that upload falls behind
            except OSError:
                upload.failed = True


def log_ins(count: int) -> Case:
    """Clients creating codenames: a page, then one memory-hard hash each."""
    def create(client: SourceClient) -> int:
        fields = hidden_inputs(client.get("/generate"))
        return client.post_form("/create", {k: fields[k] for k in (
            "csrf_token", "codename", "mac")})
    return codename_flood(count, create, "creating codenames", "codename creations")


def codename_log_ins(count: int) -> Case:
    """Clients logging in with codenames that are well formed but not this site's: each
    costs the server one memory-hard hash, as a guess or a mistyped codename does."""
    def log_in(client: SourceClient) -> int:
        token = hidden_inputs(client.get("/login"))["csrf_token"]
        return client.post_form("/login", {"csrf_token": token,
                                           "codename": generate_codename()})
    return codename_flood(count, log_in, "logging in with codenames", "codename log-ins")


def codename_flood(count: int, attempt: Callable[[SourceClient], int], doing: str,
                   what: str) -> Case:
    @contextlib.contextmanager
    def case(port: int) -> Iterator[str]:
        stop = threading.Event()
        outcomes: dict[str, int] = {}
        lock = threading.Lock()

        def client_loop() -> None:
            # Bounded: a few rounds each, and never past the stop signal.
            for _ in range(5):
                if stop.is_set():
                    return
                try:
                    status = attempt(SourceClient(port))
                except (OSError, RuntimeError, http.client.HTTPException, KeyError):
                    status = 0
                with lock:
                    outcomes[str(status)] = outcomes.get(str(status), 0) + 1

        threads = [threading.Thread(target=client_loop, name=f"codename-{i}")
                   for i in range(count)]
        for thread in threads:
            thread.start()
        try:
            yield f"{count} clients {doing}"
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=VISITOR_TIMEOUT * 6)
            print(f"    {what} by status: {outcomes}", file=sys.stderr)
    return case


POW_CONFIG = re.compile(r'id="pow-config">(.*?)</script>', re.S)
POW_GIVE_UP = 1 << 28  # tries per ticket: bounds a solve even at 32 bits


def solve_ticket(token: str, bits: int) -> tuple[str | None, int, float]:
    """What static/pow-worker.js does, in a process of the flood's own: the answer, how
    many hashes it took and how long."""
    started = time.monotonic()
    for n in range(POW_GIVE_UP):
        digest = hashlib.sha256(f"{token}:{n}".encode()).digest()
        if int.from_bytes(digest, "big") >> (256 - bits) == 0:
            return str(n), n + 1, time.monotonic() - started
    return None, POW_GIVE_UP, time.monotonic() - started


def pow_creations(count: int) -> Case:
    """The flood runs in a process of its own: its threads and its hashing must not slow
    this process, whose visitors are measured (a visitor that closes its connection late
    holds up the server too, see docs/benchmarks.md)."""
    @contextlib.contextmanager
    def case(port: int) -> Iterator[str]:
        context = multiprocessing.get_context("fork")
        stop = context.Event()
        results: multiprocessing.Queue[str] = context.Queue()
        flood = context.Process(target=_pow_flood, args=(port, count, stop, results),
                                name="pow-flood")
        flood.start()
        try:
            yield f"{count} clients creating codenames, solving the proof of work"
        finally:
            stop.set()
            try:
                print(results.get(timeout=VISITOR_TIMEOUT * 9), file=sys.stderr)
            except queue.Empty:
                print("    the flood process did not report", file=sys.stderr)
            flood.join(timeout=VISITOR_TIMEOUT)
            if flood.is_alive():
                flood.kill()
                flood.join()
    return case


def _pow_flood(port: int, count: int, stop: Any, results: Any) -> None:
    outcomes: dict[str, int] = {}
    bits_seen: list[int] = []
    work = [0, 0.0]  # hashes, seconds
    lock = threading.Lock()
    started = time.monotonic()
    # At the lowest priority: the flood's CPU stands for the attacker's own machine, so it
    # must not take the server's cores on this one.
    solver = concurrent.futures.ProcessPoolExecutor(max_workers=1, initializer=os.nice,
                                                    initargs=(19,))

    def create_one(client: SourceClient) -> int:
        page = client.get("/generate")
        found = POW_CONFIG.search(page)
        if found:  # the wait page: work the ticket out, then go on
            config = json.loads(html.unescape(found.group(1)))
            with lock:
                bits_seen.append(int(config["bits"]))
            try:
                solution, hashes, spent = solver.submit(
                    solve_ticket, config["ticket"], int(config["bits"])).result()
            except (concurrent.futures.CancelledError, RuntimeError):
                return -1  # still waiting for the solver when the run ended
            with lock:
                work[0] += hashes
                work[1] += spent
            if solution is None or stop.is_set():
                return -1
            page = client.get(f"{config['next']}&s={urllib.parse.quote(solution)}")
        fields = hidden_inputs(page)
        return client.post_form("/create", {k: fields.get(k, "") for k in (
            "csrf_token", "codename", "mac", "ticket", "solution")})

    def client_loop() -> None:
        for _ in range(5):  # bounded: a few rounds each, never past the stop signal
            if stop.is_set():
                return
            try:
                outcome = str(create_one(SourceClient(port)))
            except (OSError, RuntimeError, http.client.HTTPException, KeyError,
                    ValueError) as exc:
                outcome = type(exc).__name__
            with lock:
                outcomes[outcome] = outcomes.get(outcome, 0) + 1

    threads = [threading.Thread(target=client_loop, name=f"flood-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    stop.wait(timeout=SETUP_LIMIT_S * 5)  # the measuring ends it; this bounds it anyway
    stop.set()
    elapsed = time.monotonic() - started
    solver.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + VISITOR_TIMEOUT * 6
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    with lock:
        made = outcomes.get("302", 0)
        unsolved = outcomes.pop("-1", 0)
        rate = work[0] / work[1] if work[1] else 0
        results.put(f"    codename creations by status: {outcomes}, {unsolved} tickets "
                    f"unsolved when the run ended; {made} made in {elapsed:.0f} s "
                    f"({made / elapsed:.2f}/s); difficulty met: {min(bits_seen, default=0)} "
                    f"to {max(bits_seen, default=0)} bits; the flood's solver: "
                    f"{rate:,.0f} hashes/s")


# --- one case -----------------------------------------------------------------------------------

@dataclass
class CaseResult:
    name: str
    held: str
    latencies: list[float] = field(default_factory=list)
    rss_kib: int = 0
    gpg_rss_kib: int = 0
    total_pss_kib: int = 0

    @property
    def errors(self) -> int:
        return sum(1 for t in self.latencies if math.isinf(t))

    def percentile(self, p: float) -> float:
        """Failed visits count as slower than any answer."""
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, math.ceil(p * len(ordered)) - 1)]

    @property
    def meets_goals(self) -> bool:
        return (self.errors == 0 and self.percentile(0.99) < P99_GOAL_S
                and self.rss_kib / KIB < RSS_GOAL_MIB)


# Thresholds no case reaches: the flood defence stays out of the way.
POW_OFF = {"TIPBOX_POW_CREATE_THRESHOLD": str(10**9), "TIPBOX_POW_SUBMIT_THRESHOLD": str(10**9)}
POW_CASES = {"pow-creations"}


def run_case(instance: Instance, name: str, hostile: Case, visits: int,
             rate: float, slow_ms: float | None = None) -> CaseResult:
    print(f"  {name}...", file=sys.stderr)
    if name in POW_CASES:
        # A data folder of its own: what earlier cases created would count as a flood.
        (instance.root / name).mkdir()
        instance = make_instance(instance.root / name)
    else:
        instance = dataclasses.replace(instance, env={**instance.env, **POW_OFF})
    with running_server(instance) as server:
        with ServerRss(server.process.pid) as rss, hostile(server.port) as held:
            latencies = visitors_apart(server.port, visits, rate)
        if slow_ms is not None:
            # When in the case the slow visits came (visit i starts at i / rate seconds).
            slow = [f"#{i} {seconds(t)}" for i, t in enumerate(latencies) if t * 1000 > slow_ms]
            print(f"    visits over {slow_ms:g} ms: {', '.join(slow) or 'none'}", file=sys.stderr)
        _check_alive(server)
    return CaseResult(name, held, latencies, rss.peak_kib, rss.gpg_peak_kib,
                      rss.total_pss_peak_kib)


def _check_alive(server: Server) -> None:
    if server.process.poll() is not None:
        raise RuntimeError(f"the server died:\n{server.log.read_text()[-3000:]}")


# --- report -------------------------------------------------------------------------------------

def seconds(value: float) -> str:
    if math.isinf(value):
        return f"> {VISITOR_TIMEOUT:.0f} s (failed)"
    return f"{value * 1000:.0f} ms"


def render(results: list[CaseResult], argv: list[str], visits: int, rate: float) -> str:
    command = shlex.join([".venv/bin/python", "bench/hostile.py", *argv])
    lines = [f"Command: `{command}`", "",
             f"Run: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {visits} landing-page "
             f"visits at {rate:g}/s per case, {VISITOR_TIMEOUT:.0f} s visitor timeout.", ""]
    lines += [f"- {key}: {value}" for key, value in machine("")
              if not key.startswith("Load average")]
    lines += ["", "| case | hostile clients | p50 | p99 | errors | peak RSS master+workers "
              "| peak RSS gpg | peak PSS master+workers+children | goals met |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r.name} | {r.held} | {seconds(r.percentile(0.5))} | "
            f"{seconds(r.percentile(0.99))} | {r.errors}/{len(r.latencies)} "
            f"({100 * r.errors / len(r.latencies):.0f} %) | {r.rss_kib / KIB:.0f} MiB | "
            f"{r.gpg_rss_kib / KIB:.0f} MiB | {r.total_pss_kib / KIB:.0f} MiB | "
            f"{'yes' if r.meets_goals else 'no'} |")
    return "\n".join(lines)


def raise_open_files_limit() -> None:
    """Each held connection is a file descriptor here (and in the server)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


CASES: dict[str, Callable[[argparse.Namespace], Case]] = {
    "quiet": lambda args: lambda port: contextlib.nullcontext("none"),
    "half-heads": lambda args: half_heads(args.connections),
    "idle": lambda args: idle(args.connections),
    "kept-alive": lambda args: kept_alive(args.connections),
    "slow-uploads": lambda args: slow_uploads(args.uploads),
    "log-ins": lambda args: log_ins(args.log_ins),
    "codename-log-ins": lambda args: codename_log_ins(args.log_ins),
    "pow-creations": lambda args: pow_creations(args.log_ins),
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=200, help="landing-page visits per case")
    parser.add_argument("--rate", type=float, default=20.0, help="visits per second")
    parser.add_argument("--connections", type=int, default=1000,
                        help="half-sent heads, silent and kept-alive connections")
    parser.add_argument("--uploads", type=int, default=200, help="concurrent slow uploads")
    parser.add_argument("--log-ins", type=int, default=100, help="concurrent codename clients")
    parser.add_argument("--only", default=",".join(CASES), help="comma-separated cases")
    parser.add_argument("--slow-ms", type=float, default=None,
                        help="list the visits slower than this (their order tells when)")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - set(CASES)
    if unknown:
        parser.error(f"unknown cases: {', '.join(sorted(unknown))}")
    raise_open_files_limit()
    results = []
    with tempfile.TemporaryDirectory(prefix="tipbox-hostile-") as tmp:
        root = Path(tmp)
        print("Setting up a throwaway instance...", file=sys.stderr)
        instance = make_instance(root)
        try:
            for name in names:
                results.append(run_case(instance, name, CASES[name](args), args.visitors,
                                        args.rate, args.slow_ms))
        finally:
            stop_gpg_agents(root)
    print(render(results, argv, args.visitors, args.rate))
    return 0 if all(r.meets_goals for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
