"""Replies to sources: HPKE to a key pair derived from the source's codename.

The suite is ML-KEM-768 + X25519 (hybrid, post-quantum) with HKDF-SHA256 and AES-256-GCM,
as provided by ``cryptography``. The private key is derived with scrypt from the codename,
so it exists only when the source types the codename; the server stores the public half.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from tipbox.config import ScryptParams
from tipbox.errors import TipboxError
from tipbox.hashing_slots import UNLIMITED, HashingSlots

SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
INFO = b"tipbox reply v1"
X25519_LEN = 32
MLKEM768_PUBLIC_LEN = 1184


class ReplyDecryptionError(TipboxError):
    """A reply could not be decrypted with this codename's key."""


@dataclass(frozen=True)
class ReplyPrivateKey:
    key: hpke.MLKEM768X25519PrivateKey = field(repr=False)
    public_bytes: bytes


@dataclass(frozen=True)
class ReplyKeyDeriver:
    """codename -> reply key pair. The scrypt salt is separate from the codename hash's:
    scrypt's first 32 output bytes with the same salt would equal the stored hash."""

    pepper: bytes = field(repr=False)
    params: ScryptParams
    slots: HashingSlots = UNLIMITED  # the app's shared bound on memory-hard hashing

    @property
    def salt(self) -> bytes:
        return hmac.new(self.pepper, b"tipbox reply key v1", hashlib.sha256).digest()

    def derive(self, codename: str) -> ReplyPrivateKey:
        kdf = Scrypt(salt=self.salt, length=96, n=self.params.n, r=self.params.r,
                     p=self.params.p)
        seed = self.slots.compute(kdf.derive, codename.encode("utf-8"))
        kem = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed[:64])
        dh = x25519.X25519PrivateKey.from_private_bytes(seed[64:])
        public = kem.public_key().public_bytes_raw() + dh.public_key().public_bytes_raw()
        return ReplyPrivateKey(hpke.MLKEM768X25519PrivateKey(kem, dh), public)


def load_public_key(raw: bytes) -> hpke.MLKEM768X25519PublicKey:
    if len(raw) != MLKEM768_PUBLIC_LEN + X25519_LEN:
        raise ValueError("not a tipbox reply public key")
    return hpke.MLKEM768X25519PublicKey(
        mlkem.MLKEM768PublicKey.from_public_bytes(raw[:MLKEM768_PUBLIC_LEN]),
        x25519.X25519PublicKey.from_public_bytes(raw[MLKEM768_PUBLIC_LEN:]),
    )


def encrypt_reply(text: str, public_key: bytes) -> bytes:
    return bytes(SUITE.encrypt(text.encode("utf-8"), load_public_key(public_key), info=INFO))


def decrypt_reply(ciphertext: bytes, key: ReplyPrivateKey) -> str:
    try:
        return bytes(SUITE.decrypt(ciphertext, key.key, info=INFO)).decode("utf-8")
    except (InvalidTag, ValueError, UnicodeDecodeError):
        raise ReplyDecryptionError("This reply cannot be read with this codename.") from None
