"""The key lifecycle: what is refused and why, proof of possession, retirement rules."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FAST_SCRYPT
from tests.crypto.keyfactory import (
    export,
    gpg,
    key_asking_for_ocb,
    new_key,
    packet,
    revoke,
    signature_packet,
)
from tipbox.audit import AuditLog
from tipbox.config import Settings
from tipbox.crypto.gpg import GnuPG
from tipbox.crypto.packets import asks_for_ocb, iter_packets
from tipbox.db import make_engine, make_session_factory
from tipbox.errors import KeyOperationRefused
from tipbox.key_registry import KeyringProvider, KeyService
from tipbox.models import KeyState
from tipbox.provisioning import initialise


@pytest.fixture
def service(tmp_path: Path) -> Iterator[KeyService]:
    settings = Settings(data_dir=tmp_path / "data", keys_dir=tmp_path / "no-keys",
                        scrypt=FAST_SCRYPT)
    initialise(settings)
    engine = make_engine(settings.database_url)
    db = make_session_factory(engine)
    yield KeyService(db, settings.gnupg_dir, AuditLog(db))
    engine.dispose()


def _key_file(tmp_path: Path, name: str, **kwargs: object) -> tuple[str, bytes, Path]:
    home = tmp_path / name
    fpr = new_key(home, **kwargs)  # type: ignore[arg-type]
    return fpr, export(home, fpr, tmp_path / f"{name}.asc").read_bytes(), home


def prove(home: Path, challenge: bytes, tmp_path: Path) -> str:
    """What the offline machine does: decrypt the challenge, read the code."""
    path = tmp_path / "challenge.gpg"
    path.write_bytes(challenge)
    text = gpg(home, "--decrypt", str(path)).decode()
    match = re.fullmatch(r"tipbox-challenge v1 [0-9A-F]{40} ([A-Z2-7]{4}(-[A-Z2-7]{4}){3})\n", text)
    assert match, text
    return match.group(1)


def test_a_key_goes_from_pending_to_active_only_with_the_challenge_code(
        service: KeyService, tmp_path: Path) -> None:
    fpr, data, home = _key_file(tmp_path, "newsroom")
    found = service.add(data, "test")
    assert found.info.fingerprint == fpr and found.algorithm == "EdDSA/ECDH"
    assert [r.state for r in service.records()] == [KeyState.PENDING]
    with pytest.raises(KeyOperationRefused, match="No challenge was issued"):
        service.activate(fpr, "ABCD", "test")
    code = prove(home, service.challenge(fpr, "test"), tmp_path)
    with pytest.raises(KeyOperationRefused, match="does not match"):
        service.activate(fpr, "WRONG-CODE-0000-0000", "test")
    assert service.records()[0].state is KeyState.PENDING
    service.activate(fpr, code.lower().replace("-", " "), "test")  # forgiving to type
    assert service.records()[0].state is KeyState.ACTIVE
    actions = [e.action for e in service.audit.recent()]
    assert actions[:4] == ["key activated", "key activation refused", "key challenge issued",
                           "key added"]


def test_a_new_challenge_replaces_the_old_one(service: KeyService, tmp_path: Path) -> None:
    fpr, data, home = _key_file(tmp_path, "k")
    service.add(data, "test")
    old = prove(home, service.challenge(fpr, "test"), tmp_path)
    new = prove(home, service.challenge(fpr, "test"), tmp_path)
    with pytest.raises(KeyOperationRefused):
        service.activate(fpr, old, "test")
    service.activate(fpr, new, "test")


def test_the_last_active_key_cannot_be_retired(service: KeyService, tmp_path: Path) -> None:
    a, data_a, _ = _key_file(tmp_path, "a")
    b, data_b, _ = _key_file(tmp_path, "b")
    service.add(data_a, "t")
    service.activate_without_proof(a, "t", "test")
    with pytest.raises(KeyOperationRefused, match="only usable active key"):
        service.retire(a, "t")
    service.add(data_b, "t")
    service.activate_without_proof(b, "t", "test")
    service.retire(a, "t")
    states = {r.fingerprint: r.state for r in service.records()}
    assert states == {a: KeyState.RETIRED, b: KeyState.ACTIVE}
    with pytest.raises(KeyOperationRefused, match="only usable active key"):
        service.retire(b, "t")
    assert "WITHOUT proof" in service.audit.recent()[-2].action


def test_the_keyring_follows_activation_and_retirement_without_a_restart(
        service: KeyService, tmp_path: Path) -> None:
    provider = KeyringProvider(service.sessions, service.gnupg_root)
    assert not provider.current().accepting
    a, data_a, _ = _key_file(tmp_path, "a")
    b, data_b, _ = _key_file(tmp_path, "b")
    service.add(data_a, "t")
    assert not provider.current().accepting  # pending keys are never encrypted to
    service.activate_without_proof(a, "t", "test")
    assert provider.current().fingerprints == (a,)
    service.add(data_b, "t")
    service.activate_without_proof(b, "t", "test")
    assert set(provider.current().fingerprints) == {a, b}
    service.retire(a, "t")
    assert provider.current().fingerprints == (b,)


def _secret_binary(tmp_path: Path) -> bytes:
    home = tmp_path / "sec"
    fpr = new_key(home)
    return gpg(home, "--export-secret-keys", fpr)


@pytest.mark.parametrize(("maker", "message"), [
    (lambda p: export(p / "h", new_key(p / "h"), p / "s.asc", secret=True).read_bytes(),
     "SECRET key material"),
    (_secret_binary, "SECRET key material"),
    (lambda p: export(p / "h", new_key(p / "h", usage="sign", subkey=None), p / "x.asc")
     .read_bytes(), "no valid encryption-capable"),
    (lambda p: export(p / "h", new_key(p / "h", expire="1d", faked_time="20200101T000000"),
                      p / "x.asc").read_bytes(), "has expired"),
    (lambda p: export(p / "h", new_key(p / "h", algo="rsa2048", usage="cert",
                                       subkey="rsa2048"), p / "x.asc").read_bytes(),
     "RSA-2048"),
    (lambda p: export(p / "h", new_key(p / "h", algo="dsa2048", usage="sign",
                                       subkey="elg2048"), p / "x.asc").read_bytes(),
     "DSA|ElGamal"),
    (lambda p: b"not a key at all", "No OpenPGP public key"),
])
def test_unfit_keys_are_refused_with_the_reason(
        service: KeyService, tmp_path: Path, maker, message: str) -> None:
    with pytest.raises(KeyOperationRefused, match=message):
        service.add(maker(tmp_path), "test")
    assert service.records() == []


def test_a_revoked_key_is_refused(service: KeyService, tmp_path: Path) -> None:
    home = tmp_path / "r"
    fpr = new_key(home)
    revoke(home, fpr)
    with pytest.raises(KeyOperationRefused, match="revoked"):
        service.add(export(home, fpr, tmp_path / "r.asc").read_bytes(), "t")


def test_sha1_binding_signatures_are_refused(service: KeyService, tmp_path: Path) -> None:
    home = tmp_path / "sha1"
    fpr = new_key(home)
    # Re-make the self-signatures with SHA-1, as keys from long ago have them.
    gpg(home, "--cert-digest-algo", "SHA1", "--allow-weak-key-signatures",
        "--quick-set-expire", fpr, "2y")
    gpg(home, "--cert-digest-algo", "SHA1", "--allow-weak-key-signatures",
        "--quick-set-expire", fpr, "2y", "*")
    data = export(home, fpr, tmp_path / "sha1.asc").read_bytes()
    with pytest.raises(KeyOperationRefused, match="SHA-1"):
        service.add(data, "t")


def test_several_keys_in_one_file_are_refused(service: KeyService, tmp_path: Path) -> None:
    _, one, _ = _key_file(tmp_path, "one")
    _, two, _ = _key_file(tmp_path, "two")
    with pytest.raises(KeyOperationRefused, match="holds 2 keys"):
        service.add(one + b"\n" + two, "t")


def test_adding_a_known_key_again_refreshes_it_and_keeps_its_state(
        service: KeyService, tmp_path: Path) -> None:
    fpr, data, home = _key_file(tmp_path, "k", expire="20d")
    service.add(data, "t")
    service.activate_without_proof(fpr, "t", "test")
    before = service.records()[0].expires_on
    gpg(home, "--quick-set-expire", fpr, "2y")
    gpg(home, "--quick-set-expire", fpr, "2y", "*")
    service.add(export(home, fpr, tmp_path / "extended.asc").read_bytes(), "t")
    after = service.records()
    assert len(after) == 1 and after[0].state is KeyState.ACTIVE
    assert before is not None and after[0].expires_on is not None
    assert after[0].expires_on > before
    assert service.audit.recent()[0].action == "key updated"


def test_a_retired_key_cannot_come_back(service: KeyService, tmp_path: Path) -> None:
    a, data_a, _ = _key_file(tmp_path, "a")
    b, data_b, _ = _key_file(tmp_path, "b")
    for fpr, data in ((a, data_a), (b, data_b)):
        service.add(data, "t")
        service.activate_without_proof(fpr, "t", "test")
    service.retire(a, "t")
    with pytest.raises(KeyOperationRefused, match="retired"):
        service.add(data_a, "t")


def test_expiry_is_warned_about_30_days_ahead(service: KeyService, tmp_path: Path) -> None:
    fpr, data, _ = _key_file(tmp_path, "k", expire="20d")
    service.add(data, "t")
    assert "No newsroom key is active" in service.expiry_warnings()[0]
    service.activate_without_proof(fpr, "t", "test")
    warning = service.expiry_warnings()
    assert len(warning) == 1 and "expires on" in warning[0]
    far = dt.date.today() + dt.timedelta(days=400)
    assert "has expired" in service.expiry_warnings(far)[0]


def test_prove_works_with_the_gpg_command_line_only(service: KeyService, tmp_path: Path) -> None:
    fpr, data, home = _key_file(tmp_path, "k")
    service.add(data, "t")
    challenge = tmp_path / "c.gpg"
    challenge.write_bytes(service.challenge(fpr, "t"))
    out = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--decrypt",
                          str(challenge)], capture_output=True, check=True).stdout.decode()
    assert re.fullmatch(rf"tipbox-challenge v1 {fpr} [A-Z2-7]{{4}}(-[A-Z2-7]{{4}}){{3}}\n", out)


def test_a_key_that_asks_for_ocb_is_refused_with_the_fix(
        service: KeyService, tmp_path: Path) -> None:
    data = key_asking_for_ocb(tmp_path / "ocb")
    # A good key in gpg's eyes: its self-signatures check out.
    (tmp_path / "ocb.pgp").write_bytes(data)
    checked = gpg(tmp_path / "check", "--import", str(tmp_path / "ocb.pgp"))
    listing = gpg(tmp_path / "check", "--check-signatures").decode()
    assert listing.count("sig!") == 2, (checked, listing)
    with pytest.raises(KeyOperationRefused, match="asks for OCB") as refused:
        service.add(data, "t")
    assert ("`setpref AES256 AES192 AES SHA512 SHA384 SHA256 ZLIB BZIP2 ZIP Uncompressed`"
            in str(refused.value))
    assert service.records() == []


def test_a_malformed_certification_cannot_hide_a_request_for_ocb(
        service: KeyService, tmp_path: Path) -> None:
    data = key_asking_for_ocb(tmp_path / "ocb")
    key, uid, *rest = iter_packets(data)
    junk = signature_packet(0x10, hashed=bytes([40, 30, 0x03]))  # length past the area
    # The junk comes before the self-signature, so the reader meets it first.
    crafted = (packet(key.tag, key.body) + packet(uid.tag, uid.body) + junk
               + b"".join(packet(p.tag, p.body) for p in rest))
    with pytest.raises(KeyOperationRefused):  # whichever reason comes first, it is not accepted
        service.add(crafted, "t")
    assert service.records() == []


def test_keys_tipbox_makes_never_ask_for_ocb(tmp_path: Path) -> None:
    offline = GnuPG(tmp_path / "offline")
    fpr = offline.generate_key("Newsroom", "n@example.invalid", passphrase=None)
    exported = offline.export_public(fpr, armor=False)
    assert isinstance(exported, bytes) and not asks_for_ocb(exported)
    (tmp_path / "k.pgp").write_bytes(exported)
    packets = gpg(tmp_path / "offline", "--list-packets", str(tmp_path / "k.pgp")).decode()
    assert "(pref-sym-algos: 9 8 7)" in packets  # AES256, AES192, AES128
    assert "(pref-hash-algos: 10 9 8)" in packets  # SHA512, SHA384, SHA256
    assert "(features: 01)" in packets and "pref-aead" not in packets
