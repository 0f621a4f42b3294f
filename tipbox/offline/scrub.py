"""``--scrub``: a metadata-free copy of each decrypted file, made by mat2.

The original stays: its metadata (author, camera, GPS position, edit history) can be what
proves a document genuine, and it can also identify the source. The journalist keeps the
original on the offline machine and shares only the ``.cleaned`` copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tipbox.offline.names import display, reserve_file, split_extension

MAT2_TIMEOUT_SECONDS = 600


def find_mat2() -> str | None:
    return shutil.which("mat2")


def scrub(mat2: str, original: Path, work: Path, tag: str) -> Path:
    """Write ``<name>.cleaned<ext>`` next to ``original`` and return it.

    mat2 runs on a copy in the private work folder, so it can never overwrite a file in
    the output folder; the result then takes a free name there. Raises OSError with the
    reason when mat2 cannot clean the file.
    """
    stem, ext = split_extension(original.name)
    # mat2 recognises formats by extension; the stem is ours, so it holds nothing odd.
    staged = work / f"scrub-{tag}{ext}"
    shutil.copyfile(original, staged)
    cleaned = work / f"scrub-{tag}.cleaned{ext}"
    try:
        proc = subprocess.run([mat2, "--", str(staged)], capture_output=True, check=False,
                              timeout=MAT2_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise OSError(f"mat2 took longer than {MAT2_TIMEOUT_SECONDS} s") from exc
    finally:
        staged.unlink(missing_ok=True)
    if proc.returncode != 0 or not cleaned.is_file():
        cleaned.unlink(missing_ok=True)
        said = proc.stdout.decode("utf-8", "replace").strip().splitlines()
        why = said[-1].replace(str(staged), "the file") if said \
            else f"exit status {proc.returncode}"
        raise OSError(f"mat2 could not clean it: {display(why)[:160]}")
    final = reserve_file(original.parent, "", f"{stem}.cleaned{ext}")
    os.replace(cleaned, final)
    return final
