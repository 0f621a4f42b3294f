"""Reply keys: derived from the codename alone, hybrid post-quantum HPKE."""

from __future__ import annotations

import pytest

from tests.conftest import FAST_SCRYPT
from tipbox.codenames import CodenameHasher, generate_codename
from tipbox.crypto.reply_keys import (
    ReplyDecryptionError,
    ReplyKeyDeriver,
    decrypt_reply,
    encrypt_reply,
    load_public_key,
)

PEPPER = b"p" * 32


def test_the_same_codename_always_derives_the_same_key_pair() -> None:
    codename = generate_codename()
    one = ReplyKeyDeriver(PEPPER, FAST_SCRYPT).derive(codename)
    two = ReplyKeyDeriver(PEPPER, FAST_SCRYPT).derive(codename)
    assert one.public_bytes == two.public_bytes
    assert len(one.public_bytes) == 1184 + 32
    load_public_key(one.public_bytes)


def test_a_reply_opens_with_the_codename_and_nothing_else() -> None:
    deriver = ReplyKeyDeriver(PEPPER, FAST_SCRYPT)
    codename = generate_codename()
    key = deriver.derive(codename)
    ciphertext = encrypt_reply("Thank you. Can you say more about the memo?", key.public_bytes)
    assert b"memo" not in ciphertext
    assert decrypt_reply(ciphertext, key) == "Thank you. Can you say more about the memo?"
    with pytest.raises(ReplyDecryptionError):
        decrypt_reply(ciphertext, deriver.derive(generate_codename()))
    with pytest.raises(ReplyDecryptionError):
        decrypt_reply(ciphertext[:-1] + bytes([ciphertext[-1] ^ 1]), key)


def test_the_stored_codename_hash_is_not_part_of_the_reply_key_seed() -> None:
    # scrypt with one salt gives outputs that share a prefix; the reply key's salt differs
    # from the codename hash's, so the stored hash says nothing about the key.
    deriver = ReplyKeyDeriver(PEPPER, FAST_SCRYPT)
    hasher = CodenameHasher(PEPPER, FAST_SCRYPT)
    assert deriver.salt != hasher.pepper
    codename = generate_codename()
    stored = bytes.fromhex(hasher.hash(codename))
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    seed = Scrypt(salt=deriver.salt, length=96, n=FAST_SCRYPT.n, r=FAST_SCRYPT.r,
                  p=FAST_SCRYPT.p).derive(codename.encode())
    assert stored not in seed
    assert "ReplyPrivateKey(public_bytes=" in repr(deriver.derive(codename))


def test_a_malformed_public_key_is_refused() -> None:
    with pytest.raises(ValueError, match="reply public key"):
        load_public_key(b"short")
