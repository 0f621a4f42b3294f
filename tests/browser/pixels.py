"""Reading Chromium's screenshots pixel by pixel, with the standard library only: a PNG
decoder for what Chromium writes (8 bits per channel, RGB or RGBA, not interlaced) and
WCAG's contrast ratio."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from functools import cache

Pixel = tuple[int, int, int]


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    pixels: list[Pixel]  # row by row

    def at(self, x: int, y: int) -> Pixel:
        return self.pixels[y * self.width + x]


def decode_png(data: bytes) -> Image:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, idat = 8, bytearray()
    width = height = channels = 0
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        body = data[offset + 8:offset + 8 + length]
        offset += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, row = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        _unfilter(kind, row, previous, channels)
        rows.append(row)
        previous = row
    pixels = [(row[i], row[i + 1], row[i + 2]) for row in rows for i in range(0, stride, channels)]
    return Image(width, height, pixels)


def _unfilter(kind: int, row: bytearray, above: bytearray, bpp: int) -> None:
    for i in range(len(row)):
        left = row[i - bpp] if i >= bpp else 0
        up = above[i]
        if kind == 1:
            row[i] = (row[i] + left) & 0xFF
        elif kind == 2:
            row[i] = (row[i] + up) & 0xFF
        elif kind == 3:
            row[i] = (row[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            up_left = above[i - bpp] if i >= bpp else 0
            estimate = left + up - up_left
            a, b, c = abs(estimate - left), abs(estimate - up), abs(estimate - up_left)
            nearest = left if a <= b and a <= c else up if b <= c else up_left
            row[i] = (row[i] + nearest) & 0xFF


@cache  # a page has few colours; each is worked out once
def _luminance(pixel: Pixel) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else float(((c + 0.055) / 1.055) ** 2.4)

    r, g, b = (channel(v) for v in pixel)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(one: Pixel, other: Pixel) -> float:
    """WCAG 2's contrast ratio, from 1 (the same) to 21 (black on white)."""
    light, dark = sorted((_luminance(one), _luminance(other)), reverse=True)
    return (light + 0.05) / (dark + 0.05)
