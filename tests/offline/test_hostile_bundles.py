"""Hostile or broken bundles are refused with exit 2, a clear message, and NOTHING written:
not in the output folder, not next to it, not in the working directory."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import Newsroom
from tests.offline.kit import Item, Sender, new_id, run_open, tree, write_bundle

Builder = Callable[[Path, Item], None]
BID = "b" * 26
TOP = f"tipbox-{BID}"


def _manifest(item: Item, **changes: object) -> dict[str, object]:
    doc: dict[str, object] = {"format": "tipbox-bundle", "version": 1, "bundle_id": BID,
                              "created_on": "2026-11-30", "items": [item.manifest_entry()]}
    doc.update(changes)
    return doc


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]],
         fmt: int = tarfile.PAX_FORMAT) -> None:
    with tarfile.open(path, "w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)


def _regular(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name: str, kind: bytes, link: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info, b""


def _with(*members: Callable[[Item], tuple[tarfile.TarInfo, bytes]],
          fmt: int = tarfile.PAX_FORMAT) -> Builder:
    """A bundle of the given members, then a valid manifest for ``item``."""
    def build(path: Path, item: Item) -> None:
        manifest = json.dumps(_manifest(item)).encode()
        _tar(path, [*(m(item) for m in members), _regular(f"{TOP}/manifest.json", manifest)],
             fmt)
    return build


def _item_member(item: Item) -> tuple[tarfile.TarInfo, bytes]:
    return _regular(f"{TOP}/items/{item.id}.gpg", item.ciphertext)


def _manifest_bytes(data: bytes | Callable[[Item], bytes]) -> Builder:
    def build(path: Path, item: Item) -> None:
        raw = data(item) if callable(data) else data
        _tar(path, [_item_member(item), _regular(f"{TOP}/manifest.json", raw)])
    return build


def _manifest_doc(**changes: object) -> Builder:
    return _manifest_bytes(lambda item: json.dumps(_manifest(item, **changes)).encode())


def _raw_after_valid_header(tail: Callable[[Item], bytes]) -> Builder:
    def build(path: Path, item: Item) -> None:
        path.write_bytes(tail(item))
    return build


def _claimed(size: int, *, sparse: bool) -> Builder:
    """A member header claiming ``size`` bytes; ``sparse`` makes the file really that long
    (holes cost no disk) and puts a valid manifest after it."""
    def build(path: Path, item: Item) -> None:
        info = tarfile.TarInfo(f"{TOP}/items/{item.id}.gpg")
        info.size = size
        header = info.tobuf(format=tarfile.PAX_FORMAT)
        with path.open("wb") as fh:
            fh.write(header)
            if not sparse:
                fh.write(b"\0" * 4096)
                return
            fh.seek(len(header) + size)
            manifest = json.dumps(_manifest(item)).encode()
            info = tarfile.TarInfo(f"{TOP}/manifest.json")
            info.size = len(manifest)
            fh.write(info.tobuf(format=tarfile.PAX_FORMAT) + manifest)
            fh.write(b"\0" * (-len(manifest) % 512 + 1024))
    return build


def _gzip(path: Path, item: Item) -> None:
    plain = path.with_suffix(".plain")
    write_bundle(plain, [item], bundle_id=BID)
    path.write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()


def _truncated(path: Path, item: Item) -> None:
    write_bundle(path, [item], bundle_id=BID)
    data = path.read_bytes()
    path.write_bytes(data[:700])


def _pax_with(key: str, value: str) -> Builder:
    def build(path: Path, item: Item) -> None:
        info, data = _item_member(item)
        info.pax_headers = {key: value}
        manifest = json.dumps(_manifest(item)).encode()
        _tar(path, [(info, data), _regular(f"{TOP}/manifest.json", manifest)])
    return build


def _oversized_manifest(item: Item) -> bytes:
    doc = json.dumps(_manifest(item)).encode()
    return doc + b" " * (64 * 1024 * 1024 + 1 - len(doc))


def _item_after_manifest(path: Path, item: Item) -> None:
    manifest = json.dumps(_manifest(item)).encode()
    _tar(path, [_regular(f"{TOP}/manifest.json", manifest), _item_member(item)])


def _two_bundles(path: Path, item: Item) -> None:
    manifest = json.dumps(_manifest(item)).encode()
    _tar(path, [_item_member(item), _regular(f"tipbox-{'c' * 26}/manifest.json", manifest)])


CASES: dict[str, tuple[Builder, str]] = {
    "name with ../": (_with(lambda i: _regular(f"{TOP}/items/../../../../evil.gpg", b"x")),
                      "climbs out of the bundle folder"),
    "top folder ../": (_with(lambda i: _regular("../evil.gpg", b"x")), "climbs out"),
    "absolute path": (_with(lambda i: _regular("/tmp/tipbox-evil.gpg", b"x")),
                      "absolute path"),
    "symlink member": (_with(lambda i: _special(f"{TOP}/items/{i.id}.gpg", tarfile.SYMTYPE,
                                                "/etc/passwd")), "a symbolic link"),
    "hardlink member": (_with(lambda i: _special(f"{TOP}/items/{i.id}.gpg", tarfile.LNKTYPE,
                                                 "/etc/passwd")), "a hard link"),
    "character device": (_with(lambda i: _special(f"{TOP}/items/{i.id}.gpg",
                                                  tarfile.CHRTYPE)), "a character device"),
    "fifo": (_with(lambda i: _special(f"{TOP}/items/{i.id}.gpg", tarfile.FIFOTYPE)), "FIFO"),
    "directory member": (_with(lambda i: _special(f"{TOP}/items", tarfile.DIRTYPE)),
                         "a directory"),
    "other file name": (_with(lambda i: _regular(f"{TOP}/items/run-me.sh", b"#!/bin/sh\n")),
                        "is not tipbox-<id>/items/<id>.gpg"),
    "same item twice": (_with(_item_member, _item_member), "twice"),
    "gnu tar format": (_with(_item_member, fmt=tarfile.GNU_FORMAT), "not a POSIX tar header"),
    "pax linkpath": (_pax_with("linkpath", "/etc/passwd"), "'linkpath'"),
    "pax sparse map": (_pax_with("GNU.sparse.map", "0,1"), "'GNU.sparse.map'"),
    "huge claimed size": (_claimed(1 << 40, sparse=False), "claims 1099511627776 bytes"),
    "bigger than free space": (_claimed(0, sparse=True), "is free where"),
    "gzip compressed": (_gzip, "gzip file"),
    "not a tar": (_raw_after_valid_header(lambda i: b"hello " * 400), "not a POSIX tar"),
    "truncated": (_truncated, "truncated"),
    "no manifest": (lambda path, item: _tar(path, [_item_member(item)]), "no manifest.json"),
    "manifest not last": (_item_after_manifest, "not the last member"),
    "manifest of another bundle": (_two_bundles, "several bundles"),
    "manifest is not json": (_manifest_bytes(b"<html>502 Bad Gateway</html>"),
                             "not valid UTF-8 JSON"),
    "manifest is not utf-8": (_manifest_bytes(b'{"format": "\xff"}'), "not valid UTF-8"),
    "manifest with NaN": (_manifest_bytes(b'{"format": NaN}'), "NaN is not JSON"),
    "manifest too deep": (_manifest_bytes(b"[" * 100_000 + b"]" * 100_000), "nested"),
    "manifest over 64 MiB": (_manifest_bytes(_oversized_manifest), "larger than 64 MiB"),
    "manifest wrong format": (_manifest_doc(format="zip-bundle"), "tipbox-bundle"),
    "manifest newer version": (_manifest_doc(version=2), "version 2"),
    "manifest names another bundle": (_manifest_doc(bundle_id="c" * 26), "different bundle"),
    "manifest duplicate keys": (_manifest_bytes(
        lambda i: json.dumps(_manifest(i))[:-1].encode() + b', "format": "x"}'),
        "appears twice"),
    "manifest item path traversal": (_manifest_bytes(lambda i: json.dumps(_manifest(
        i, items=[{**i.manifest_entry(), "id": "../../../../etc/passwd"}])).encode()),
        "items[0].id is missing or malformed"),
    "manifest member path traversal": (
        _with(_item_member, lambda i: _regular(f"{TOP}/../manifest.json", b"{}")),
        "climbs out"),
    "manifest negative size": (_manifest_bytes(lambda i: json.dumps(_manifest(
        i, items=[{**i.manifest_entry(), "size": -1}])).encode()), "items[0].size"),
    "manifest unknown kind": (_manifest_bytes(lambda i: json.dumps(_manifest(
        i, items=[{**i.manifest_entry(), "kind": "script"}])).encode()), "items[0].kind"),
}


@pytest.mark.parametrize("case", CASES)
def test_hostile_bundle_is_refused_and_nothing_is_written(
        case: str, sender: Sender, newsroom: Newsroom, tmp_path: Path, workspace: Path) -> None:
    build, message = CASES[case]
    item = sender.item("sturdy zest", "message", 1, b"hello", to=[newsroom.fingerprint])
    if case == "bigger than free space":
        free = shutil.disk_usage(tmp_path).free
        build = _claimed(free + (1 << 30), sparse=True)
    bundle = tmp_path / f"tipbox-{BID}.tar"
    build(bundle, item)
    before = tree(tmp_path)

    proc = run_open(bundle, tmp_path / "out", newsroom.secret_home, cwd=workspace)

    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert proc.stderr.startswith("tipbox-open: ")
    assert "Traceback" not in proc.stderr
    assert tree(tmp_path) == before
    assert not (tmp_path / "out").exists()


def test_a_bundle_that_is_a_folder_or_missing_is_refused(
        newsroom: Newsroom, tmp_path: Path) -> None:
    for target, message in ((tmp_path, "not a regular file"),
                            (tmp_path / "nope.tar", "Cannot read the bundle")):
        proc = run_open(target, tmp_path / "out", newsroom.secret_home)
        assert proc.returncode == 2 and message in proc.stderr
    assert not (tmp_path / "out").exists()


def test_an_existing_output_folder_keeps_everything_it_had(
        sender: Sender, newsroom: Newsroom, tmp_path: Path) -> None:
    item = sender.item("sturdy zest", "file", 5, b"new", filename="report.pdf",
                       to=[newsroom.fingerprint])
    bundle = write_bundle(tmp_path / "b.tar", [item])
    out = tmp_path / "out"
    (out / "sturdy zest").mkdir(parents=True)
    (out / "sturdy zest" / "05-report.pdf").write_bytes(b"precious")
    (out / "index.txt").write_text("an earlier index")

    proc = run_open(bundle, out, newsroom.secret_home)

    assert proc.returncode == 0, proc.stderr
    assert (out / "sturdy zest" / "05-report.pdf").read_bytes() == b"precious"
    assert (out / "sturdy zest" / "05-report (2).pdf").read_bytes() == b"new"
    assert (out / "index.txt").read_text() == "an earlier index"
    assert "sturdy zest/05-report (2).pdf" in (out / "index (2).txt").read_text()


def test_a_planted_symlink_in_the_output_folder_is_not_followed(
        sender: Sender, newsroom: Newsroom, tmp_path: Path) -> None:
    item = sender.item("sturdy zest", "message", 1, b"hi", to=[newsroom.fingerprint])
    bundle = write_bundle(tmp_path / "b.tar", [item])
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "sturdy zest").symlink_to(elsewhere)

    proc = run_open(bundle, out, newsroom.secret_home)

    assert proc.returncode == 0, proc.stderr
    assert not list(elsewhere.iterdir())
    assert (out / "sturdy zest (2)" / "01-message.txt").read_bytes() == b"hi"


def test_new_id_matches_the_format() -> None:
    assert len(new_id()) == 26 and new_id().isalnum()
