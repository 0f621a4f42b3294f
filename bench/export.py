"""Export bundle memory: the newsroom worker's peak RSS while it streams a 10 MiB and a
1 GiB bundle over real HTTP. The bundle is built as it is sent, so the two peaks should be
about the same.

    .venv/bin/python bench/export.py [--sizes 10M,1G] [--item-mib 64]

The "ciphertext" files are random bytes placed in the store with matching rows: export
never decrypts, so real OpenPGP would only slow the set-up down.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyotp
from sqlalchemy import insert

from tests.e2e.server import HttpSource, tipbox_server
from tests.helpers import csrf_from, make_newsroom
from tipbox.db import make_engine
from tipbox.models import Item, ItemKind, Source
from tipbox.storage import new_item_id

MIB = 1024 * 1024


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": MIB, "G": 1024 * MIB}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].isalpha() else int(text)


def seed(data_dir: Path, url: str, total: int, item_bytes: int, designation: str) -> int:
    """One source holding ``total`` bytes of items; returns its id."""
    store = data_dir / "store"
    engine = make_engine(url)
    day = dt.date.today()
    with engine.begin() as conn:
        source_id = conn.execute(insert(Source).returning(Source.id), {
            "codename_hash": secrets.token_hex(32), "designation": designation,
            "created_on": day, "last_activity_on": day}).scalar_one()
        left, seq, rows = total, 0, []
        chunk = os.urandom(MIB)
        while left > 0:
            size = min(item_bytes, left)
            item_id = new_item_id()
            with (store / f"{item_id}.gpg").open("wb") as fh:
                for _ in range(size // MIB):
                    fh.write(chunk)
                fh.write(chunk[:size % MIB])
            seq += 1
            rows.append({"id": item_id, "source_id": source_id, "seq": seq,
                         "kind": ItemKind.FILE, "size": size, "key_fingerprints": "A" * 40,
                         "submitted_on": day})
            left -= size
        conn.execute(insert(Item), rows)
    engine.dispose()
    return int(source_id)


def worker_pid(master: int) -> int:
    for _ in range(100):
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError("no gunicorn worker")


def rss_kib(pid: int) -> int:
    match = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) if match else 0


def download(base: str, cookie: str, source_id: int, token: str) -> tuple[int, float]:
    """POST the bulk download and read the stream to the end; (bytes, seconds)."""
    netloc = urllib.parse.urlsplit(base).netloc
    conn = http.client.HTTPConnection(netloc, timeout=600)
    body = urllib.parse.urlencode({"csrf_token": token, "action": "download_unread",
                                   "source": str(source_id)})
    t0 = time.perf_counter()
    conn.request("POST", "/bulk", body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
    resp = conn.getresponse()
    assert resp.status == 200, resp.status
    total = 0
    while chunk := resp.read(MIB):
        total += len(chunk)
    conn.close()
    return total, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10M,1G")
    parser.add_argument("--item-mib", type=int, default=64)
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        room = make_newsroom(root / "room", "Bench Newsroom")
        data = root / "data"
        env = {"TIPBOX_DATA_DIR": str(data), "TIPBOX_KEYS_DIR": str(room.keys_dir),
               "TIPBOX_SCRYPT_N": "16"}
        with tipbox_server("newsroom", env, root / "server.log") as server:
            url = f"sqlite:///{data / 'tipbox.db'}"
            ids = [seed(data, url, size, args.item_mib * MIB, f"bench {i}")
                   for i, size in enumerate(sizes)]
            out = subprocess.run([str(Path(sys.executable).with_name("tipbox")), "users", "add",
                                  "bench"], env={**os.environ, **env}, capture_output=True,
                                 text=True, check=True).stdout
            passphrase = re.search(r"Passphrase:\s+(.+)", out)
            secret = re.search(r"TOTP secret:\s+([A-Z2-7]+)", out)
            assert passphrase and secret
            client = HttpSource(server.url)
            _, page, _ = client.request("/login")
            status, _, _ = client.post_form("/login", {
                "csrf_token": csrf_from(page), "username": "bench",
                "passphrase": passphrase.group(1).strip(),
                "code": pyotp.TOTP(secret.group(1)).now()})
            assert status == 302, status
            cookie = "; ".join(f"{c.name}={c.value}" for c in client.jar)
            pid = worker_pid(server.process.pid)
            print(f"worker RSS at rest: {rss_kib(pid) / 1024:.1f} MiB")
            for size, source_id in zip(sizes, ids, strict=True):
                _, page, _ = client.request("/")
                peak = [rss_kib(pid)]
                stop = threading.Event()

                def sample(peak: list[int] = peak, stop: threading.Event = stop) -> None:
                    while not stop.is_set():
                        peak[0] = max(peak[0], rss_kib(pid))
                        time.sleep(0.02)

                sampler = threading.Thread(target=sample)
                sampler.start()
                got, seconds = download(server.url, cookie, source_id, csrf_from(page))
                stop.set()
                sampler.join()
                print(f"bundle of {size / MIB:7.0f} MiB: {got / MIB:8.1f} MiB sent in "
                      f"{seconds:5.1f} s ({got / MIB / seconds:6.1f} MiB/s), worker peak RSS "
                      f"{peak[0] / 1024:6.1f} MiB")
        subprocess.run(["gpgconf", "--homedir", str(room.secret_home), "--kill", "gpg-agent"],
                       check=False)


if __name__ == "__main__":
    main()
