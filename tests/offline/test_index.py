"""index.txt lines its columns up for names in any script."""

from __future__ import annotations

from pathlib import Path

from tipbox.offline.index import pad, render, width
from tipbox.offline.opener import Result, Row


def test_wide_characters_take_two_columns_and_combining_marks_none() -> None:
    assert width("report.pdf") == 10
    assert width("日本語.txt") == 10
    assert width("Cafe\u0301") == 4  # "Café" with a combining accent
    assert pad("日本", 6) == "日本  " and pad("toolong", 3) == "toolong"


def test_columns_line_up_whatever_the_script_of_the_names() -> None:
    rows = [Row(f"id{n}", "lukewarm issues", "file", n, "2026-11-30", name, f"0{n}-{name}",
                "decrypted") for n, name in enumerate(["a.txt", "日本の資料.pdf", "Über.doc"], 1)]
    text = render(Result("b1", "2026-11-30", rows), Path("/gnupg"), "2026-11-30")
    header = next(line for line in text.splitlines() if line.startswith("SOURCE"))
    lines = [line for line in text.splitlines() if line.startswith("lukewarm issues")]
    assert len(lines) == 3
    # Where each column starts on screen: the same on the header and on every row.
    for line, row in zip(lines, rows, strict=True):
        for column, value in (("OUTPUT", row.output), ("STATUS", "decrypted")):
            assert (width(line[:line.index(value)])
                    == width(header[:header.index(column)])), (column, text)
