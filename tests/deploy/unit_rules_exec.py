"""Run a command under the run-time rules of tipbox's units that a process can set on
itself without systemd: the system call filter, no writable executable memory, and no new
privileges.

    /usr/bin/python3 tests/deploy/unit_rules_exec.py ALLOWED_SYSCALLS_FILE COMMAND [ARG...]

ALLOWED_SYSCALLS_FILE names one system call per line: what ``SystemCallFilter=`` allows
(tests/deploy/test_units.py expands the units' groups with ``systemd-analyze
syscall-filter``). Any other call fails with EPERM, as ``SystemCallErrorNumber=EPERM``
makes it. ``prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN)`` refuses memory that is
writable and executable, the rule ``MemoryDenyWriteExecute=yes`` enforces. Both hold
across ``execve`` and for every child (gpg).

It runs under Debian's Python (/usr/bin/python3), whose python3-seccomp binds libseccomp.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import sys

import seccomp  # type: ignore[import-not-found]

PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1


def main() -> None:
    allowed_file, command = sys.argv[1], sys.argv[2:]
    with open(allowed_file, encoding="ascii") as names:
        allowed = [name.strip() for name in names if name.strip()]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        sys.exit(f"prctl(PR_SET_MDWE) failed: {os.strerror(ctypes.get_errno())} "
                 "(Linux 6.3 or later has it)")
    # libseccomp sets no_new_privs with the filter: NoNewPrivileges=yes.
    rules = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
    for name in allowed:
        # A call of another architecture, or one this libseccomp does not know, is skipped.
        with contextlib.suppress(RuntimeError, ValueError):
            rules.add_rule(seccomp.ALLOW, name)
    rules.load()
    os.execvp(command[0], command)  # noqa: S606 - the test's own command


if __name__ == "__main__":
    main()
