"""What the streaming check of browser-encrypted items costs, per MiB of upload.

Feeds the same SEIPD body through EncryptedMessageCheck in 1 MiB reads (as the upload
path does) framed three ways, interleaved over several rounds, and prints the median CPU
time per MiB and its ratio to the first, the baseline:

- 64 KiB partial-length chunks: what OpenPGP.js writes when it streams a file;
- 512-octet chunks: the smallest the check accepts (the worst case still accepted);
- 1-octet chunks with the 512-octet floor lifted: what an attacker could make the server
  do before the floor (only this script lifts it).

    .venv/bin/python bench/packet_check.py [--mib 16] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tipbox.crypto import message_check
from tipbox.crypto.message_check import EncryptedMessageCheck

KEY_ID = "1111111111111111"
RECIPIENTS = {"F" * 40: (KEY_ID,)}
READ = 1024 * 1024


def pkesk() -> bytes:
    """A v3 PKESK to KEY_ID (X25519: 32-octet ephemeral key, then a counted wrapped key)."""
    body = bytes([3]) + bytes.fromhex(KEY_ID) + bytes([25]) + bytes(32) + b"\x10" + bytes(16)
    return bytes([0xC1, len(body)]) + body


def seipd(size: int, chunk_exp: int) -> bytes:
    body = b"\x01" + bytes(size - 1)
    step = 1 << chunk_exp
    out = bytearray([0xD2])
    pos = 0
    while len(body) - pos > step:
        out += bytes([224 + chunk_exp]) + body[pos:pos + step]
        pos += step
    rest = len(body) - pos
    out += b"\xff" + rest.to_bytes(4, "big") + body[pos:]
    return bytes(out)


def cpu_per_mib(blob: bytes) -> float:
    check = EncryptedMessageCheck(RECIPIENTS)
    start = time.process_time()
    for pos in range(0, len(blob), READ):
        check.feed(blob[pos:pos + READ])
    check.finish()
    return (time.process_time() - start) / (len(blob) / READ)


def with_floor(floor: int, run: Callable[[], float]) -> float:
    saved = message_check.MIN_PARTIAL_CHUNK
    message_check.MIN_PARTIAL_CHUNK = floor
    try:
        return run()
    finally:
        message_check.MIN_PARTIAL_CHUNK = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=16, help="body size (1-octet case: 1/16)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    size = args.mib * READ
    cases = {
        "64 KiB chunks (OpenPGP.js)": pkesk() + seipd(size, 16),
        "512-octet chunks (floor)": pkesk() + seipd(size, 9),
        # A sixteenth of the size: at 1 octet per chunk the full size takes minutes.
        "1-octet chunks (no floor)": pkesk() + seipd(max(size // 16, READ), 0),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, blob in cases.items():
            floor = 1 if name.startswith("1-octet") else message_check.MIN_PARTIAL_CHUNK
            times[name].append(with_floor(floor, lambda blob=blob: cpu_per_mib(blob)))
    base = statistics.median(times[next(iter(cases))])
    print(f"{'framing':30} {'CPU ms/MiB':>11} {'ratio':>7}")
    for name, samples in times.items():
        med = statistics.median(samples)
        print(f"{name:30} {med * 1000:11.2f} {med / base:7.1f}")
    refused = pkesk() + seipd(READ, 0)
    try:
        cpu_per_mib(refused)
    except message_check.MessageRefused as exc:
        print(f"1-octet chunks with the floor: refused ({exc.reason.name}) at the first chunk")


if __name__ == "__main__":
    main()
