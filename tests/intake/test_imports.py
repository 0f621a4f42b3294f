"""Receiving uploads is plain Python: the web layer drives it, it never reaches back."""

from __future__ import annotations

import subprocess
import sys


def test_no_module_of_the_intake_package_imports_flask() -> None:
    code = """
import pkgutil, importlib, sys
import tipbox.intake
for info in pkgutil.iter_modules(tipbox.intake.__path__):
    importlib.import_module(f"tipbox.intake.{info.name}")
importlib.import_module("tipbox.i18n")
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("flask", "flask_wtf", "flask_babel")
             or m.startswith("tipbox.web"))
assert not bad, bad
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
