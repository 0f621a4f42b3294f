"""How far anything tipbox-open unpacks may grow, and how much disk it leaves alone.

Two things on the offline machine expand small inputs into large outputs: gpg, when an
item holds an OpenPGP compressed data packet, and mat2, when it unpacks an archive (zip,
docx, odt...) to clean its members. Both are bounded by the same figures, so that a
bundle of a few kilobytes can never fill the journalist's disk.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024
# Kept free for the system on the disk that holds --out: nothing tipbox-open writes
# (ciphertext copies, plaintexts, mat2's unpacked archives) may eat into it.
RESERVED_BYTES = 32 * MIB
# An item may decompress to at most MAX_EXPANSION times its ciphertext size, plus
# EXPANSION_FLOOR. Real documents compress 2-10x (text, office files) and rarely beyond
# 50x (very repetitive logs or CSV); tipbox compresses only with zlib at level 1, weaker
# still. A deflate bomb reaches about 1000x and a bzip2 bomb far more, so 200x lets every
# plausible document through and stops a deflate bomb at a fifth of its size. The floor
# lets any small item be as redundant as it likes: 64 MiB is a large text and little
# for a disk.
MAX_EXPANSION = 200
EXPANSION_FLOOR = 64 * MIB


@dataclass(frozen=True)
class Limits:
    """The expansion budget and the disk reserve for one run of tipbox-open."""

    max_expansion: int = MAX_EXPANSION
    floor: int = EXPANSION_FLOOR
    reserve: int = RESERVED_BYTES

    def __post_init__(self) -> None:
        if self.max_expansion < 1 or self.floor < 0 or self.reserve < 0:
            raise ValueError("limits must be positive (max_expansion at least 1)")

    def budget(self, size: int) -> int:
        """The most that ``size`` bytes of compressed input may unpack to."""
        return self.max_expansion * size + self.floor

    def room(self, path: Path) -> int:
        """Bytes that may still be written where ``path`` is (negative: none)."""
        return shutil.disk_usage(path).free - self.reserve
