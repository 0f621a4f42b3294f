"""Run a command under the kernel's memory-deny-write-execute rule (Linux 6.3 or later).

``prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN)`` refuses any mapping that is writable and
executable at once, or that gains execute later: the rule systemd's
``MemoryDenyWriteExecute=yes`` enforces with seccomp. It holds across ``execve`` and for
every child (gpg), so a program that needs such memory fails here as it would in the unit.

    python tests/deploy/mdwe_exec.py COMMAND [ARG...]
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1


def main() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        sys.exit(f"prctl(PR_SET_MDWE) failed: {os.strerror(ctypes.get_errno())} "
                 "(Linux 6.3 or later has it)")
    os.execvp(sys.argv[1], sys.argv[1:])  # noqa: S606 - the test's own command


if __name__ == "__main__":
    main()
