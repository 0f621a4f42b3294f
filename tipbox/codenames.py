"""Codenames for sources and designations for journalists.

A codename is 7 words drawn with :mod:`secrets` from the EFF large word list (7,776
words, so 7 x 12.92 = 90.5 bits). It is never stored: the database keeps only a slow,
peppered scrypt hash, which is what a returning source is looked up by.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from tipbox.config import ScryptParams
from tipbox.hashing_slots import UNLIMITED, HashingSlots

CODENAME_WORDS = 7
# Longer input is refused before hashing, so a 10,000-character "codename" costs nothing.
MAX_CODENAME_CHARS = 200


@cache
def _wordlist(name: str) -> tuple[str, ...]:
    from diceware.wordlist import get_wordlists_dir

    path = Path(get_wordlists_dir()) / f"wordlist_{name}.txt"
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        # The EFF list is "11111<TAB>word"; the others are one word a line.
        words.append(line.split()[-1].lower())
    unique = tuple(dict.fromkeys(words))
    if len(unique) < 100:
        raise RuntimeError(f"word list {name} looks damaged: {len(unique)} words")
    return unique


def eff_words() -> tuple[str, ...]:
    return _wordlist("en_eff")


def codename_bits(words: int = CODENAME_WORDS) -> float:
    return words * math.log2(len(eff_words()))


def generate_codename(words: int = CODENAME_WORDS) -> str:
    wordlist = eff_words()
    return " ".join(secrets.choice(wordlist) for _ in range(words))


def normalize_codename(raw: str) -> str | None:
    """Forgive case and extra white space; ``None`` if it cannot be a codename."""
    if len(raw) > MAX_CODENAME_CHARS:
        return None
    words = raw.lower().split()
    if len(words) != CODENAME_WORDS:
        return None
    allowed = set(eff_words())
    if not all(w in allowed for w in words):
        return None
    return " ".join(words)


def generate_designation() -> str:
    """An adjective-noun pair for journalists to talk about a source, e.g. 'sturdy zest'.

    About ten million pairs; the database's unique constraint catches the rare repeat.
    """
    adjectives, nouns = _wordlist("en_adjectives"), _wordlist("en_nouns")
    return f"{secrets.choice(adjectives)} {secrets.choice(nouns)}"


@dataclass(frozen=True)
class CodenameHasher:
    """scrypt(codename, salt = per-instance pepper). One salt for the whole instance is
    what makes lookup by hash possible; the pepper stays out of the database."""

    pepper: bytes
    params: ScryptParams
    slots: HashingSlots = UNLIMITED  # the app's shared bound on memory-hard hashing

    def hash(self, codename: str) -> str:
        kdf = Scrypt(salt=self.pepper, length=32, n=self.params.n, r=self.params.r,
                     p=self.params.p)
        return self.slots.compute(kdf.derive, codename.encode("utf-8")).hex()


@dataclass(frozen=True)
class CodenameSigner:
    """Proves a codename shown on the 'first time' page was made by this server.

    The codename travels back in a hidden form field (never in a cookie, never stored),
    so the MAC stops a source from swapping in a weaker codename of their own.
    """

    key: bytes

    def sign(self, codename: str) -> str:
        return hmac.new(self.key, codename.encode(), hashlib.sha256).hexdigest()

    def verify(self, codename: str, mac: str) -> bool:
        return hmac.compare_digest(self.sign(codename), mac)
