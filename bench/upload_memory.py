"""Where the memory of slow uploads goes: a profile, not a timed test.

Run from the repository root:

    .venv/bin/python bench/upload_memory.py [--uploads 50] [--seconds 20]

Starts the real ``tipbox serve source`` on loopback (a throwaway instance) with Python's
tracemalloc on in its worker, opens ``--uploads`` uploads to ``POST /submit`` exactly as
bench/hostile.py's slow-uploads case does (1.5 MiB at once, then 20 KiB/s), keeps them
going for ``--seconds``, then reports, per upload: the worker's RSS (peak and at the end),
the Python heap (tracemalloc: what is allocated now, and its biggest sites), the worker's
threads, and the ``gpg`` children's RSS and PSS (PSS shares each page among the
processes that map it, so gpg's libraries are not counted 200 times). Every loop is
bounded in count and time; everything stays on 127.0.0.1.

tracemalloc is switched on by a ``sitecustomize`` module that only this script puts on
the server's PYTHONPATH; tipbox itself has no such hook.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

from hostile import (
    KIB,
    UPLOAD_HEAD_START,
    UPLOAD_SOURCES,
    _pace,
    _Upload,
    _upload_head,
    connect,
    smaps_kib,
)
from upload import (
    Instance,
    Sampler,
    SourceClient,
    child_pids,
    hidden_inputs,
    make_instance,
    proc_comm,
    proc_status_kib,
    running_server,
    stop_gpg_agents,
)

MIB = 1024 * KIB

# Loaded by the server's Python at start (it is on PYTHONPATH): in each forked worker,
# tracemalloc on and a thread that writes the heap's figures when asked to.
_SITECUSTOMIZE = '''
import os, threading, time, tracemalloc
_DIR = os.environ.get("TIPBOX_BENCH_TRACEMALLOC_DIR")

def _serve_requests():
    ask = os.path.join(_DIR, "ask")
    while True:
        time.sleep(0.2)
        if not os.path.exists(ask):
            continue
        os.unlink(ask)
        snapshot = tracemalloc.take_snapshot()
        current, peak = tracemalloc.get_traced_memory()
        lines = [f"current {current} peak {peak}"]
        for stat in snapshot.statistics("lineno")[:12]:
            frame = stat.traceback[0]
            lines.append(f"{stat.size} {stat.count} {frame.filename}:{frame.lineno}")
        tmp = os.path.join(_DIR, "answer.tmp")
        with open(tmp, "w") as fh:
            fh.write("\\n".join(lines))
        os.replace(tmp, os.path.join(_DIR, "answer"))

def _in_worker():
    tracemalloc.start(1)
    threading.Thread(target=_serve_requests, daemon=True).start()

if _DIR:
    os.register_at_fork(after_in_child=_in_worker)
'''


def heap_report(directory: Path, timeout: float = 60) -> list[str]:
    """Ask the worker for its tracemalloc figures; wait at most ``timeout``."""
    answer = directory / "answer"
    answer.unlink(missing_ok=True)
    (directory / "ask").touch()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answer.exists():
            return answer.read_text().splitlines()
        time.sleep(0.1)
    raise RuntimeError("the worker did not report its heap")


def threads_of(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        return 0


class Peak(Sampler):
    """Peak VmRSS of one process, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(0.05)
        self.pid = pid
        self.kib = 0

    def sample(self) -> None:
        self.kib = max(self.kib, proc_status_kib(self.pid, "VmRSS") or 0)


def profile(instance: Instance, uploads: int, seconds: float, heap_dir: Path) -> str:
    env = dict(instance.env, TIPBOX_BENCH_TRACEMALLOC_DIR=str(heap_dir))
    env["PYTHONPATH"] = os.pathsep.join([str(heap_dir / "site"), env["PYTHONPATH"]])
    instance = dataclasses.replace(instance, env=env)
    with running_server(instance) as server:
        worker = server.worker
        time.sleep(1)
        rss_idle = proc_status_kib(worker, "VmRSS") or 0
        threads_idle = threads_of(worker)
        heap_idle = int(heap_report(heap_dir)[0].split()[1])
        sessions = []
        for _ in range(UPLOAD_SOURCES):
            client = SourceClient(server.port)
            client.new_codename()
            sessions.append((client, hidden_inputs(client.get("/submit"))["csrf_token"]))
        held: list[_Upload] = []
        stop = threading.Event()
        with Peak(worker) as peak:
            try:
                for i in range(uploads):
                    client, token = sessions[i % len(sessions)]
                    upload = _Upload(connect(server.port))
                    held.append(upload)
                    try:
                        upload.sock.sendall(_upload_head(server.port, client, token))
                        upload.sock.sendall(os.urandom(UPLOAD_HEAD_START))
                    except OSError:
                        upload.failed = True
                    upload.sock.setblocking(False)
                pacer = threading.Thread(target=_pace, args=(held, stop))
                pacer.start()
                try:
                    time.sleep(seconds)
                    rss_now = proc_status_kib(worker, "VmRSS") or 0
                    threads_now = threads_of(worker)
                    gpgs = [p for p in child_pids(worker) if proc_comm(p) == "gpg"]
                    gpg_rss = sum(proc_status_kib(p, "VmRSS") or 0 for p in gpgs)
                    gpg_pss = sum(smaps_kib(p, "Pss") for p in gpgs)
                    gpg_private = sum(smaps_kib(p, "Private_Dirty") for p in gpgs)
                    heap = heap_report(heap_dir)
                finally:
                    stop.set()
                    pacer.join()
            finally:
                for upload in held:
                    upload.sock.close()
    n = max(1, uploads)
    heap_now = int(heap[0].split()[1])
    lines = [
        f"{uploads} uploads held for {seconds:g} s "
        f"({sum(u.failed for u in held)} cut off)",
        f"- worker RSS: idle {rss_idle / KIB:.0f} MiB, peak {peak.kib / KIB:.0f} MiB, "
        f"at the end {rss_now / KIB:.0f} MiB: "
        f"{(peak.kib - rss_idle) / n:.0f} KiB per upload at the peak, "
        f"{(rss_now - rss_idle) / n:.0f} KiB at the end",
        f"- Python heap (tracemalloc): {(heap_now - heap_idle) / n / KIB:.0f} KiB per upload "
        f"at the end (tracemalloc's own peak: {int(heap[0].split()[3]) / MIB:.0f} MiB)",
        f"- worker threads: {threads_idle} idle, {threads_now} with the uploads: "
        f"{(threads_now - threads_idle) / n:.1f} per upload",
        f"- gpg children: {len(gpgs)}; RSS {gpg_rss / n:.0f} KiB, PSS {gpg_pss / n:.0f} KiB, "
        f"private dirty {gpg_private / n:.0f} KiB per upload",
        "- biggest allocation sites at the end (bytes, blocks, where):",
    ]
    lines += [f"    {line}" for line in heap[1:]]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    if not 1 <= args.uploads <= 400 or not 1 <= args.seconds <= 300:
        parser.error("--uploads 1-400, --seconds 1-300")
    with tempfile.TemporaryDirectory(prefix="tipbox-upload-memory-") as tmp:
        root = Path(tmp)
        heap_dir = root / "heap"
        (heap_dir / "site").mkdir(parents=True)
        (heap_dir / "site" / "sitecustomize.py").write_text(textwrap.dedent(_SITECUSTOMIZE))
        instance = make_instance(root)
        try:
            print(profile(instance, args.uploads, args.seconds, heap_dir))
        finally:
            stop_gpg_agents(root)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
