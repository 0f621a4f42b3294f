"""Where a flood of codename creations takes the landing page's time: a diagnosis, not a
timed test.

Run from the repository root:

    .venv/bin/python bench/login_flood.py [--clients 100] [--flood create|generate]

Starts the real ``tipbox serve source`` on loopback (a throwaway instance), sets
``--clients`` concurrent clients going as bench/hostile.py's log-ins case does
(``create``: ``GET /generate`` then ``POST /create``, 5 rounds each) or with page views
only (``generate``: 10 ``GET /generate`` each, no hashing at all), and meanwhile times 200
landing-page visits at 20/s from a process of their own. It prints the worker's CPU time,
split into what its threads at nice 19 (the hashes, tipbox.hashing_slots) used and the
rest, this script's own CPU, the visitors' p50/p99 and each visit's time in the order sent
(the start of a flood shows as the first ones). Every loop is bounded; 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from hostile import log_ins, visitors_apart
from upload import CLK_TCK, Sampler, SourceClient, make_instance, running_server, stop_gpg_agents


def cpu_and_nice(stat_path: str) -> tuple[int, int] | None:
    """(utime + stime in ticks, nice) from a /proc stat file, or None once it is gone."""
    try:
        fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(fields[11]) + int(fields[12]), int(fields[16])


class ThreadCpu(Sampler):
    """The last CPU time seen of each thread of ``pid``, with its nice value, every 20 ms
    (a thread's last 20 ms before it ends are missed)."""

    def __init__(self, pid: int) -> None:
        super().__init__(0.02)
        self.pid = pid
        self.seen: dict[str, tuple[int, int]] = {}

    def sample(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            for tid in os.listdir(f"/proc/{self.pid}/task"):
                found = cpu_and_nice(f"/proc/{self.pid}/task/{tid}/stat")
                if found:
                    self.seen[tid] = found

    def niced_seconds(self) -> float:
        return sum(cpu for cpu, nice in self.seen.values() if nice > 0) / CLK_TCK


@contextlib.contextmanager
def page_views(port: int, clients: int) -> Iterator[str]:
    """``clients`` clients, each fetching ``GET /generate`` 10 times: no hash at all."""
    stop = threading.Event()

    def loop() -> None:
        for _ in range(10):
            if stop.is_set():
                return
            with contextlib.suppress(Exception):
                SourceClient(port).get("/generate")

    threads = [threading.Thread(target=loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield f"{clients} clients fetching /generate"
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--flood", choices=("create", "generate"), default="create")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 400:
        parser.error("--clients 1-400")
    with tempfile.TemporaryDirectory(prefix="tipbox-login-flood-") as tmp:
        root = Path(tmp)
        instance = make_instance(root)
        try:
            with running_server(instance) as server:
                worker = server.worker
                before = cpu_and_nice(f"/proc/{worker}/stat")
                mine = os.times()
                flood = log_ins(args.clients) if args.flood == "create" else \
                    lambda port: page_views(port, args.clients)
                with ThreadCpu(worker) as threads, flood(server.port) as what:
                    latencies = visitors_apart(server.port, 200, 20)
                after = cpu_and_nice(f"/proc/{worker}/stat")
                done = os.times()
        finally:
            stop_gpg_agents(root)
    if before is None or after is None:
        raise RuntimeError("the worker went away")
    worker_s = (after[0] - before[0]) / CLK_TCK
    ordered = sorted(latencies)
    print(f"{what}; 200 visits at 20/s")
    print(f"worker CPU {worker_s:.1f} s, of which threads at nice 19 (hashing) "
          f"{threads.niced_seconds():.1f} s; this script "
          f"{done.user - mine.user + done.system - mine.system:.1f} s")
    print(f"visitors: p50 {ordered[99] * 1000:.0f} ms, p99 {ordered[197] * 1000:.0f} ms")
    print("each visit (ms, in order sent):", " ".join(f"{t * 1000:.0f}" for t in latencies))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
