"""Codenames: random, 7 EFF words, at least 90 bits, forgiving to type, hashed slowly."""

from __future__ import annotations

from tipbox.codenames import (
    CODENAME_WORDS,
    CodenameHasher,
    CodenameSigner,
    codename_bits,
    eff_words,
    generate_codename,
    generate_designation,
    normalize_codename,
)
from tipbox.config import ScryptParams


def test_codename_is_seven_words_from_the_eff_large_list_with_at_least_90_bits() -> None:
    words = set(eff_words())
    assert len(words) == 7776
    codename = generate_codename()
    assert len(codename.split()) == CODENAME_WORDS == 7
    assert all(w in words for w in codename.split())
    assert codename_bits() >= 90


def test_codenames_do_not_repeat() -> None:
    assert len({generate_codename() for _ in range(500)}) == 500


def test_normalising_forgives_case_and_spacing_but_not_wrong_words() -> None:
    codename = generate_codename()
    messy = "\t " + "  ".join(w.upper() for w in codename.split()) + "\n"
    assert normalize_codename(messy) == codename
    assert normalize_codename(codename + " extra") is None
    assert normalize_codename("notaword " * 7) is None
    assert normalize_codename("") is None
    assert normalize_codename("a" * 10_000) is None


def test_hash_is_deterministic_per_pepper_and_differs_across_instances() -> None:
    params = ScryptParams(n=2**4)
    one = CodenameHasher(b"p" * 32, params)
    two = CodenameHasher(b"q" * 32, params)
    codename = generate_codename()
    assert one.hash(codename) == one.hash(codename)
    assert one.hash(codename) != two.hash(codename)
    assert codename not in one.hash(codename)
    assert len(one.hash(codename)) == 64


def test_production_scrypt_costs_at_least_64_mib_per_hash() -> None:
    params = ScryptParams()
    assert 128 * params.n * params.r >= 64 * 1024 * 1024


def test_signer_accepts_its_own_codenames_only() -> None:
    signer = CodenameSigner(b"k" * 32)
    codename = generate_codename()
    assert signer.verify(codename, signer.sign(codename))
    assert not signer.verify(generate_codename(), signer.sign(codename))
    assert not CodenameSigner(b"x" * 32).verify(codename, signer.sign(codename))


def test_designation_is_an_adjective_and_a_noun() -> None:
    assert len(generate_designation().split()) == 2


def test_a_codename_copied_on_a_chinese_keyboard_or_from_the_numbered_list_is_recognised() -> None:
    codename = generate_codename()
    full_width = "\u3000".join("".join(chr(ord(c) + 0xFEE0) if c.isalpha() else c for c in w)
                               for w in codename.split())
    assert normalize_codename(full_width) == codename
    numbered = "\n".join(f"{n}. {w}" for n, w in enumerate(codename.split(), start=1))
    assert normalize_codename(numbered) == codename
    assert normalize_codename("、".join(codename.split()) + "。") == codename


def test_one_wrong_missing_extra_or_swapped_letter_per_word_is_forgiven_if_unambiguous() -> None:
    meant = "abacus acorn zebra mango cable drop-down yo-yo"
    assert normalize_codename("abacsu acornn zebar mangoo cabel drop down yo yo") == meant
    # "table" is one letter from cable, fable, gable...: guessing which would be wrong.
    assert normalize_codename("abacus acorn zebra mango table drop-down yo-yo") is None
    # Two mistakes in one word are not guessed at either.
    assert normalize_codename("abacsuu acorn zebra mango cable drop-down yo-yo") is None
