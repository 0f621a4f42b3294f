"""Where in-browser encryption spends its time: OpenPGP.js in the source page, no upload.

Run from the repository root (after `make install`, which installs OpenPGP.js):

    .venv/bin/python bench/browser_profile.py [--size 256M] [--engines chromium,firefox]

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
  native ceiling.

Beside each case, how far the page process's resident memory rose above what it was just
before (sampled every 50 ms): what the encryption holds with no upload at all.

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from browser_encrypt import MemorySampler, firefox_processes
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
CASES = ("read", "v1-64k", "v1-1m", "v1-4m", "v2-gcm", "webcrypto-gcm")
LABELS = {
    "read": "read only (File.stream(), 64 KiB chunks)",
    "v1-64k": "SEIPDv1 AES-256-CFB + SHA-1, 64 KiB chunks in",
    "v1-1m": "SEIPDv1, regrouped into 1 MiB chunks (encrypt.js)",
    "v1-4m": "SEIPDv1, regrouped into 4 MiB chunks",
    "v2-gcm": "SEIPDv2 AES-256-GCM (not readable by gpg 2.2)",
    "webcrypto-gcm": "WebCrypto AES-256-GCM alone, 1 MiB calls",
}

# One case, in the page: the same steps encrypt.js takes (its keys, its config), the
# output drained and counted as the upload would read it. Returns milliseconds.
PAGE_CASE = r"""
async ([mib, name]) => {
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
  if (name === 'read') {
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
"""


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


Measured = tuple[float, float]  # milliseconds, MiB the page process rose


def measured(call: Any, sampler: MemorySampler, kind: str) -> Measured:
    sampler.sample()
    idle = sampler.peak_rss_kib.get(kind, 0)
    sampler.peak_rss_kib.clear()
    with sampler:
        ms = float(call())
    return ms, (sampler.peak_rss_kib.get(kind, 0) - idle) / 1024


def run_chromium(url: str, mib: int, rounds: int) -> tuple[dict[str, list[Measured]], Any]:
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    results: dict[str, list[Measured]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            # bypass_csp only so that the profile can put the unminified OpenPGP.js in.
            context = browser.new_context(bypass_csp=True)
            page = context.new_page()
            page.set_default_timeout(30 * 60 * 1000)

            def click_and_load(selector: str) -> None:
                page.click(selector)
                page.wait_for_url("**/submit")

            open_submit_page(page.goto, click_and_load, page.wait_for_selector, url)
            for _ in range(rounds):
                for case in CASES:
                    results.setdefault(case, []).append(
                        measured(lambda c=case: page.evaluate(PAGE_CASE, [mib, c]),
                                 MemorySampler(None), "renderer"))
            profile = chromium_profile(page, context, mib)
            context.close()
        finally:
            browser.close()
    return results, profile


def run_firefox(url: str, mib: int, rounds: int, workdir: Path) -> dict[str, list[Measured]]:
    sys.path.insert(0, str(REPO))
    from tests.browser.engines import FirefoxTab

    results: dict[str, list[Measured]] = {}
    tab = FirefoxTab(True, workdir / "firefox-profile", workdir / "firefox.log")
    try:
        open_submit_page(tab.goto, tab.click_and_load, tab.wait_for, url)
        for _ in range(rounds):
            for case in CASES:
                # The bridge evaluates a function's source; arguments go in the source.
                function = PAGE_CASE.replace("async ([mib, name]) =>", "async (mib, name) =>")
                source = f"() => ({function})({mib}, '{case}')"
                results.setdefault(case, []).append(
                    measured(lambda s=source: tab.evaluate(s),
                             MemorySampler(None, lambda: firefox_processes(tab.pid)),
                             "Isolated Web Co"))
    finally:
        tab.close()
    return results


def table(engine: str, mib: int, results: dict[str, list[Measured]]) -> list[str]:
    lines = [f"### {engine}, {mib} MiB (median of rounds; ratio to what encrypt.js does)", "",
             "| Case | s | MiB/s | / encrypt.js | Page process rose, MiB (largest) |",
             "|---|---|---|---|---|"]
    best = {case: sorted(ms for ms, _ in v)[len(v) // 2] / 1000 for case, v in results.items()}
    for case in CASES:
        seconds = best[case]
        rose = max(m for _, m in results[case])
        lines.append(f"| {LABELS[case]} | {seconds:.2f} | {mib / seconds:.1f} | "
                     f"{best['v1-1m'] / seconds:.2f} | {rose:.0f} |")
    return [*lines, ""]


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="256M", type=parse_size)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--engines", default="chromium,firefox",
                        type=lambda s: [e for e in s.split(",") if e in ("chromium", "firefox")])
    args = parser.parse_args(args_list)
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
        try:
            with running_server(instance) as srv:
                url = f"http://127.0.0.1:{srv.port}"
                if "chromium" in args.engines:
                    print(f"Chromium, {human_size(args.size)}", flush=True)
                    results, (ms, categories, top) = run_chromium(url, mib, args.rounds)
                    lines += table("Chromium", mib, results)
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
                                   run_firefox(url, mib, args.rounds, workdir))
        finally:
            stop_gpg_agents(workdir)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
