"""The offline machine has the standard library, python-gnupg and tipbox-open: nothing of
the web stack or the database may be imported by the tool."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_offline_tool_pulls_in_neither_flask_nor_sqlalchemy() -> None:
    code = ("import tipbox.offline.cli, sys; assert not any(m.split('.')[0] in "
            "('flask','sqlalchemy','werkzeug') for m in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr


def test_no_module_of_the_offline_package_reaches_the_server_side() -> None:
    code = """
import pkgutil, importlib, sys
import tipbox.offline
for info in pkgutil.iter_modules(tipbox.offline.__path__):
    if info.name != "__main__":
        importlib.import_module(f"tipbox.offline.{info.name}")
server = ("flask", "sqlalchemy", "werkzeug", "alembic", "click", "cryptography")
bad = sorted(m for m in sys.modules if m.split(".")[0] in server
             or m.startswith(("tipbox.web", "tipbox.db", "tipbox.models", "tipbox.cli",
                              "tipbox.provisioning", "tipbox.demo")))
assert not bad, bad
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
