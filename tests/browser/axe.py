"""axe-core in the session's Chromium, and the other checks made on every page a scan
visits: one `<h1>`, and a page that never scrolls sideways.

The axe-core script comes from the test's own files (node_modules/axe-core, pinned in
package-lock.json) and goes into the page through the browser driver, never through the
app, so the site's Content-Security-Policy is the one every visitor gets.

Playwright's `java_script_enabled=False` turns scripting off for the whole page, timers
included, and axe-core needs timers. So a JavaScript-off tab here is a context with
scripting on whose page has it turned off through the DevTools protocol (the command
Playwright itself uses): each page loads and renders exactly as with JavaScript off (no
script of the site runs, `<noscript>` applies), and scripting is turned on only while
the checks read the finished page, then off again before the next one loads.
"""

from __future__ import annotations

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

# What a page must also be, beyond axe-core's rules (issue 10): exactly one <h1>, and at
# any width (320 CSS px included) no sideways scrolling of the page itself; a wide table
# scrolls inside its own box instead. A table whose box is wider than the viewport is
# named too, even if the page hides the overflow.
LAYOUT = """() => {
    const problems = [];
    const headings = document.querySelectorAll('h1').length;
    if (headings !== 1) problems.push(`${headings} <h1> elements, not one`);
    const page = document.documentElement;
    if (page.scrollWidth > page.clientWidth) {
        // Name the outermost elements that stick out, outside any box that scrolls.
        const out = [...document.body.querySelectorAll('*')].filter(e => {
            const box = e.getBoundingClientRect();
            return (box.right > page.clientWidth + 1 || box.left < -1)
                && !e.parentElement.closest('.table-scroll')
                && !(e.parentElement.getBoundingClientRect().right > page.clientWidth + 1
                     || e.parentElement.getBoundingClientRect().left < -1);
        }).slice(0, 3).map(e => `${e.tagName.toLowerCase()}.${e.className}`);
        problems.push(`the page scrolls sideways: ${page.scrollWidth} px wide in ` +
                      `${page.clientWidth}, because of ${out.join(', ')}`);
    }
    for (const table of document.querySelectorAll('table')) {
        const box = table.parentElement.getBoundingClientRect();
        if (box.left < 0 || box.right > page.clientWidth) {
            problems.push(`table.${table.className} sticks out of the page`);
        }
        const scrolls = getComputedStyle(table.parentElement).overflowX;
        if (table.scrollWidth > table.parentElement.clientWidth && scrolls !== 'auto') {
            problems.push(`table.${table.className} is wider than its box, which does not scroll`);
        }
    }
    return problems;
}"""


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


@dataclass
class ScanTab:
    """One page of one browser context, JavaScript on or off, that walks through a site
    and checks each page it is asked to scan."""

    page: Any
    devtools: Any  # the page's own DevTools session, to turn the site's scripts on and off
    javascript: bool
    problems: dict[str, list[str]] = field(default_factory=dict)
    scanned: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, browser: Any, javascript: bool, width: int) -> ScanTab:
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
        """Check the page as it is now; what is wrong is kept under ``name``."""
        self.page.wait_for_load_state("load")
        if not self.javascript:
            self._site_scripts(True)
        try:
            if not self.page.evaluate("() => typeof window.axe === 'object'"):
                self.page.evaluate(axe_source())
            found = self.page.evaluate(RUN_AXE)
            layout = self.page.evaluate(LAYOUT)
        finally:
            if not self.javascript:
                self._site_scripts(False)
        self.scanned.append(name)
        problems = [f"{v['id']} ({v['impact']}): {v['help']} at {', '.join(v['targets'][:4])}"
                    for v in found] + list(layout)
        if problems:
            self.problems[name] = problems

    def html_lang_dir(self) -> tuple[str, str]:
        lang, direction = self.page.evaluate(
            "() => [document.documentElement.lang, document.documentElement.dir]")
        return str(lang), str(direction)
