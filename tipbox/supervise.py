"""Run several server processes as one (what `tipbox demo` and `make run` do) and stop them
all, whenever the stop signal comes. No Flask here."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence

STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


def run_together(commands: Sequence[Sequence[str]], *, started: Callable[[], None],
                 say: Callable[[str], None], grace: float = 10.0) -> bool:
    """Start every command, call ``started``, and wait until one of them exits or
    SIGINT (Ctrl-C), SIGTERM or SIGHUP arrives; then stop them all. True if none of them
    failed (an exit status 0, or stopped by our SIGTERM or SIGKILL)."""

    def stop(_signum: int, _frame: object) -> None:
        # Only the first signal counts: a second Ctrl-C must not cut the clean-up short
        # and leave a server behind.
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        raise KeyboardInterrupt

    def unblock() -> None:  # in the child, before exec: the servers need these signals
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    # Installed for SIGINT too: a process started in the background inherits SIGINT
    # ignored, and Python then never turns it into KeyboardInterrupt.
    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    procs: list[subprocess.Popen[bytes]] = []
    killed: set[int] = set()
    try:
        for command in commands:
            # Signals wait while a server starts, so none is started without being in
            # `procs` to be stopped. Each runs in a session of its own: the terminal's
            # Ctrl-C reaches only this process, which stops each server once. (A gunicorn
            # worker hit by the terminal's SIGINT and its master's SIGQUIT together can
            # deadlock in gthread's executor shutdown and keep the port taken.)
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            try:
                # preexec_fn is safe here: no other thread runs in this process now.
                procs.append(subprocess.Popen(list(command), start_new_session=True,
                                              preexec_fn=unblock))
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        started()
        while all(p.poll() is None for p in procs):
            try:
                procs[0].wait(timeout=1)
            except subprocess.TimeoutExpired:
                continue
    except KeyboardInterrupt:
        pass
    finally:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        killed = stop_all(procs, say, grace)
    return all(p.pid in killed or p.returncode in (0, -signal.SIGTERM) for p in procs)


def stop_all(procs: Sequence[subprocess.Popen[bytes]], say: Callable[[str], None],
             grace: float) -> set[int]:
    """SIGTERM to each process (gunicorn finishes the requests in flight), and after
    ``grace`` seconds SIGKILL to whatever is left of its session: master, workers, gpg.
    Returns the pids that had to be killed."""
    live = [p for p in procs if p.poll() is None]
    if live:
        say("Stopping the servers...")
    for proc in live:
        proc.terminate()
    deadline = time.monotonic() + grace
    killed: set[int] = set()
    for proc in live:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"Server {proc.pid} did not stop within {grace:.0f} s: killing it.")
            # The master still runs, so its process group is still its own: this reaches
            # its workers and their gpg processes too.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            killed.add(proc.pid)
    return killed
