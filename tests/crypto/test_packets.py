"""The packet reader that judges key files before gpg sees them: bounded, and it fails only
with PacketError, whatever the bytes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tests.crypto.keyfactory import gpg, new_key, signature_packet
from tipbox.crypto.packets import (
    SUBPACKET_FEATURES,
    PacketError,
    armor_kinds,
    asks_for_ocb,
    dearmor,
    has_secret_material,
    weak_binding_hashes,
)


def outcome(judge: Callable[[bytes], object], data: bytes) -> object:
    try:
        return judge(data)
    except PacketError:
        return PacketError


@given(st.binary(max_size=512))
def test_any_bytes_give_an_answer_or_packet_error(data: bytes) -> None:
    assert outcome(asks_for_ocb, data) in (True, False, PacketError)
    found = outcome(weak_binding_hashes, data)
    assert found is PacketError or isinstance(found, list)
    assert has_secret_material(data) in (True, False)


def test_the_features_flag_is_read_from_the_hashed_subpackets(tmp_path: Path) -> None:
    home = tmp_path / "k"
    fpr = new_key(home)
    data = gpg(home, "--export", fpr)
    assert asks_for_ocb(data) is False
    flipped = data.replace(bytes([2, SUBPACKET_FEATURES, 0x01]),
                           bytes([2, SUBPACKET_FEATURES, 0x03]), 1)
    assert flipped != data and asks_for_ocb(flipped) is True


def test_a_truncated_key_is_a_packet_error_not_a_crash(tmp_path: Path) -> None:
    home = tmp_path / "k"
    data = gpg(home, "--export", new_key(home))
    outcomes = {outcome(asks_for_ocb, data[:cut]) for cut in range(1, len(data))}
    assert outcomes == {False, PacketError}  # never True, never another exception


def test_a_certification_by_someone_else_does_not_speak_for_the_key(tmp_path: Path) -> None:
    home = tmp_path / "k"
    data = gpg(home, "--export", new_key(home))
    other = bytes(range(20))
    by_other = signature_packet(0x10, hashed=bytes([22, 33, 4]) + other
                                + bytes([2, SUBPACKET_FEATURES, 0x03]))
    assert asks_for_ocb(data + by_other) is False
    unsigned = signature_packet(0x13, hashed=bytes([2, SUBPACKET_FEATURES, 0x03]))
    assert asks_for_ocb(data + unsigned) is True  # says nobody made it: counted


def test_v6_signatures_are_read_with_four_octet_area_lengths() -> None:
    hashed = bytes([2, SUBPACKET_FEATURES, 0x03])
    body = (bytes([6, 0x13, 27, 10]) + len(hashed).to_bytes(4, "big") + hashed
            + (0).to_bytes(4, "big") + b"\0\0")
    packet = bytes([0xC0 | 2, len(body)]) + body
    assert asks_for_ocb(packet) is True


def test_armor_blocks_are_found_after_an_unterminated_one(tmp_path: Path) -> None:
    home = tmp_path / "k"
    fpr = new_key(home)
    public = gpg(home, "--armor", "--export", fpr)
    secret = gpg(home, "--armor", "--export-secret-keys", fpr)
    # A secret key hiding behind a BEGIN line that never ends is still found.
    hidden = b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n" * 1000 + secret
    assert armor_kinds(hidden) == ["PRIVATE KEY BLOCK"] and has_secret_material(hidden)
    both = public + public.replace(b"\n", b"\r\n")
    assert armor_kinds(both) == ["PUBLIC KEY BLOCK", "PUBLIC KEY BLOCK"]
    assert dearmor(both) == gpg(home, "--export", fpr) * 2


def test_a_megabyte_of_begin_lines_is_refused_as_unterminated_armor() -> None:
    flood = b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n" * 30_000
    assert outcome(dearmor, flood) is PacketError and armor_kinds(flood) == []
