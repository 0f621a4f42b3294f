"""manifest.json of an export bundle (docs/bundle-format.md), checked field by field."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from tipbox.offline.errors import BundleRefused
from tipbox.offline.names import display

MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_ITEMS = 200_000
MAX_SEQ = 10**9
MAX_SIZE = 1 << 50
MAX_DESIGNATION_CHARS = 200
MAX_KEYS_PER_ITEM = 32
KINDS = ("message", "file", "reply")
ID_RE = re.compile(r"[a-z2-7]{26}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_FPR_RE = re.compile(r"[0-9A-F]{40}|[0-9A-F]{64}")
_DAY_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class ManifestItem:
    id: str
    source: str
    kind: str
    seq: int
    day: str
    size: int
    sha256: str
    key_fingerprints: tuple[str, ...]


@dataclass(frozen=True)
class Manifest:
    bundle_id: str
    created_on: str
    items: tuple[ManifestItem, ...]


def parse_manifest(data: bytes) -> Manifest:
    """The manifest in ``data``; :class:`BundleRefused` naming the first field that is wrong."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise BundleRefused("manifest.json is larger than 64 MiB: this is not a tipbox bundle.")
    try:
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_keys,
                         parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BundleRefused(f"manifest.json is not valid UTF-8 JSON ({_why(exc)}): the bundle "
                            "is damaged or was not made by tipbox.") from exc
    top = _object(doc, "manifest.json")
    if top.get("format") != "tipbox-bundle":
        raise BundleRefused("manifest.json does not say format \"tipbox-bundle\": this is not "
                            "a tipbox bundle.")
    version = top.get("version")
    if type(version) is not int or version != 1:
        raise BundleRefused(f"manifest.json has version {display(str(version))}, which this "
                            "tipbox-open does not understand: install a newer tipbox-open.")
    raw_items = top.get("items")
    if not isinstance(raw_items, list):
        raise BundleRefused("manifest.json has no list of items.")
    if len(raw_items) > MAX_ITEMS:
        raise BundleRefused(f"manifest.json lists more than {MAX_ITEMS} items: export fewer "
                            "items per bundle.")
    items = tuple(_item(raw, f"items[{n}]") for n, raw in enumerate(raw_items))
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise BundleRefused(f"manifest.json lists item {item.id} twice.")
        seen.add(item.id)
    return Manifest(_text(top, "bundle_id", "manifest.json", ID_RE),
                    _day(top, "created_on", "manifest.json"), items)


def _item(raw: Any, where: str) -> ManifestItem:
    obj = _object(raw, where)
    source = _text(obj, "source", where)
    if not 0 < len(source) <= MAX_DESIGNATION_CHARS:
        raise BundleRefused(f"manifest.json: {where}.source is empty or too long.")
    kind = _text(obj, "kind", where)
    if kind not in KINDS:
        raise BundleRefused(f"manifest.json: {where}.kind is {display(kind)!r}, not one of "
                            f"{', '.join(KINDS)}.")
    fprs = obj.get("key_fingerprints")
    if not isinstance(fprs, list) or len(fprs) > MAX_KEYS_PER_ITEM or \
            not all(isinstance(f, str) and _FPR_RE.fullmatch(f.upper()) for f in fprs):
        raise BundleRefused(f"manifest.json: {where}.key_fingerprints is not a list of "
                            "OpenPGP fingerprints.")
    return ManifestItem(
        id=_text(obj, "id", where, ID_RE), source=source, kind=kind,
        seq=_int(obj, "seq", where, MAX_SEQ), day=_day(obj, "day", where),
        size=_int(obj, "size", where, MAX_SIZE),
        sha256=_text(obj, "sha256", where, _SHA256_RE),
        key_fingerprints=tuple(f.upper() for f in fprs),
    )


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BundleRefused(f"manifest.json: {where} is not a JSON object.")
    return value


def _text(obj: dict[str, Any], key: str, where: str, pattern: re.Pattern[str] | None = None,
          ) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
        raise BundleRefused(f"manifest.json: {where}.{key} is missing or malformed.")
    return value


def _int(obj: dict[str, Any], key: str, where: str, limit: int) -> int:
    value = obj.get(key)
    if type(value) is not int or not 0 <= value <= limit:
        raise BundleRefused(f"manifest.json: {where}.{key} is not a whole number from 0 to "
                            f"{limit}.")
    return value


def _day(obj: dict[str, Any], key: str, where: str) -> str:
    value = _text(obj, key, where, _DAY_RE)
    try:
        dt.date.fromisoformat(value)
    except ValueError as exc:
        raise BundleRefused(f"manifest.json: {where}.{key} is not a real day.") from exc
    return value


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two values for one key could be read differently by two tools: refuse the ambiguity.
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"key {display(key)!r} appears twice")
        obj[key] = value
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _why(exc: Exception) -> str:
    return "too deeply nested" if isinstance(exc, RecursionError) else display(str(exc))[:200]
