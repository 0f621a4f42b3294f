"""How fast the flood defence's Web Worker (static/pow-worker.js) hashes, in Chromium and
Firefox ESR.

Run from the repository root (after `make install-test`):

    .venv/bin/python bench/pow_worker.py [--engines chromium,firefox] [--hashes 300000] [--repeat 2]

Serves static/ from a stdlib HTTP server on loopback (no CSP, so the page may start the
worker directly), opens it in each browser as the browser tests do (tests/browser/engines.py:
Chromium through Playwright, Firefox ESR headless in a private window through
puppeteer-core), and runs the worker on a ticket it can never solve (64 bits) until it has
tried ``--hashes`` numbers, timed from its first progress message. Prints hashes per
second, which docs/admin-guide.md and the default TIPBOX_POW_HASHES_PER_SECOND rest on.
Every run is bounded by ``--hashes`` and by the browser calls' own time limits.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.browser.engines import open_tab  # noqa: E402
from tests.browser.kit import CHROMIUM, chromium_args  # noqa: E402

TICKET = "1.create.20.1800000000.1800001800.0123456789abcdef0123456789abcdef." + "A" * 24
MEASURE = """async () => {
  const worker = new Worker('/pow-worker.js');
  return await new Promise((resolve) => {
    let start = null;
    let first = 0;
    worker.onmessage = (event) => {
      if (start === null) { start = performance.now(); first = event.data.tried; return; }
      if (event.data.tried - first >= %d) {
        worker.terminate();
        resolve((event.data.tried - first) / ((performance.now() - start) / 1000));
      }
    };
    worker.postMessage({ ticket: '%s', bits: 64 });
  });
}"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_args: object) -> None:
        return None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="chromium,firefox")
    parser.add_argument("--hashes", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    handler = functools.partial(_Quiet, directory=str(REPO / "static"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/tipbox.css"
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                                 args=chromium_args())
            for engine in [e for e in args.engines.split(",") if e]:
                with tempfile.TemporaryDirectory() as tmp, \
                        open_tab(engine, True, Path(tmp), lambda: chromium) as tab:
                    tab.goto(url)
                    for _ in range(args.repeat):
                        rate = tab.evaluate(MEASURE % (args.hashes, TICKET))
                        print(f"{engine}: {rate:,.0f} hashes/s", flush=True)
            chromium.close()
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
