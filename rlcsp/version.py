"""Which code ran: the package version and the git commit, so that every stored run and bench row says what made it."""
from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=None)
def commit() -> str:
    """The checkout's commit, marked ``-dirty`` when tracked code differs from it (bench results aside);
    RLCSP_COMMIT where the tree travels without its history (a device machine); "unknown" for an installed
    package, which has no checkout."""
    if os.environ.get("RLCSP_COMMIT"):
        return os.environ["RLCSP_COMMIT"]
    if not (ROOT / ".git").exists():
        return "unknown"

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

    try:
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results")
        return git("rev-parse", "--short", "HEAD") + ("-dirty" if changed else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def code_version() -> str:
    """What a stored run records as the code that ran it: ``0.1.0+3f2a9c1``, or the version alone."""
    from rlcsp import __version__

    sha = commit()
    return __version__ if sha == "unknown" else f"{__version__}+{sha}"
