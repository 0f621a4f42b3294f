"""Real OpenPGP.js output without a browser: the pinned package (node_modules/) run by Node.

encrypt.js uses the same library with the same settings in the browser; this lets the
server's checks be tested against what OpenPGP.js really writes, in milliseconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tipbox.config import REPO_ROOT

OPENPGP_NODE = REPO_ROOT / "node_modules" / "openpgp" / "dist" / "node" / "openpgp.mjs"

# Same settings as static/encrypt-core.js: SEIPDv1, AES-256, no compression, day-rounded date.
_SCRIPT = """
const [lib, request] = process.argv.slice(1);
const openpgp = await import(lib);
const fs = await import('node:fs');
const job = JSON.parse(fs.readFileSync(request, 'utf8'));
const keys = [];
for (const armoredKey of job.keys) keys.push(await openpgp.readKey({ armoredKey }));
const message = await openpgp.createMessage({
  binary: fs.readFileSync(job.input), format: 'binary', filename: job.filename,
  date: new Date(Date.UTC(2026, 0, 1)) });
const out = await openpgp.encrypt({ message, encryptionKeys: keys, format: 'binary', config: {
  aeadProtect: false, preferredSymmetricAlgorithm: openpgp.enums.symmetric.aes256,
  preferredCompressionAlgorithm: openpgp.enums.compression.uncompressed } });
fs.writeFileSync(job.output, out);
"""


def require_openpgpjs() -> None:
    if shutil.which("node") and OPENPGP_NODE.is_file():
        return
    if os.environ.get("CI"):
        pytest.fail("CI must have Node and OpenPGP.js (make install runs npm ci)")
    pytest.skip("Node or node_modules/openpgp is missing: run `make install` (needs npm)")


def openpgpjs_encrypt(data: bytes, armored_keys: list[str], tmp: Path,
                      filename: str = "") -> bytes:
    """``data`` encrypted by OpenPGP.js to every key, as encrypt.js does it."""
    require_openpgpjs()
    tmp.mkdir(parents=True, exist_ok=True)
    source, output, request = tmp / "plain.bin", tmp / "cipher.pgp", tmp / "job.json"
    source.write_bytes(data)
    request.write_text(json.dumps({"keys": armored_keys, "input": str(source),
                                   "output": str(output), "filename": filename}))
    subprocess.run(["node", "--input-type=module", "-e", _SCRIPT, "--", OPENPGP_NODE.as_uri(),
                    str(request)], check=True, capture_output=True, timeout=60)
    return output.read_bytes()
