"""The streaming check of browser-encrypted items: exactly PKESK+ then SEIPD v1, nothing else.

Property tests compare the streaming check, fed in chunks of any size, with a plain
in-memory reading of the same bytes written independently below, over random garbage,
truncations, extensions and random packet sequences.
"""

from __future__ import annotations

import json
import os
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from tests.helpers import Newsroom
from tipbox.crypto.gpg import GnuPG
from tipbox.crypto.keyring import load_keyring
from tipbox.crypto.message_check import (
    MAX_PKESK_BODY,
    MIN_PARTIAL_CHUNK,
    MIN_SEIPD_BODY,
    EncryptedMessageCheck,
    MessageRefused,
    Refusal,
    pkesk_key_id,
)

# Two newsroom keys; the first has two encryption subkeys.
RECIPIENTS = {
    "A" * 40: ("1111111111111111", "2222222222222222"),
    "B" * 40: ("3333333333333333",),
}
OTHER_IDS = ("4444444444444444", "0000000000000000", "2222222222222223")


def verdict(data: bytes, chunks: list[int] | None = None,
            recipients: dict[str, tuple[str, ...]] = RECIPIENTS) -> Refusal | None:
    """None when the check accepts ``data`` fed in pieces of the given sizes."""
    check = EncryptedMessageCheck(recipients)
    pos = 0
    try:
        for size in chunks or []:
            check.feed(data[pos:pos + size])
            pos += size
        check.feed(data[pos:])
        check.finish()
    except MessageRefused as exc:
        return exc.reason
    return None


# --- an independent in-memory reading: the oracle ------------------------------------------


def oracle_accepts(data: bytes, recipients: dict[str, tuple[str, ...]] = RECIPIENTS) -> bool:
    owner = {kid: fpr for fpr, kids in recipients.items() for kid in kids}
    packets: list[tuple[int, bytes, bool]] = []
    pos = 0
    while pos < len(data):
        ctb = data[pos]
        pos += 1
        if not ctb & 0x80:
            return False
        if ctb & 0x40:
            tag, body, used_partial = ctb & 0x3F, b"", False
            while True:
                if pos >= len(data):
                    return False
                first = data[pos]
                if first < 192:
                    length, partial, pos = first, False, pos + 1
                elif first < 224:
                    if pos + 2 > len(data):
                        return False
                    length, partial = ((first - 192) << 8) + data[pos + 1] + 192, False
                    pos += 2
                elif first == 255:
                    if pos + 5 > len(data):
                        return False
                    length, partial = int.from_bytes(data[pos + 1:pos + 5], "big"), False
                    pos += 5
                else:
                    length, partial, pos = 1 << (first & 0x1F), True, pos + 1
                    if length < MIN_PARTIAL_CHUNK:
                        return False
                if pos + length > len(data):
                    return False
                body += data[pos:pos + length]
                pos += length
                used_partial = used_partial or partial
                if not partial:
                    break
        else:
            if ctb & 3 == 3:
                return False
            size = 1 << (ctb & 3)
            if pos + size > len(data):
                return False
            length = int.from_bytes(data[pos:pos + size], "big")
            pos += size
            if pos + length > len(data):
                return False
            tag, body, used_partial = (ctb >> 2) & 0x0F, data[pos:pos + length], False
            pos += length
        packets.append((tag, body, used_partial))
    if len(packets) < 2:
        return False
    *pkesks, (tag, seipd, _) = packets
    seen: set[str] = set()
    for ptag, body, partial in pkesks:
        if ptag != 1 or partial or len(body) > MAX_PKESK_BODY:
            return False
        try:
            kid = pkesk_key_id(body)
        except MessageRefused:
            return False
        if kid in seen or kid not in owner:
            return False
        seen.add(kid)
    covered = {owner[k] for k in seen}
    return (covered == set(recipients) and tag == 18 and len(seipd) >= MIN_SEIPD_BODY
            and seipd[0] == 1)


# --- building packets -----------------------------------------------------------------------


@dataclass(frozen=True)
class Framing:
    legacy_size: int | None  # 1, 2 or 4 length octets in the legacy format; None: new format
    new_form: int = 0  # new format: 0 shortest, 1 two-octet when possible, 2 five-octet
    partial_exp: int | None = None  # new format: split into 2**exp-octet partial chunks


def new_length(length: int, form: int) -> bytes:
    if form == 0 and length < 192:
        return bytes([length])
    if form <= 1 and 192 <= length < 8384:
        length -= 192
        return bytes([(length >> 8) + 192, length & 0xFF])
    return b"\xff" + length.to_bytes(4, "big")


def framed(tag: int, body: bytes, framing: Framing) -> tuple[bytes, bool]:
    """The packet's octets, and whether partial lengths were used."""
    if framing.legacy_size is not None and tag < 16:
        kind = {1: 0, 2: 1, 4: 2}[framing.legacy_size]
        if len(body) < 1 << (8 * framing.legacy_size):
            return bytes([0x80 | tag << 2 | kind]) + len(body).to_bytes(framing.legacy_size,
                                                                         "big") + body, False
    out = bytearray([0xC0 | tag])
    pos = 0
    if framing.partial_exp is not None:
        step = 1 << framing.partial_exp
        while len(body) - pos > step:
            out += bytes([224 + framing.partial_exp]) + body[pos:pos + step]
            pos += step
    return bytes(out + new_length(len(body) - pos, framing.new_form) + body[pos:]), pos > 0


def packet(tag: int, body: bytes, framing: Framing) -> bytes:
    return framed(tag, body, framing)[0]


def pkesk_body(key_id: str, algorithm: int, data: bytes) -> bytes:
    head = bytes([3]) + bytes.fromhex(key_id) + bytes([algorithm])
    mpi = (len(data) * 8).to_bytes(2, "big") + data
    if algorithm == 1:
        return head + mpi
    if algorithm == 18:
        return head + mpi + bytes([len(data[:40])]) + data[:40]
    return head + bytes(32) + bytes([len(data[:40])]) + data[:40]  # 25: X25519


framings = st.builds(
    Framing,
    legacy_size=st.sampled_from([None, 1, 2, 4]),
    new_form=st.integers(0, 2),
    partial_exp=st.one_of(st.none(), st.integers(0, 10)),
)
pkesk_payloads = st.binary(min_size=1, max_size=300).map(
    lambda b: b if b[0] else b"\x01" + b[1:])  # an MPI's leading octet is never zero


@st.composite
def valid_messages(draw: st.DrawFn) -> bytes:
    ids: list[str] = []
    for kids in RECIPIENTS.values():
        ids += draw(st.lists(st.sampled_from(kids), min_size=1, unique=True))
    ids = draw(st.permutations(ids))
    out = b"".join(
        packet(1, pkesk_body(kid, draw(st.sampled_from([1, 18, 25])), draw(pkesk_payloads)),
               draw(framings.filter(lambda f: f.partial_exp is None)))
        for kid in ids)
    seipd = b"\x01" + draw(st.binary(min_size=MIN_SEIPD_BODY - 1, max_size=3000))
    return out + packet(18, seipd, draw(framings.filter(
        lambda f: f.partial_exp is None or 1 << f.partial_exp >= MIN_PARTIAL_CHUNK)))


def chunkings(data: bytes) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, max(1, len(data))), max_size=20)


# --- properties -----------------------------------------------------------------------------

HYP = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@HYP
@given(st.data())
def test_valid_messages_are_accepted_however_they_are_chunked(data: st.DataObject) -> None:
    message = data.draw(valid_messages())
    assert oracle_accepts(message)
    assert verdict(message, data.draw(chunkings(message))) is None


def resumed_verdict(data: bytes, cuts: list[int]) -> Refusal | None:
    """As :func:`verdict`, but the check is saved to JSON and rebuilt at every cut, as a
    server that restarts between the pieces of an upload does (tipbox.intake.pieces)."""
    check = EncryptedMessageCheck(RECIPIENTS)
    pos = 0
    try:
        for end in [*sorted(cuts), len(data)]:
            check.feed(data[pos:end])
            pos = max(pos, end)
            check = EncryptedMessageCheck.resume(
                RECIPIENTS, json.loads(json.dumps(check.snapshot())))
        check.finish()
    except MessageRefused as exc:
        return exc.reason
    return None


@HYP
@given(st.data())
def test_a_check_rebuilt_from_its_snapshot_at_any_cut_agrees_with_one_fed_whole(
        data: st.DataObject) -> None:
    message = data.draw(valid_messages())
    cuts = data.draw(st.lists(st.integers(0, len(message)), max_size=8))
    assert resumed_verdict(message, cuts) is None
    cut = data.draw(st.integers(0, len(message) - 1))
    assert resumed_verdict(message[:cut], [c for c in cuts if c <= cut]) is not None
    assert resumed_verdict(message + b"\x00", cuts) is Refusal.TRAILING_DATA


def test_a_snapshot_for_other_keys_is_not_taken_up() -> None:
    check = EncryptedMessageCheck(RECIPIENTS)
    check.feed(pkesks("1111111111111111"))
    with pytest.raises(ValueError, match="other keys"):
        EncryptedMessageCheck.resume({"C" * 40: ("5555555555555555",)}, check.snapshot())


@HYP
@given(st.data())
def test_every_truncation_of_a_valid_message_is_refused(data: st.DataObject) -> None:
    message = data.draw(valid_messages())
    cut = data.draw(st.integers(0, len(message) - 1))
    assert verdict(message[:cut], data.draw(chunkings(message[:cut]))) is not None


@HYP
@given(st.data())
def test_anything_after_a_valid_message_is_refused(data: st.DataObject) -> None:
    message = data.draw(valid_messages())
    extra = data.draw(st.binary(min_size=1, max_size=100))
    assert verdict(message + extra, data.draw(chunkings(message))) is Refusal.TRAILING_DATA


@HYP
@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=10))
@example(b"-----BEGIN PGP MESSAGE-----\n\nwcBMA...\n-----END PGP MESSAGE-----\n", [])
@example(b"", [])
@example(b"\x84", [])
@example(b"\xc1\xff\xff\xff\xff\xff", [])
def test_random_bytes_never_crash_and_agree_with_the_oracle(blob: bytes,
                                                           chunks: list[int]) -> None:
    result = verdict(blob, chunks)  # any other exception fails the test
    assert (result is None) == oracle_accepts(blob)


pkesk_specs = st.tuples(st.just(1), st.sampled_from(
    [k for kids in RECIPIENTS.values() for k in kids] + list(OTHER_IDS)))
seipd_specs = st.tuples(st.just(18), st.sampled_from([1, 1, 1, 2]))
other_specs = st.tuples(st.sampled_from([0, 2, 3, 8, 9, 11, 20, 60]), st.just(0))
any_spec = st.one_of(pkesk_specs, seipd_specs, other_specs)
# Wholly random sequences; "some PKESKs, a last packet, perhaps one more"; and PKESKs to
# distinct newsroom subkeys then a SEIPD: the valid shape and its near misses come up often.
sequences = st.one_of(
    st.lists(any_spec, max_size=6),
    st.builds(lambda head, last, tail: [*head, last, *tail], st.lists(pkesk_specs, max_size=4),
              st.one_of(seipd_specs, other_specs), st.lists(any_spec, max_size=1)),
    st.builds(lambda ids, last: [*((1, i) for i in ids), last],
              st.lists(st.sampled_from([k for kids in RECIPIENTS.values() for k in kids]),
                       min_size=1, max_size=3, unique=True), seipd_specs),
)


@HYP
@given(sequences, st.data())
def test_random_packet_sequences_are_accepted_only_in_the_valid_shape(
        specs: list[tuple[int, object]], data: st.DataObject) -> None:
    blob = b""
    shape: list[tuple[int, object, bool]] = []
    for tag, detail in specs:
        payload = data.draw(st.binary(min_size=1, max_size=200))
        if tag == 1:
            body = pkesk_body(str(detail), 18, payload if payload[0] else b"\x01" + payload)
        elif tag == 18:
            body = bytes([int(str(detail))]) + payload.ljust(MIN_SEIPD_BODY, b"\x00")
        else:
            body = payload
        octets, partial = framed(tag, body, data.draw(framings))
        blob += octets
        shape.append((tag, detail, partial))
    ids = [str(d) for t, d, _ in shape[:-1] if t == 1]
    owners = {kid: fpr for fpr, kids in RECIPIENTS.items() for kid in kids}
    expected = (
        len(shape) >= 2
        and all(t == 1 and not partial for t, _, partial in shape[:-1])
        and len(set(ids)) == len(ids) and all(i in owners for i in ids)
        and {owners[i] for i in ids} == set(RECIPIENTS)
        and shape[-1][:2] == (18, 1)
        # These bodies are under 512 octets: any partial chunk in them is too short.
        and not shape[-1][2]
    )
    event("valid shape" if expected else "refused")
    assert (verdict(blob, data.draw(chunkings(blob))) is None) == expected
    assert oracle_accepts(blob) == expected


# --- one rule at a time -----------------------------------------------------------------------


def pkesks(*ids: str) -> bytes:
    return b"".join(packet(1, pkesk_body(i, 18, b"\x40" * 33), Framing(None)) for i in ids)


def message_to(*ids: str, seipd: bytes = b"\x01" + bytes(1500)) -> bytes:
    return pkesks(*ids) + packet(18, seipd, Framing(None, partial_exp=9))


ALL = ("1111111111111111", "3333333333333333")


@pytest.mark.parametrize(("blob", "reason"), [
    (message_to(*ALL), None),
    (message_to("1111111111111111", "2222222222222222", "3333333333333333"), None),
    (message_to("1111111111111111"), Refusal.MISSING_RECIPIENT),
    (message_to(*ALL, "4444444444444444"), Refusal.UNKNOWN_RECIPIENT),
    (message_to(*ALL, "0000000000000000"), Refusal.UNKNOWN_RECIPIENT),  # wildcard
    (message_to(*ALL, "1111111111111111"), Refusal.MALFORMED),  # the same one twice
    (message_to(), Refusal.MISSING_RECIPIENT),
    (message_to(*ALL, seipd=b"\x02" + bytes(60)), Refusal.UNSUPPORTED),  # SEIPD v2 (AEAD)
    (message_to(*ALL, seipd=b"\x01" + bytes(10)), Refusal.TRUNCATED),
    (message_to(*ALL)[:-1], Refusal.TRUNCATED),
    (message_to(*ALL) + b"\x00", Refusal.TRAILING_DATA),
    (packet(1, b"\x06" + bytes(60), Framing(None)) + message_to(*ALL), Refusal.UNSUPPORTED),
    (packet(3, bytes(20), Framing(None)) + message_to(*ALL), Refusal.UNSUPPORTED),  # SKESK
    (pkesks(*ALL) + packet(9, bytes(60), Framing(None)), Refusal.UNSUPPORTED),  # no MDC
    (packet(11, b"b\x00" + bytes(4) + b"plain", Framing(None)), Refusal.NOT_ENCRYPTED),
    (packet(8, b"\x01" + bytes(30), Framing(None)), Refusal.NOT_ENCRYPTED),
    (b"\x87" + message_to(*ALL), Refusal.MALFORMED),  # legacy indeterminate length
    (b"plain text", Refusal.NOT_ENCRYPTED),
    (b"-----BEGIN PGP MESSAGE-----", Refusal.NOT_ENCRYPTED),
    (b"", Refusal.NOT_ENCRYPTED),
    (packet(1, pkesk_body("1111111111111111", 18, b"\x40" * 33) + b"\x00", Framing(None)),
     Refusal.MALFORMED),  # a PKESK with an octet more than its fields
    (packet(1, pkesk_body("1111111111111111", 16, b"\x40" * 33), Framing(None)),
     Refusal.UNSUPPORTED),  # ElGamal
    (packet(1, bytes([3]) + bytes.fromhex(ALL[0]) + b"\x12" + bytes(MAX_PKESK_BODY),
            Framing(None)), Refusal.MALFORMED),
])
def test_each_rule(blob: bytes, reason: Refusal | None) -> None:
    assert verdict(blob) is reason
    assert verdict(blob, [1] * len(blob)) is reason  # one octet at a time


def test_a_pkesk_may_not_use_partial_lengths() -> None:
    pkesk = pkesk_body(ALL[0], 18, b"\x40" * 40)
    blob = packet(1, pkesk, Framing(None, partial_exp=4)) + message_to(ALL[1])
    assert verdict(blob) is Refusal.MALFORMED


@pytest.mark.parametrize("exp", [0, 4, 8])
def test_partial_chunks_shorter_than_512_octets_are_refused(exp: int) -> None:
    # One octet per chunk cost 130 times the CPU of a normal stream: a 2 GiB upload made
    # of them would have held a worker for 45 minutes.
    seipd = b"\x01" + bytes(4096)
    assert verdict(pkesks(*ALL) + packet(18, seipd, Framing(None, partial_exp=exp))) \
        is Refusal.MALFORMED


def test_partial_chunks_of_512_octets_and_more_are_accepted() -> None:
    seipd = b"\x01" + bytes(5000)
    for exp in (9, 10, 12):
        assert 1 << exp >= MIN_PARTIAL_CHUNK
        assert verdict(pkesks(*ALL) + packet(18, seipd, Framing(None, partial_exp=exp))) \
            is None


def test_memory_stays_small_for_a_large_message() -> None:
    """32 MiB through the check in 1 MiB chunks allocates next to nothing."""
    head = pkesks(*ALL)
    chunk = b"\x01" + bytes(1024 * 1024 - 1)
    body_len = 32 * len(chunk)
    check = EncryptedMessageCheck(RECIPIENTS)
    check.feed(head + b"\xd2\xff" + body_len.to_bytes(4, "big"))
    tracemalloc.start()
    try:
        for _ in range(32):
            check.feed(chunk)
        check.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


# --- real output of gpg -------------------------------------------------------------------------


def test_gpg_output_to_the_newsroom_key_passes_and_to_another_key_does_not(
        newsroom: Newsroom, second_newsroom_key: Newsroom, tmp_path: Path) -> None:
    ring = load_keyring(newsroom.keys_dir, tmp_path / "gnupg")
    expected = ring.encryption_key_ids
    assert list(expected) == [newsroom.fingerprint]
    for name, room in (("ours", newsroom), ("theirs", second_newsroom_key)):
        out = tmp_path / f"{name}.gpg"
        GnuPG(room.secret_home).encrypt_bytes(os.urandom(100_000), [room.fingerprint], out,
                                              filename="x.bin")
        assert verdict(out.read_bytes(), recipients=expected) is (
            None if name == "ours" else Refusal.UNKNOWN_RECIPIENT)
