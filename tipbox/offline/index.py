"""index.txt: every item of the bundle, what became of it, and where it went."""

from __future__ import annotations

import unicodedata
from collections import Counter
from pathlib import Path

from tipbox.offline.names import display, reserve_file
from tipbox.offline.opener import Result, Row

_COLUMNS = ("SOURCE", "KIND", "SEQ", "DAY", "ORIGINAL NAME", "OUTPUT", "STATUS")
_MAX_COLUMN = 40


def write_index(result: Result, out: Path, home: Path, today: str) -> Path:
    """Write the index into ``out`` (as ``index.txt``, or ``index (2).txt`` if taken)."""
    path = reserve_file(out, "", "index.txt")
    path.write_text(render(result, home, today), encoding="utf-8")
    return path


def render(result: Result, home: Path, today: str) -> str:
    rows = sorted(result.rows, key=_order)
    lines = [
        "tipbox-open index",
        "",
        f"Bundle:  tipbox-{result.bundle_id}, created on {result.created_on}",
        f"Opened:  {today}, with the GnuPG home {display(str(home))}",
        f"Result:  {summary(result)}",
        "",
        "Names from the bundle are shown safe to read: control, format and bidi characters",
        "appear as \\x.., \\u.... escapes. Output paths are relative to this folder.",
        "",
    ]
    table = [_COLUMNS, *(_cells(row) for row in rows)]
    widths = [min(_MAX_COLUMN, max(width(cells[n]) for cells in table))
              for n in range(len(_COLUMNS) - 1)]
    for cells in table:
        lines.append("  ".join([*(pad(c, w) for c, w in zip(cells, widths, strict=False)),
                                cells[-1]]).rstrip())
    lines += _keys_needed(rows, home)
    if result.mat2_missing:
        lines += ["", "--scrub was asked for, but mat2 is not installed: no metadata was "
                  "removed. Install it (Debian: apt-get install mat2) and run mat2 on the files."]
    return "\n".join(lines) + "\n"


def width(text: str) -> int:
    """Columns ``text`` takes in a terminal: East Asian wide characters take two,
    combining marks none (file names from anywhere in the world go in these columns)."""
    return sum(0 if unicodedata.combining(ch) else
               2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def pad(text: str, columns: int) -> str:
    return text + " " * max(0, columns - width(text))


def summary(result: Result) -> str:
    """``10 of 12 items decrypted; 1 needs a missing key; 1 failed.``, and with --scrub
    ``3 of 4 files scrubbed, 1 NOT scrubbed``."""
    listed = [row for row in result.rows if row.seq is not None]
    counts = Counter(_outcome(row) for row in result.rows)
    parts = [f"{counts['decrypted']} of {len(listed)} items decrypted"]
    for key, words in (("missing key", "need a key this keyring lacks"),
                       ("mismatch", "did not match the manifest"),
                       ("missing", "missing from the bundle"),
                       ("extra", "not listed in the manifest"),
                       ("bomb", "refused as likely compression bombs"),
                       ("no room", "not decrypted for lack of disk space"),
                       ("failed", "failed"), ("not processed", "not processed")):
        if counts[key]:
            parts.append(f"{counts[key]} {words}")
    scrubbed = [row.scrubbed for row in result.rows if row.scrubbed is not None]
    if scrubbed:
        parts.append(f"{sum(scrubbed)} of {len(scrubbed)} files scrubbed")
        if not all(scrubbed):
            parts[-1] += f", {scrubbed.count(False)} NOT scrubbed"
    return "; ".join(parts) + "."


def _outcome(row: Row) -> str:
    if row.decrypted:
        return "decrypted"
    if row.missing_keys:
        return "missing key"
    if "missing from the bundle" in row.status:
        return "missing"
    if "not listed in the manifest" in row.status:
        return "extra"
    if "for lack of disk space" in row.status:
        return "no room"
    if row.status.startswith("refused"):
        return "bomb"
    if row.status.startswith("not decrypted"):
        return "mismatch"
    if row.status.startswith("not processed"):
        return "not processed"
    return "failed"


def _order(row: Row) -> tuple[bool, str, int, str]:
    return (row.seq is None, row.source, row.seq if row.seq is not None else 0, row.kind)


def _cells(row: Row) -> tuple[str, ...]:
    status = "; ".join([row.status, *row.notes])
    return (display(row.source), row.kind, "" if row.seq is None else str(row.seq), row.day,
            display(row.original_name) or "-", display(row.output) or "-",
            f"{status} (item {row.item_id})" if not row.decrypted else status)


def _keys_needed(rows: list[Row], home: Path) -> list[str]:
    needed = Counter(fpr for row in rows for fpr in row.missing_keys)
    if not needed:
        return []
    lines = ["", "Keys this keyring lacks (import the secret key, then open the bundle again "
             "into a new folder):"]
    lines += [f"  {fpr}  ({count} item{'s' if count > 1 else ''})"
              for fpr, count in needed.most_common()]
    lines.append(f"  gpg --homedir {display(str(home))} --import SECRET-KEY-FILE")
    return lines
