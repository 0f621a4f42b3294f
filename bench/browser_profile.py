"""Where in-browser encryption spends its time: OpenPGP.js in the source page, no upload.

Run from the repository root (after `make install`, which installs OpenPGP.js):

    .venv/bin/python bench/browser_profile.py [--size 256M] [--engines chromium,firefox]
        [--rounds 1] [--cases v1-1m,v1-1m-worker,...] [--fresh] [--from-file] [--no-profile]

bench/browser_encrypt.py times the whole journey (encrypt, send in pieces, store). This one
asks where the encryption's own time goes, in the page a source has open (the submit page
of a throwaway instance on loopback, its CSP, its OpenPGP.js and the newsroom key), with
nothing sent: the ceiling that no change to the upload can pass.

In each engine, one after the other in the same page (so the machine's load is shared
alike), for a file of --size random bytes held in a Blob:

- read only: File.stream() drained (its 64 KiB chunks), the floor of the plumbing;
- SEIPDv1 (what encrypt.js sends: AES-256-CFB with the SHA-1 MDC, no compression) fed
  File.stream()'s 64 KiB chunks as they come, and regrouped into 1 MiB and 4 MiB chunks;
- SEIPDv2 with AES-256-GCM, which OpenPGP.js computes with WebCrypto: what the encryption
  could run at if the newsroom's side read RFC 9580 (GnuPG 2.2 does not; encrypt.js never
  sends it);
- WebCrypto AES-256-GCM over the same bytes in 1 MiB calls, no OpenPGP at all: the
  native ceiling;
- SEIPDv1 again in a dedicated Worker (same origin: OpenPGP.js's bundle and the same steps
  in a bench-only script that exists in static/ for the run only), the Blob posted to it:
  v1-1m-worker posts the ciphertext back to the page chunk by chunk, buffers transferred
  (at most 4 chunks unacknowledged); v1-1m-worker-return also sends each buffer back to
  the worker, which drops it; v1-1m-worker-count (and -256k-, -64k- with smaller chunks)
  only counts it in the worker. Whether the page process's memory rises less when the
  encryption's garbage is the worker's (a Worker runs in the page's process, in both
  engines).

Beside each case, how far the page process's resident memory rose above what it was just
before (sampled every 50 ms): what the encryption holds with no upload at all. Cases run
one after the other in one page leave their garbage to the next; --fresh runs each case in
a browser of its own, and rounds alternate the order. --from-file reads a file of random
bytes from disk through the page's file input (as a source's file is) instead of a Blob
built in memory (which Firefox keeps in the page process). --cases picks cases.

In Chromium the 1 MiB SEIPDv1 case runs again under the DevTools protocol's sampling
profiler (through Playwright's CDP session), with OpenPGP.js's unminified build put in the
page so functions have names; its self time is summed into AES-CFB (OpenPGP.js's CFB on
WebCrypto's AES-CBC and its XOR), SHA-1 (the MDC, in JavaScript), the rest of OpenPGP.js
(packets and its stream plumbing), garbage collection and idle (the page thread waiting,
mostly for WebCrypto's own thread). Firefox over WebDriver BiDi offers no profiler; its
splits are the cases above, measured with performance.now() inside the page.

Prints the figures; it writes nothing into docs/.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from browser_encrypt import MemorySampler, descendants, named_processes
from upload import (
    MIB,
    human_size,
    machine,
    make_instance,
    parse_size,
    running_server,
    stop_gpg_agents,
)

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
UNMINIFIED = REPO / "node_modules" / "openpgp" / "dist" / "openpgp.js"
SAMPLING_US = 500
SETTLE_SECONDS = 3
CASES = ("read", "v1-64k", "v1-1m", "v1-4m", "v2-gcm", "webcrypto-gcm", "v1-1m-worker",
         "v1-1m-worker-count", "v1-1m-worker-return", "v1-256k-worker-count",
         "v1-64k-worker-count")
LABELS = {
    "read": "read only (File.stream(), 64 KiB chunks)",
    "v1-64k": "SEIPDv1 AES-256-CFB + SHA-1, 64 KiB chunks in",
    "v1-1m": "SEIPDv1, regrouped into 1 MiB chunks (encrypt.js)",
    "v1-4m": "SEIPDv1, regrouped into 4 MiB chunks",
    "v2-gcm": "SEIPDv2 AES-256-GCM (not readable by gpg 2.2)",
    "webcrypto-gcm": "WebCrypto AES-256-GCM alone, 1 MiB calls",
    "v1-1m-worker": "SEIPDv1, 1 MiB chunks, in a Worker, ciphertext transferred to the page",
    "v1-1m-worker-count": "SEIPDv1, 1 MiB chunks, in a Worker, ciphertext counted there",
    "v1-1m-worker-return": "SEIPDv1, 1 MiB chunks, in a Worker, ciphertext transferred to "
                           "the page and back",
    "v1-256k-worker-count": "SEIPDv1, 256 KiB chunks, in a Worker, ciphertext counted there",
    "v1-64k-worker-count": "SEIPDv1, 64 KiB chunks, in a Worker, ciphertext counted there",
}
# The Worker cases: a bench-only script, OpenPGP.js's IIFE bundle with WORKER_BODY after it,
# written into static/ (which the throwaway instance serves from this checkout) for the
# run and removed after. One file, because the worker's own CSP (default-src 'none', that
# of any static file) refuses importScripts. The page's CSP allows workers from 'self';
# its Trusted Types rule (one policy, pow.js's) is lifted by bypass_csp in Chromium and by
# a pref in Firefox's bench profile (see run_firefox). Nothing in the product changes.
WORKER_FILE = "bench-openpgp-worker.js"
WORKER_AHEAD = 4  # chunks posted to the page and not yet acknowledged, at most

# In the worker: the same keys, config and 1 MiB regrouping as the v1-1m case; each
# ciphertext chunk is either counted there, or posted to the page with its buffer
# transferred (a chunk that is a view into a larger buffer is copied first, counted).
# encrypt.js's regrouping of the file's chunks into chunks of ``size``, for the page's
# cases and the Worker's alike.
REGROUP = r"""
  const regroup = (size) => {
    let buffer = new Uint8Array(size);
    let filled = 0;
    return new TransformStream({
      transform(chunk, controller) {
        let offset = 0;
        while (offset < chunk.byteLength) {
          const take = Math.min(size - filled, chunk.byteLength - offset);
          buffer.set(chunk.subarray(offset, offset + take), filled);
          filled += take;
          offset += take;
          if (filled === size) {
            controller.enqueue(buffer);
            buffer = new Uint8Array(size);
            filled = 0;
          }
        }
      },
      flush(controller) { if (filled) { controller.enqueue(buffer.subarray(0, filled)); } },
    });
  };
"""

WORKER_BODY = r"""
;(function () {
  'use strict';
  let credit = null;  // resolves when the page acknowledges a chunk
  let ahead = 0;
  /*REGROUP*/
  async function run(blob, armored, chunkSize, transfer, most) {
    const keys = [];
    for (const armoredKey of armored) {
      const key = await openpgp.readKey({ armoredKey });
      const sigs = key.directSignatures.slice();
      key.users.forEach((u) => sigs.push(...u.selfCertifications));
      sigs.forEach((s) => {
        if (s.features) { s.features[0] &= ~openpgp.enums.features.seipdv2; }
      });
      keys.push(key);
    }
    const message = await openpgp.createMessage({
      binary: blob.stream().pipeThrough(regroup(chunkSize)), format: 'binary' });
    const config = { preferredSymmetricAlgorithm: openpgp.enums.symmetric.aes256,
                     preferredCompressionAlgorithm: openpgp.enums.compression.uncompressed,
                     aeadProtect: false };
    const out = await openpgp.encrypt({ message, encryptionKeys: keys, format: 'binary', config });
    const reader = out.getReader();
    let total = 0;
    let copies = 0;
    for (let n = 0; n < most; n++) {
      const next = await reader.read();
      if (next.done) { return { done: total, copies }; }
      let chunk = next.value;
      total += chunk.byteLength;
      if (transfer) {
        if (chunk.byteOffset !== 0 || chunk.byteLength !== chunk.buffer.byteLength) {
          chunk = chunk.slice();
          copies++;
        }
        while (ahead >= AHEAD) { await new Promise((resolve) => { credit = resolve; }); }
        ahead++;
        self.postMessage({ chunk }, [chunk.buffer]);
      }
    }
    throw new Error('more chunks than ' + most);
  }
  self.onmessage = (event) => {
    const data = event.data;
    if (data.ack) {  // with the chunk's buffer in the -return case, dropped here
      ahead--;
      if (credit) { const resolve = credit; credit = null; resolve(); }
      return;
    }
    run(data.blob, data.armored, data.chunkSize, data.transfer, data.most).then(
      (result) => self.postMessage(result),
      (error) => self.postMessage({ error: String(error && error.stack || error) }));
  };
})();
""".replace("AHEAD", str(WORKER_AHEAD)).replace("  /*REGROUP*/\n", REGROUP)


# One case, in the page: the same steps encrypt.js takes (its keys, its config), the
# output drained and counted as the upload would read it. Returns milliseconds.
PAGE_CASE = r"""
async ([mib, name]) => {
  if (name === 'prepare-file') {  // --from-file: the file the bench chose in #files
    window.benchBlob = document.getElementById('files').files[0];
    return 0;
  }
  const config = JSON.parse(document.getElementById('encrypt-config').textContent);
  if (!window.benchBlob || window.benchBlob.size !== mib * 1048576) {
    const part = new Uint8Array(1048576);
    for (let i = 0; i < part.length; i += 65536) {
      crypto.getRandomValues(part.subarray(i, i + 65536));
    }
    const parts = [];
    for (let i = 0; i < mib; i++) { parts.push(part); }
    window.benchBlob = new Blob(parts);
  }
  const blob = window.benchBlob;
  if (name === 'prepare') { return 0; }
  const keys = [];
  for (const entry of config.keys) {
    const key = await openpgp.readKey({ armoredKey: entry.armored });
    const sigs = key.directSignatures.slice();
    key.users.forEach((u) => sigs.push(...u.selfCertifications));
    sigs.forEach((s) => {
      if (name === 'v2-gcm') {
        s.features = [(s.features ? s.features[0] : 0) | openpgp.enums.features.seipdv2];
        s.preferredCipherSuites = [[openpgp.enums.symmetric.aes256, openpgp.enums.aead.gcm]];
      } else if (s.features) {
        s.features[0] &= ~openpgp.enums.features.seipdv2;
      }
    });
    keys.push(key);
  }
  /*REGROUP*/
  const drain = async (stream) => {
    const reader = stream.getReader();
    let total = 0;
    for (;;) {
      const next = await reader.read();
      if (next.done) { return total; }
      total += next.value.byteLength;
    }
  };
  const started = performance.now();
  let produced = 0;
  if (name.includes('-worker')) {
    // v1-<chunks>-worker[-count|-return]; no suffix: transferred to the page.
    const [, chunkName, mode] = name.match(/^v1-(\w+)-worker-?(\w*)$/);
    const chunkSize = { '64k': 65536, '256k': 262144, '1m': 1048576 }[chunkName];
    const worker = new Worker('/static/WORKER_FILE');
    let received = 0;
    let timer = null;
    try {
      const result = await new Promise((resolve, reject) => {
        timer = setTimeout(() => reject(new Error(name + ': no answer in 30 minutes')),
                           30 * 60 * 1000);
        worker.onmessage = (event) => {
          const data = event.data;
          if (data.chunk) {
            received += data.chunk.byteLength;
            if (mode === 'return') {
              worker.postMessage({ ack: true, chunk: data.chunk }, [data.chunk.buffer]);
            } else {
              worker.postMessage({ ack: true });
            }
          } else if (data.error) {
            reject(new Error(name + ': ' + data.error));
          } else {
            resolve(data);
          }
        };
        worker.onerror = (event) => reject(new Error(name + ': worker: ' + event.message));
        worker.postMessage({ blob, armored: config.keys.map((k) => k.armored), chunkSize,
                             transfer: mode !== 'count', most: 64 * mib + 1024 });
      });
      produced = mode === 'count' ? result.done : received;
    } finally {
      clearTimeout(timer);
      worker.terminate();
    }
  } else if (name === 'read') {
    produced = await drain(blob.stream());
  } else if (name === 'webcrypto-gcm') {
    const key = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false,
                                                ['encrypt']);
    const reader = blob.stream().pipeThrough(regroup(1048576)).getReader();
    for (let n = 0; ; n++) {
      const next = await reader.read();
      if (next.done) { break; }
      const iv = new Uint8Array(12);
      new DataView(iv.buffer).setUint32(8, n);
      const sealed = await crypto.subtle.encrypt({ name: 'AES-GCM', iv }, key, next.value);
      produced += sealed.byteLength;
    }
  } else {
    const sizes = { 'v1-64k': 0, 'v1-1m': 1048576, 'v1-4m': 4194304, 'v2-gcm': 1048576 };
    const input = sizes[name] ? blob.stream().pipeThrough(regroup(sizes[name])) : blob.stream();
    const message = await openpgp.createMessage({ binary: input, format: 'binary' });
    const config = { preferredSymmetricAlgorithm: openpgp.enums.symmetric.aes256,
                     preferredCompressionAlgorithm: openpgp.enums.compression.uncompressed,
                     aeadProtect: name === 'v2-gcm',
                     preferredAEADAlgorithm: openpgp.enums.aead.gcm };
    const out = await openpgp.encrypt({ message, encryptionKeys: keys, format: 'binary', config });
    produced = await drain(out);
  }
  const ms = performance.now() - started;
  if (produced < blob.size) { throw new Error(name + ': produced ' + produced + ' bytes'); }
  return ms;
}
""".replace("WORKER_FILE", WORKER_FILE).replace("  /*REGROUP*/\n", REGROUP)


def categorize(node: dict[str, Any], unminified_url: str) -> str:
    frame = node["callFrame"]
    name, url, line = frame["functionName"], frame["url"], frame["lineNumber"] + 1
    if name in ("(idle)", "(program)", "(garbage collector)"):
        return {"(idle)": "idle (waiting: WebCrypto's thread, the event loop)",
                "(program)": "browser-internal (native, outside JavaScript)",
                "(garbage collector)": "garbage collection"}[name]
    if name == "encrypt" and not url:  # crypto.subtle.encrypt, the native call itself
        return "AES-CFB (OpenPGP.js CFB on WebCrypto AES-CBC, its XOR)"
    if url == unminified_url or url.endswith("openpgp.js"):
        if 8658 <= line <= 8860:
            return "AES-CFB (OpenPGP.js CFB on WebCrypto AES-CBC, its XOR)"
        if 20409 <= line <= 20530 or 23959 <= line <= 24030:
            return "SHA-1 (the MDC, in JavaScript)"
        return "rest of OpenPGP.js (packets, stream plumbing, copies)"
    return "page and stream glue (regrouping, draining)"


def chromium_profile(page: Any, context: Any, mib: int) -> tuple[float, list[tuple[str, float]],
                                                                  list[tuple[str, float]]]:
    page.add_script_tag(path=str(UNMINIFIED))  # the named build replaces the minified one
    cdp = context.new_cdp_session(page)
    cdp.send("Profiler.enable")
    cdp.send("Profiler.setSamplingInterval", {"interval": SAMPLING_US})
    cdp.send("Profiler.start")
    ms = page.evaluate(PAGE_CASE, [mib, "v1-1m"])
    profile = cdp.send("Profiler.stop")["profile"]
    delta: dict[int, float] = {}
    for node_id, dt_us in zip(profile["samples"], profile["timeDeltas"], strict=True):
        delta[node_id] = delta.get(node_id, 0.0) + dt_us / 1000
    by_category: dict[str, float] = {}
    by_function: dict[str, float] = {}
    for node in profile["nodes"]:
        spent = delta.get(node["id"], 0.0)
        if not spent:
            continue
        category = categorize(node, "")
        by_category[category] = by_category.get(category, 0.0) + spent
        frame = node["callFrame"]
        where = f"{frame['functionName'] or '(anonymous)'} " \
                f"{Path(frame['url']).name or '-'}:{frame['lineNumber'] + 1}"
        by_function[where] = by_function.get(where, 0.0) + spent
    top = sorted(by_function.items(), key=lambda kv: -kv[1])[:12]
    return ms, sorted(by_category.items(), key=lambda kv: -kv[1]), top


def open_submit_page(goto: Any, click_and_load: Any, wait_for: Any, url: str) -> None:
    goto(url + "/generate")
    click_and_load("form[action='/create'] button[type=submit]")
    wait_for("#encrypt-note")


# Milliseconds; MiB each process type rose (RSS peak over the case minus just before it);
# MiB each process type held just before.
Measured = tuple[float, dict[str, float], dict[str, float]]


def random_file(path: Path, size: int) -> Path:
    with path.open("wb") as fh:
        for offset in range(0, size, MIB):
            fh.write(os.urandom(min(MIB, size - offset)))
    return path


def in_order(cases: Sequence[str], round_: int) -> Sequence[str]:
    """The cases as given in even rounds, reversed in odd ones: each case follows another's
    garbage as often as it precedes it."""
    return cases if round_ % 2 == 0 else list(reversed(cases))


def measured(call: Any, sampler: MemorySampler) -> Measured:
    time.sleep(SETTLE_SECONDS)  # the previous case's garbage, a chance to be collected
    sampler.sample()
    idle = dict(sampler.peak_rss_kib)
    sampler.peak_rss_kib.clear()
    with sampler:
        ms = float(call())
    return ms, {kind: (peak - idle.get(kind, 0)) / 1024
                for kind, peak in sampler.peak_rss_kib.items()}, \
        {kind: rss / 1024 for kind, rss in idle.items()}


class WorkerScript:
    """static/WORKER_FILE for the run's Worker cases, removed after (see WORKER_FILE)."""

    def __init__(self) -> None:
        self.path = REPO / "static" / WORKER_FILE

    def __enter__(self) -> WorkerScript:
        bundle = (REPO / "static" / "vendor" / "openpgp.min.js").read_text()
        self.path.write_text(bundle + "\n" + WORKER_BODY)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.path.unlink(missing_ok=True)


def run_chromium(url: str, mib: int, rounds: int, cases: Sequence[str], profile_it: bool,
                 fresh: bool, from_file: Path | None) -> tuple[dict[str, list[Measured]], Any]:
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    results: dict[str, list[Measured]] = {}
    profile = None
    with sync_playwright() as playwright:

        def session(plan: Sequence[str], profile_it: bool) -> Any:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                 args=args)
            try:
                # bypass_csp so that the profile can put the unminified OpenPGP.js in, and
                # so that the page may start the bench's Worker (Trusted Types allows
                # pow.js's policy only, which pow.js has already made).
                context = browser.new_context(bypass_csp=True)
                page = context.new_page()
                page.set_default_timeout(30 * 60 * 1000)

                def click_and_load(selector: str) -> None:
                    page.click(selector)
                    page.wait_for_url("**/submit")

                open_submit_page(page.goto, click_and_load, page.wait_for_selector, url)
                if from_file is not None:
                    page.set_input_files("#files", str(from_file))
                    page.evaluate(PAGE_CASE, [mib, "prepare-file"])
                page.evaluate(PAGE_CASE, [mib, "prepare"])  # the Blob, before any case
                for case in plan:
                    results.setdefault(case, []).append(
                        measured(lambda c=case: page.evaluate(PAGE_CASE, [mib, c]),
                                 MemorySampler(None)))
                found = chromium_profile(page, context, mib) if profile_it else None
                context.close()
                return found
            finally:
                browser.close()

        plan = [c for round_ in range(rounds) for c in in_order(cases, round_)]
        if fresh:
            for case in plan:
                session([case], False)
            if profile_it:
                profile = session([], True)
        else:
            profile = session(plan, profile_it)
    return results, profile


def run_firefox(url: str, mib: int, rounds: int, workdir: Path, cases: Sequence[str],
                fresh: bool, from_file: Path | None) -> dict[str, list[Measured]]:
    sys.path.insert(0, str(REPO))
    from tests.browser.engines import FirefoxTab

    results: dict[str, list[Measured]] = {}
    # The bridge evaluates a function's source; arguments go in the source.
    function = PAGE_CASE.replace("async ([mib, name]) =>", "async (mib, name) =>")

    def session(plan: Sequence[str], n: int) -> None:
        profile = workdir / f"firefox-profile-{n}"
        profile.mkdir(parents=True, exist_ok=True)
        # The bench's Worker needs a script URL that Trusted Types would refuse (the page
        # allows pow.js's one policy only); this bench-only profile turns Trusted Types
        # off, and nothing else (the bridge adds its prefs in user.js; prefs.js is read
        # first).
        (profile / "prefs.js").write_text(
            'user_pref("dom.security.trusted_types.enabled", false);\n')
        tab = FirefoxTab(True, profile, workdir / f"firefox-{n}.log")
        try:
            open_submit_page(tab.goto, tab.click_and_load, tab.wait_for, url)
            if from_file is not None:
                tab.set_files("#files", [from_file])
                tab.evaluate(f"() => ({function})({mib}, 'prepare-file')")
            tab.evaluate(f"() => ({function})({mib}, 'prepare')")  # the Blob, before any case
            for case in plan:
                source = f"() => ({function})({mib}, '{case}')"
                results.setdefault(case, []).append(
                    measured(lambda s=source: tab.evaluate(s),
                             MemorySampler(None, lambda: named_processes(descendants(tab.pid)))))
        finally:
            tab.close()

    plan = [c for round_ in range(rounds) for c in in_order(cases, round_)]
    if fresh:
        for n, case in enumerate(plan):
            session([case], n)
    else:
        session(plan, 0)
    return results


def table(engine: str, mib: int, results: dict[str, list[Measured]], page_kind: str,
          rounds: int) -> list[str]:
    lines = [f"### {engine}, {mib} MiB (median of {rounds} round(s); ratio to what encrypt.js "
             "does; rises are the largest of the rounds, RSS peak over the case minus just "
             "before it)", "",
             f"| Case | s | MiB/s | / encrypt.js | Page process ({page_kind}) rose, MiB | "
             "each round: before → peak | Other processes that rose 10 MiB or more |",
             "|---|---|---|---|---|---|---|"]
    best = {case: sorted(r[0] for r in v)[len(v) // 2] / 1000 for case, v in results.items()}
    for case, runs in results.items():
        seconds = best[case]
        rises: dict[str, float] = {}
        for _, rose, _before in runs:
            for kind, mib_rose in rose.items():
                rises[kind] = max(rises.get(kind, mib_rose), mib_rose)
        page = rises.pop(page_kind, 0.0)
        each = ", ".join(f"{before.get(page_kind, 0):.0f} → "
                         f"{before.get(page_kind, 0) + rose.get(page_kind, 0):.0f}"
                         for _, rose, before in runs)
        others = ", ".join(f"{kind} +{m:.0f}" for kind, m in sorted(rises.items())
                           if m >= 10) or "-"
        ratio = f"{best['v1-1m'] / seconds:.2f}" if "v1-1m" in best else "-"
        lines.append(f"| {LABELS[case]} | {seconds:.2f} | {mib / seconds:.1f} | "
                     f"{ratio} | {page:.0f} | {each} | {others} |")
    return [*lines, ""]


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="256M", type=parse_size)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--engines", default="chromium,firefox",
                        type=lambda s: [e for e in s.split(",") if e in ("chromium", "firefox")])
    parser.add_argument("--cases", default=",".join(CASES),
                        type=lambda s: [c for c in s.split(",") if c],
                        help="comma-separated, run in this order in each round: "
                             + ", ".join(CASES))
    parser.add_argument("--fresh", action="store_true",
                        help="each case in a browser of its own, started for it (no garbage "
                             "left by the case before; a Blob made anew)")
    parser.add_argument("--from-file", action="store_true",
                        help="the plaintext is a file of random bytes on disk, chosen in the "
                             "page's file input (as a source's is), not a Blob in memory")
    parser.add_argument("--no-profile", action="store_true",
                        help="skip Chromium's sampling profile of the v1-1m case")
    args = parser.parse_args(args_list)
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        parser.error(f"unknown cases: {', '.join(unknown)}")
    if not UNMINIFIED.exists():
        print("OpenPGP.js is not installed: run `make install` first", file=sys.stderr)
        return 2
    mib = args.size // MIB
    load_at_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    command = [".venv/bin/python", "bench/browser_profile.py", *args_list]
    lines = [f"Command: `{' '.join(shlex.quote(a) for a in command)}`",
             "", "| Machine | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in machine(load_at_start)] + [""]
    with tempfile.TemporaryDirectory(prefix="tipbox-bench-profile-") as tmp:
        workdir = Path(tmp)
        instance = make_instance(workdir)
        from_file = random_file(workdir / "plaintext.bin", args.size) if args.from_file else None
        try:
            with running_server(instance) as srv, WorkerScript():
                url = f"http://127.0.0.1:{srv.port}"
                profile = None
                if "chromium" in args.engines:
                    print(f"Chromium, {human_size(args.size)}", flush=True)
                    results, profile = run_chromium(url, mib, args.rounds, args.cases,
                                                    not args.no_profile, args.fresh, from_file)
                    lines += table("Chromium", mib, results, "renderer", args.rounds)
                if "chromium" in args.engines and profile is not None:
                    ms, categories, top = profile
                    total = sum(t for _, t in categories)
                    lines += [f"Chromium profile of the 1 MiB SEIPDv1 case ({ms / 1000:.2f} s, "
                              f"{mib / ms * 1000:.1f} MiB/s with the unminified build; "
                              f"sampled every {SAMPLING_US} µs), page thread:", "",
                              "| Where | s | share |", "|---|---|---|"]
                    lines += [f"| {c} | {t / 1000:.2f} | {t / total:.0%} |"
                              for c, t in categories]
                    lines += ["", "Top functions by self time:", "", "| Function | s |",
                              "|---|---|"]
                    lines += [f"| {f} | {t / 1000:.2f} |" for f, t in top] + [""]
                if "firefox" in args.engines:
                    print(f"Firefox, {human_size(args.size)}", flush=True)
                    lines += table("Firefox ESR (private window)", mib,
                                   run_firefox(url, mib, args.rounds, workdir, args.cases,
                                               args.fresh, from_file),
                                   "Isolated Web Co", args.rounds)
        finally:
            stop_gpg_agents(workdir)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
