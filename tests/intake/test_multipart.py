"""The streaming multipart reader: same parts whatever the chunking, bounded, strict."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.e2e.server import encode_multipart
from tipbox.errors import MalformedUpload, UploadTooLarge
from tipbox.intake.multipart import MultipartReader

BOUNDARY = "----tipboxBoundary42"


class Trickle(io.RawIOBase):
    """A body that arrives in chunks of the given sizes, like a slow network."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self._data = data
        self._sizes = sizes or [len(data) or 1]
        self._pos = 0
        self._n = 0

    def read(self, size: int = -1, /) -> bytes:
        step = self._sizes[self._n % len(self._sizes)]
        self._n += 1
        limit = step if size < 0 else min(step, size)
        out = self._data[self._pos:self._pos + limit]
        self._pos += len(out)
        return out


def _parts(body: bytes, sizes: list[int], chunk: int = 1 << 20,
           read_size: int = 4096) -> list[tuple[str, str | None, bytes]]:
    reader = MultipartReader(Trickle(body, sizes), BOUNDARY.encode(),  # type: ignore[arg-type]
                             chunk_size=chunk, max_parts=100)
    out = []
    for part in reader:
        data = b""
        while chunk_data := part.read(read_size):
            data += chunk_data
        out.append((part.name, part.filename, data))
    return out


# Line breaks, dashes and pieces of the boundary are where a multipart parser goes wrong.
_tricky = st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"-", b"--", b"x", b"\r\n--",
                                    BOUNDARY[:9].encode(), b"\x00"]), max_size=60).map(b"".join)
part_data = st.one_of(st.binary(max_size=3000), _tricky).map(
    lambda b: b.replace(BOUNDARY.encode(), b"x"))  # a part cannot contain its own boundary


@settings(max_examples=200, deadline=None)
@given(
    fields=st.lists(st.tuples(st.sampled_from(["message", "files", "other"]),
                              st.one_of(st.none(), st.sampled_from(["a.txt", "b c.pdf", ""])),
                              part_data), max_size=6),
    sizes=st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=8),
    read_size=st.integers(min_value=1, max_value=5000),
)
def test_parts_come_out_exactly_as_sent_whatever_the_chunking(
        fields: list[tuple[str, str | None, bytes]], sizes: list[int], read_size: int) -> None:
    body = encode_multipart(BOUNDARY, fields)
    assert _parts(body, sizes, read_size=read_size) == fields


def test_a_body_cut_off_mid_part_is_malformed() -> None:
    body = encode_multipart(BOUNDARY, [("files", "a.bin", b"x" * 10_000)])
    with pytest.raises(MalformedUpload):
        _parts(body[:5000], [1000])


@pytest.mark.parametrize("body", [
    b"",
    b"garbage without any boundary at all",
    f"--{BOUNDARY}\r\nno-blank-line-after-headers".encode(),
    (f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nno disposition\r\n"
     f"--{BOUNDARY}--\r\n").encode(),
])
def test_garbage_is_malformed_not_a_crash(body: bytes) -> None:
    with pytest.raises(MalformedUpload):
        _parts(body, [100])


def test_endless_headers_are_refused_without_buffering_them() -> None:
    body = f"--{BOUNDARY}\r\nX-Junk: ".encode() + b"a" * 200_000
    with pytest.raises(MalformedUpload):
        _parts(body, [8192])


def test_too_many_parts_is_refused() -> None:
    body = encode_multipart(BOUNDARY, [("f", None, b"x")] * 101)
    with pytest.raises(UploadTooLarge):
        _parts(body, [4096])


def test_a_field_over_its_limit_is_refused() -> None:
    body = encode_multipart(BOUNDARY, [("message", None, b"x" * 5000)])
    reader = MultipartReader(io.BytesIO(body), BOUNDARY.encode(), chunk_size=1024, max_parts=5)
    part = next(iter(reader))
    with pytest.raises(UploadTooLarge):
        part.read_all(4096)


def test_skipping_a_part_drains_it_before_the_next() -> None:
    body = encode_multipart(BOUNDARY, [("a", None, b"1" * 9000), ("b", None, b"two")])
    reader = MultipartReader(io.BytesIO(body), BOUNDARY.encode(), chunk_size=512, max_parts=5)
    first = reader.next_part()
    assert first is not None and first.read(10) == b"1" * 10
    second = reader.next_part()
    assert second is not None and second.name == "b" and second.read_all(100) == b"two"
    assert reader.next_part() is None
