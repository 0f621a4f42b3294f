"""Backup and restore: time and peak memory of `tipbox backup` / `tipbox restore` for a
store of 2 GiB, against a baseline in the same run: `tar` piped into the same
`gpg --symmetric` (same cipher, S2K and no compression) over the same data folder, and
`gpg --decrypt | tar -x` back.

    .venv/bin/python bench/backup.py [--size 2G] [--item-mib 64] [--runs 3]

The store's "ciphertext" files are random bytes with matching rows (a backup never
decrypts them). Each run is measured in a fresh child process; its peak memory is the
largest resident set of that process and everything it waited for (Python, gpg, tar),
from getrusage(RUSAGE_CHILDREN). tipbox fsyncs the backup, and every file it restores,
before it says done (a backup or a restored instance must survive a crash); tar and gpg
do not, so each baseline is also timed with `sync` of what it wrote.
Set BENCH_TMP to put the files on another disk (it needs about 4x --size free).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert

from tests.helpers import make_newsroom
from tipbox.backup.encryption import _ENCRYPT_OPTIONS
from tipbox.config import ScryptParams, Settings
from tipbox.db import make_engine
from tipbox.models import Item, ItemKind, Source
from tipbox.provisioning import initialise
from tipbox.storage import new_item_id

MIB = 1024 * 1024
PASSPHRASE = "bench backup passphrase"  # noqa: S105 - a throwaway store of random bytes


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": MIB, "G": 1024 * MIB}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].isalpha() else int(text)


def seed(settings: Settings, total: int, item_bytes: int) -> int:
    """One source holding ``total`` bytes of items; returns the number of items."""
    engine = make_engine(settings.database_url)
    day = dt.date.today()
    chunk = os.urandom(MIB)
    with engine.begin() as conn:
        source_id = conn.execute(insert(Source).returning(Source.id), {
            "codename_hash": secrets.token_hex(32), "designation": "bench",
            "created_on": day, "last_activity_on": day}).scalar_one()
        left, rows = total, []
        while left > 0:
            size = min(item_bytes, left)
            item_id = new_item_id()
            with (settings.store_dir / f"{item_id}.gpg").open("wb") as fh:
                for _ in range(size // MIB):
                    fh.write(chunk)
                fh.write(chunk[:size % MIB])
            rows.append({"id": item_id, "source_id": source_id, "seq": len(rows) + 1,
                         "kind": ItemKind.FILE, "size": size, "key_fingerprints": "A" * 40,
                         "submitted_on": day})
            left -= size
        conn.execute(insert(Item), rows)
    engine.dispose()
    return len(rows)


def measured(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run ``command`` in a fresh child; (seconds, peak MiB of its whole process tree)."""
    probe = ("import resource, subprocess, sys, time\n"
             "t = time.perf_counter()\n"
             "subprocess.run(sys.argv[1:], check=True)\n"
             "print(time.perf_counter() - t, "
             "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    out = subprocess.run([sys.executable, "-c", probe, *command], stdout=subprocess.PIPE,
                         text=True, check=True, env=env).stdout.split()
    return float(out[0]), int(out[1]) / 1024


def child(args: argparse.Namespace) -> None:
    """One backup or restore, in this process, through the same functions as the CLI."""
    from tipbox.backup.archive import make_backup
    from tipbox.backup.encryption import Encryption
    from tipbox.backup.restore import restore_backup

    given = json.loads(args.child_settings)
    settings = Settings(data_dir=Path(given["data_dir"]), keys_dir=Path(given["keys_dir"]))
    if args.child == "backup":
        make_backup(settings, Path(args.file), Encryption(passphrase=PASSPHRASE.encode()))
    else:
        restore_backup(settings, Path(args.file), passphrase=PASSPHRASE.encode())


def settings_json(data_dir: Path, keys_dir: Path) -> str:
    return json.dumps({"data_dir": str(data_dir), "keys_dir": str(keys_dir)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="2G")
    parser.add_argument("--item-mib", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", choices=["backup", "restore"], help=argparse.SUPPRESS)
    parser.add_argument("--child-settings", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        room = make_newsroom(root / "room", "Bench Newsroom")
        data = root / "data"
        settings = Settings(data_dir=data, keys_dir=room.keys_dir,
                            scrypt=ScryptParams(n=2**4))
        initialise(settings, trust_keys_folder=True)
        items = seed(settings, size, args.item_mib * MIB)
        gpg_version = subprocess.run(["gpg", "--version"], capture_output=True,
                                     text=True).stdout.split()[2]
        print(f"store: {size / MIB:.0f} MiB in {items} items; gpg {gpg_version}; "
              f"{os.cpu_count()} cores; {args.runs} runs, median")
        results: dict[str, list[tuple[float, float]]] = {
            "tipbox backup": [], "tar | gpg --symmetric": [],
            "tar | gpg --symmetric, then sync FILE": [],
            "tipbox restore": [], "gpg --decrypt | tar -x": [],
            "gpg --decrypt | tar -x, then sync each file": []}
        me = [sys.executable, str(Path(__file__).resolve())]
        home = root / "gnupg-baseline"
        home.mkdir(mode=0o700)
        pass_file = root / "baseline-passphrase"  # the baseline's only; tipbox uses a pipe
        pass_file.write_text(PASSPHRASE)
        gpg = (f"gpg --homedir {home} --batch --no-tty --no-symkey-cache --pinentry-mode "
               f"loopback --passphrase-file {pass_file}")
        for _ in range(args.runs):
            ours, theirs = root / "ours.backup", root / "theirs.backup"
            results["tipbox backup"].append(measured([
                *me, "--child", "backup", "--file", str(ours),
                "--child-settings", settings_json(data, room.keys_dir)]))
            encrypt = (f"set -o pipefail; tar -cf - -C {data} . | {gpg} --symmetric "
                       f"{' '.join(_ENCRYPT_OPTIONS)} -o {theirs}")
            results["tar | gpg --symmetric"].append(measured(["bash", "-c", encrypt]))
            theirs.unlink()
            # tipbox fsyncs the backup before it names it done; tar and gpg do not.
            results["tar | gpg --symmetric, then sync FILE"].append(measured([
                "bash", "-c", f"{encrypt} && sync {theirs}"]))
            restored, untarred = root / "restored", root / "untarred"
            results["tipbox restore"].append(measured([
                *me, "--child", "restore", "--file", str(ours),
                "--child-settings", settings_json(restored, root / "restored-keys")]))
            untarred.mkdir()
            decrypt = f"set -o pipefail; {gpg} --decrypt {theirs} | tar -xf - -C {untarred}"
            results["gpg --decrypt | tar -x"].append(measured(["bash", "-c", decrypt]))
            shutil.rmtree(untarred)
            untarred.mkdir()
            # tipbox fsyncs each restored file before it renames the folder into place.
            results["gpg --decrypt | tar -x, then sync each file"].append(measured([
                "bash", "-c", f"{decrypt} && find {untarred} -type f -exec sync {{}} +"]))
            for path in (ours, theirs):
                path.unlink()
            for folder in (restored, untarred, root / "restored-keys"):
                shutil.rmtree(folder, ignore_errors=True)
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
        subprocess.run(["gpgconf", "--homedir", str(room.secret_home), "--kill", "gpg-agent"],
                       check=False)
        print()
        print("| step | seconds | MiB/s | peak RSS MiB |")
        print("|---|---:|---:|---:|")
        for name, runs in results.items():
            seconds = statistics.median(r[0] for r in runs)
            peak = max(r[1] for r in runs)
            print(f"| {name} | {seconds:.2f} | {size / MIB / seconds:.0f} | {peak:.1f} |")
        for ours_name, theirs_name in (("tipbox backup", "tar | gpg --symmetric"),
                                       ("tipbox restore", "gpg --decrypt | tar -x")):
            ratio = (statistics.median(r[0] for r in results[ours_name])
                     / statistics.median(r[0] for r in results[theirs_name]))
            print(f"{ours_name} / {theirs_name}: {ratio:.2f}x the time")


if __name__ == "__main__":
    _ = resource  # the probe's module, imported here so a missing one fails early
    main()
