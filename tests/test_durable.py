"""A file written whole leaves, when its writer is killed mid-write, a temporary that the
next sweep removes, while a writer still at work keeps its own. Real processes, real
SIGKILL."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tipbox.durable import dead_temps, remove_dead_temps, write_whole

# A writer that stops inside write_whole, its temporary written but not yet in place, until
# it reads a line: it is then killed there, or let go on.
PAUSED_WRITER = """
import os, sys
from pathlib import Path
from tipbox.durable import write_whole
real_fsync = os.fsync
def paused(fd):
    os.fsync = real_fsync  # only the temporary's fsync, not the folder's after it
    print("writing", flush=True)
    sys.stdin.readline()
    real_fsync(fd)
os.fsync = paused
write_whole(Path(sys.argv[1]), "the instance's secrets")
"""


@contextmanager
def writer_paused_mid_write(target: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", PAUSED_WRITER, str(target)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready and proc.stdout.readline() == "writing\n"
        yield proc
    finally:
        proc.kill()
        proc.communicate(timeout=60)  # reaps it and closes its pipes


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_writer_killed_mid_write_leaves_a_temporary_that_the_sweep_removes(
        tmp_path: Path) -> None:
    target = tmp_path / "instance-secrets.json"
    with writer_paused_mid_write(target) as writer:
        writer.send_signal(signal.SIGKILL)
        writer.wait(60)
    [left] = temporaries(tmp_path)
    assert left.startswith(".instance-secrets.json.")
    assert dead_temps(target) == [tmp_path / left]

    assert remove_dead_temps(target) == 1
    assert list(tmp_path.iterdir()) == []
    assert dead_temps(target) == []


def test_the_sweep_leaves_a_live_writers_temporary_and_its_file_ends_whole(
        tmp_path: Path) -> None:
    target = tmp_path / "instance-secrets.json"
    with writer_paused_mid_write(target) as writer:
        assert dead_temps(target) == []
        assert remove_dead_temps(target) == 0
        assert len(temporaries(tmp_path)) == 1
        assert writer.stdin is not None
        writer.stdin.write("go on\n")
        writer.stdin.flush()
        assert writer.wait(60) == 0
    assert target.read_text() == "the instance's secrets"
    assert temporaries(tmp_path) == []


def test_the_sweep_removes_only_temporaries_of_the_file_it_is_given(tmp_path: Path) -> None:
    target = tmp_path / "instance-secrets.json"
    write_whole(target, "kept")
    others = [tmp_path / ".digest-state.json.abcd1234",  # another file's
              tmp_path / ".instance-secrets.json.swp",  # not a name write_whole makes
              tmp_path / "instance-secrets.json.abcd1234"]  # not hidden
    for other in others:
        other.write_text("not ours")
    left = tmp_path / ".instance-secrets.json.k1ll3d_0"
    left.write_text("secrets of a writer killed before this version locked its temporaries")
    left.chmod(0o600)  # as mkstemp made it; another mode is not a temporary of ours

    assert remove_dead_temps(target) == 1
    assert not left.exists()
    assert all(other.read_text() == "not ours" for other in others)
    assert target.read_text() == "kept"
