"""`make guide-status`: which translations of the source guide lag the English, and the
`git diff` that shows a translator what changed since theirs was made.

Run from a git checkout (docs/translating.md). It reads files and git's history and
writes nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tipbox.config import REPO_ROOT
from tipbox.web.source.guide import ENGLISH_FILE, TRANSLATIONS_FOLDER, GuideLibrary, digest

ENGLISH_PATH = f"docs/{ENGLISH_FILE}"


def _git(repo: Path, *args: str) -> str:
    git = shutil.which("git")
    if git is None:
        raise FileNotFoundError("git")
    # Fixed arguments and commit names git itself printed: nothing from outside.
    return subprocess.run([git, "-C", str(repo), *args], check=True,
                          capture_output=True, text=True).stdout


def commit_of(repo: Path, made_from: str) -> str | None:
    """The newest commit whose English guide has this digest, if history still has it."""
    for commit in _git(repo, "rev-list", "HEAD", "--", ENGLISH_PATH).split():
        try:
            english = _git(repo, "show", f"{commit}:{ENGLISH_PATH}")
        except subprocess.CalledProcessError:
            continue  # the file did not exist under that name then
        if digest(english) == made_from:
            return commit
    return None


def report(repo: Path) -> list[str]:
    """One line per translation, and how to see what changed for each stale one."""
    library = GuideLibrary.load(repo / "docs")
    stale = library.stale()
    lines = []
    for code, translation in sorted(library.sources.items()):
        if code not in stale:
            lines.append(f"{code}: up to date")
            continue
        commit = commit_of(repo, translation.made_from)
        lines.append(f"{code}: STALE, the English changed since docs/{TRANSLATIONS_FOLDER}/"
                     f"{code}.md was made")
        lines.append(f"    git diff {commit} -- {ENGLISH_PATH}" if commit else
                     "    its English is not in this checkout's history (uncommitted, or "
                     "another branch): compare by hand")
    return lines


def main() -> int:
    lines = report(REPO_ROOT)
    print("\n".join(lines))
    return 1 if any("STALE" in line for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
