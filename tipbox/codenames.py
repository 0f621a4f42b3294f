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
import unicodedata
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
    """The codename a returning source meant, or ``None`` if it cannot be one.

    Many sources do not read English and copy seven unfamiliar words by hand, often on a
    Chinese, Arabic or Cyrillic keyboard. So this forgives what does not change which
    codename was meant: case; full-width letters and ideographic spaces (NFKC); the list
    numbers, commas and full stops of any script that come with a copied list; and, in
    each word, one wrong, missing, extra or swapped letter when exactly one list word is
    that close. None of it makes guessing easier: every input still names at most one of
    the 7,776^7 codenames, and each try still costs a full scrypt hash.
    """
    if len(raw) > MAX_CODENAME_CHARS:
        return None
    text = unicodedata.normalize("NFKC", raw).lower()
    # Everything but letters and hyphens separates words ("1. word", "word、word").
    tokens = "".join(c if c.isalpha() or c == "-" else " " for c in text).split()
    words = _join_hyphenated([t.strip("-") for t in tokens if t.strip("-")])
    if len(words) != CODENAME_WORDS:
        return None
    meant = [_closest_word(w) for w in words]
    if any(w is None for w in meant):
        return None
    return " ".join(w for w in meant if w is not None)


def _join_hyphenated(tokens: list[str]) -> list[str]:
    """'drop down' back to the list's 'drop-down' (one of four such words), only when
    there are too many words, since 'drop' and 'down' are list words too."""
    out = list(tokens)
    i = 0
    while len(out) > CODENAME_WORDS and i < len(out) - 1:
        if f"{out[i]}-{out[i + 1]}" in _word_set():
            out[i:i + 2] = [f"{out[i]}-{out[i + 1]}"]
        i += 1
    return out


def _closest_word(word: str) -> str | None:
    allowed = _word_set()
    if word in allowed:
        return word
    if not word.isascii() or len(word) > 12:
        return None
    near = {w for w in _one_edit_away(word) if w in allowed}
    return near.pop() if len(near) == 1 else None


def _one_edit_away(word: str) -> set[str]:
    """Every string one deletion, swap of neighbours, change or insertion from ``word``."""
    letters = "abcdefghijklmnopqrstuvwxyz-"
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    return ({a + b[1:] for a, b in splits if b}
            | {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
            | {a + c + b[1:] for a, b in splits if b for c in letters}
            | {a + c + b for a, b in splits for c in letters})


@cache
def _word_set() -> frozenset[str]:
    return frozenset(eff_words())


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
        with self.slots.slot():
            return kdf.derive(codename.encode("utf-8")).hex()


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
