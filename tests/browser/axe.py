"""axe-core in the session's Chromium: the script comes from the test's own files
(node_modules/axe-core, pinned in package-lock.json) and goes into the page through the
browser driver, never through the app, so the site's Content-Security-Policy is the one
every visitor gets.

Playwright's `java_script_enabled=False` turns scripting off for the whole page, timers
included, and axe-core needs timers. So a JavaScript-off tab here is a context with
scripting on whose page has it turned off through the DevTools protocol (the command
Playwright itself uses): each page loads and renders exactly as with JavaScript off (no
script of the site runs, `<noscript>` applies), and scripting is turned on only while
axe-core reads the finished page, then off again before the next one loads.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest

from tipbox.config import REPO_ROOT

AXE_PACKAGE = REPO_ROOT / "node_modules" / "axe-core"

# Every rule axe-core ships but the experimental ones: WCAG 2.0, 2.1 and 2.2 at levels A
# and AA, and the best practices (one main landmark, content inside landmarks, ...).
RUN_AXE = """() => axe.run(document, {resultTypes: ['violations']}).then(result =>
    result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                 targets: v.nodes.map(n => n.target.join(' '))})))"""


def require_axe() -> None:
    """Skip (on a developer's machine only) when npm has not installed axe-core."""
    if (AXE_PACKAGE / "axe.min.js").exists():
        return
    problem = f"axe-core is missing ({AXE_PACKAGE}): make install-test (npm ci)"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the accessibility tests, but {problem}")
    pytest.skip(f"accessibility tests skipped: {problem}")


@cache
def axe_source() -> str:
    return (AXE_PACKAGE / "axe.min.js").read_text(encoding="utf-8")


def axe_version() -> str:
    return str(json.loads((AXE_PACKAGE / "package.json").read_text())["version"])


@dataclass
class AxeTab:
    """One page of one browser context, JavaScript on or off, that walks through a site
    and runs axe-core on each page it is asked to scan."""

    page: Any
    devtools: Any  # the page's own DevTools session, to turn the site's scripts on and off
    javascript: bool
    violations: dict[str, list[str]] = field(default_factory=dict)
    scanned: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, browser: Any, javascript: bool, width: int = 1000) -> AxeTab:
        context = browser.new_context(java_script_enabled=True,
                                      viewport={"width": width, "height": 800})
        page = context.new_page()
        tab = cls(page, context.new_cdp_session(page), javascript)
        tab._site_scripts(javascript)
        return tab

    def _site_scripts(self, on: bool) -> None:
        self.devtools.send("Emulation.setScriptExecutionDisabled", {"value": not on})

    def close(self) -> None:
        self.page.context.close()

    def scan(self, name: str) -> None:
        """Run axe-core on the page as it is now; its violations are kept under ``name``."""
        self.page.wait_for_load_state("load")
        if not self.javascript:
            self._site_scripts(True)
        try:
            if not self.page.evaluate("() => typeof window.axe === 'object'"):
                self.page.evaluate(axe_source())
            found = self.page.evaluate(RUN_AXE)
        finally:
            if not self.javascript:
                self._site_scripts(False)
        self.scanned.append(name)
        if found:
            self.violations[name] = [
                f"{v['id']} ({v['impact']}): {v['help']} at {', '.join(v['targets'][:4])}"
                for v in found]

    def html_lang_dir(self) -> tuple[str, str]:
        lang, direction = self.page.evaluate(
            "() => [document.documentElement.lang, document.documentElement.dir]")
        return str(lang), str(direction)
