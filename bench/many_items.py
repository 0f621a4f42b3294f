"""What one submission of many tiny items costs the server, per byte sent.

Run from the repository root:

    .venv/bin/python bench/many_items.py [--items 1000] [--repeat 3]

A throwaway instance and a real ``tipbox serve source`` on a loopback port (as
bench/upload.py makes them). One source posts, without JavaScript, a submission of
``--items`` one-byte files (each costs a gpg process), then, as encrypt.js would, the same
number of small OpenPGP messages (each a temp file, an fsync and a row). For each the
script prints the request body's size, the wall time to the answer, and the CPU seconds
of the gunicorn worker and of its gpg children: the cost one client buys with that many
bytes. Every loop is bounded; loopback only.
"""

from __future__ import annotations

import argparse
import http.client
import secrets
import sys
import tempfile
import time
from pathlib import Path

from upload import ProcTimes, SourceClient, hidden_inputs, make_instance, running_server

from tipbox.crypto.gpg import GnuPG


def multipart(boundary: str, token: str, files: list[tuple[str, bytes]],
              fields: list[tuple[str, str]]) -> bytes:
    out = bytearray()
    for name, value in [("csrf_token", token), *fields]:
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                f"{value}\r\n").encode()
    for name, data in files:
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
                f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                ).encode() + data + b"\r\n"
    return bytes(out) + f"--{boundary}--\r\n".encode()


def post(client: SourceClient, path: str, body: bytes, boundary: str,
         accept: str = "text/html") -> tuple[int, float]:
    conn = http.client.HTTPConnection("127.0.0.1", client.port, timeout=600)
    try:
        start = time.perf_counter()
        conn.request("POST", path, body=body, headers=client._headers({
            "Content-Type": f"multipart/form-data; boundary={boundary}", "Accept": accept}))
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - start
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tipbox-bench-") as tmp:
        instance = make_instance(Path(tmp))
        ciphertext = Path(tmp) / "one.gpg"
        GnuPG(instance.secret_home).encrypt_bytes(b"x", [instance.fingerprint], ciphertext)
        message = ciphertext.read_bytes()
        with running_server(instance) as server:
            client = SourceClient(server.port)
            client.new_codename()
            print("| form | items | body bytes | status | wall s | worker CPU s | gpg CPU s |")
            print("|---|---:|---:|---:|---:|---:|---:|")
            for _ in range(min(args.repeat, 10)):
                for form in ("plain", "encrypted"):
                    token = hidden_inputs(client.get("/submit"))["csrf_token"]
                    boundary = "bench" + secrets.token_hex(8)
                    if form == "plain":
                        body = multipart(boundary, token, [(f"{n}.txt", b"x") for n in
                                                           range(args.items)], [])
                        path, accept = "/submit", "text/html"
                    else:
                        body = multipart(boundary, token, [(f"{n}.gpg", message) for n in
                                                           range(args.items)],
                                         [("fingerprints", instance.fingerprint)])
                        path, accept = "/submit/encrypted", "application/json"
                    before = ProcTimes.of(server.worker)
                    status, wall = post(client, path, body, boundary, accept)
                    spent = ProcTimes.of(server.worker) - before
                    print(f"| {form} | {args.items} | {len(body):,} | {status} | {wall:.1f} | "
                          f"{spent.user + spent.system:.1f} | "
                          f"{spent.children_user + spent.children_system:.1f} |")
                    sys.stdout.flush()


if __name__ == "__main__":
    main()
