"""Offline tool benchmark: ``tipbox-open`` against a plain shell loop of ``gpg --decrypt``.

Run from the repository root:

    .venv/bin/python bench/offline_open.py [--items 1000] [--size-kib 64] [--repeat 3]

One run makes a throwaway newsroom key pair (no passphrase), encrypts ``--items`` random
files of ``--size-kib`` KiB each to it with tipbox's own wrapper (as the server does),
writes them into one export bundle exactly as docs/bundle-format.md describes, and then
times, ``--repeat`` times each and alternating:

* ``tipbox-open BUNDLE --out DIR --gnupghome HOME --quiet`` (everything it does: the tar
  and manifest checks, copying and hashing each ciphertext, the packet check, gpg, naming,
  the index), and
* ``for f in items/*.gpg; do gpg --homedir HOME --batch --yes -o out/... --decrypt "$f";
  done`` in bash over the same ciphertexts, already unpacked (so the baseline does less).

It prints the medians and the ratio tipbox-open / gpg loop. It writes nothing outside a
temporary folder, which it removes.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from tipbox.crypto.gpg import GnuPG

REPO = Path(__file__).resolve().parent.parent


def new_id() -> str:
    import base64

    return base64.b32encode(secrets.token_bytes(17)).decode().lower()[:26]


def make_items(gpg: GnuPG, fpr: str, count: int, size: int, items_dir: Path,
               ) -> list[dict[str, object]]:
    items_dir.mkdir()
    entries = []
    for n in range(count):
        item_id = new_id()
        path = items_dir / f"{item_id}.gpg"
        gpg.encrypt_stream(io.BytesIO(os.urandom(size)), [fpr], path,
                           filename=f"document-{n:04d}.bin")
        data = path.read_bytes()
        entries.append({"id": item_id, "source": f"source {n % 50:02d}", "kind": "file",
                        "seq": n // 50 + 1, "day": "2026-11-29", "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "key_fingerprints": [fpr]})
    return entries


def write_bundle(path: Path, items_dir: Path, entries: list[dict[str, object]]) -> None:
    bundle_id = new_id()
    top = f"tipbox-{bundle_id}"
    manifest = json.dumps({"format": "tipbox-bundle", "version": 1, "bundle_id": bundle_id,
                           "created_on": "2026-11-30", "items": entries}, indent=1).encode()
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            data = (items_dir / f"{entry['id']}.gpg").read_bytes()
            _member(tar, f"{top}/items/{entry['id']}.gpg", data)
        _member(tar, f"{top}/manifest.json", manifest)


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, 0
    tar.addfile(info, io.BytesIO(data))


def time_tipbox_open(bundle: Path, out: Path, home: Path) -> float:
    script = Path(sys.executable).parent / "tipbox-open"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "tipbox.offline"]
    start = time.perf_counter()
    proc = subprocess.run([*argv, str(bundle), "--out", str(out), "--gnupghome", str(home),
                           "--quiet"], capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    return elapsed


def time_gpg_loop(items_dir: Path, out: Path, home: Path) -> float:
    out.mkdir()
    loop = ('for f in "$1"/*.gpg; do '
            'gpg --homedir "$2" --batch --quiet --yes -o "$3/$(basename "$f" .gpg)" '
            '--decrypt "$f" || exit 1; done')
    start = time.perf_counter()
    subprocess.run(["bash", "-c", loop, "loop", str(items_dir), str(home), str(out)],
                   check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--size-kib", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="tipbox-bench-open-"))
    home = root / "gnupg"
    try:
        gpg = GnuPG(home)
        fpr = gpg.generate_key("Bench Newsroom", "bench@example.invalid", passphrase=None)
        t0 = time.perf_counter()
        entries = make_items(gpg, fpr, args.items, args.size_kib * 1024, root / "items")
        bundle = root / "bundle.tar"
        write_bundle(bundle, root / "items", entries)
        print(f"setup: {args.items} items of {args.size_kib} KiB encrypted and bundled "
              f"({bundle.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.1f} s")
        # Warm the agent and the page cache so neither run pays for them alone.
        time_gpg_loop(root / "items", root / "warm", home)

        opens, loops = [], []
        for n in range(args.repeat):
            runs = [("open", lambda n=n: time_tipbox_open(bundle, root / f"open{n}", home)),
                    ("loop", lambda n=n: time_gpg_loop(root / "items", root / f"loop{n}", home))]
            for name, run in runs if n % 2 == 0 else reversed(runs):
                (opens if name == "open" else loops).append(run())
            shutil.rmtree(root / f"open{n}")
            shutil.rmtree(root / f"loop{n}")
        open_s, loop_s = statistics.median(opens), statistics.median(loops)
        gpg_version = subprocess.run(["gpg", "--version"], capture_output=True, text=True,
                                     check=True).stdout.splitlines()[0]
        print(f"machine: {os.cpu_count()} cores, {platform.python_implementation()} "
              f"{platform.python_version()}, {gpg_version}")
        print(f"tipbox-open: runs {', '.join(f'{t:.2f}' for t in opens)} s; "
              f"median {open_s:.2f} s ({args.items / open_s:.0f} items/s)")
        print(f"gpg loop:    runs {', '.join(f'{t:.2f}' for t in loops)} s; "
              f"median {loop_s:.2f} s ({args.items / loop_s:.0f} items/s)")
        print(f"ratio tipbox-open / gpg loop: {open_s / loop_s:.2f}")
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                       capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
