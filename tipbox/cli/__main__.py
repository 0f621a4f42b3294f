"""``python -m tipbox.cli``, as `tipbox demo` starts its two servers."""

from __future__ import annotations

from tipbox.cli import main

main()
