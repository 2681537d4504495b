"""Input scripts, GULP potential libraries and reference structures that ship with rlcsp (``rlcsp.inputs``).

A library or script named without a folder (``library="lib2.lib"``) resolves here from any working directory.
"""
from __future__ import annotations

from pathlib import Path

INPUTS = Path(__file__).resolve().parent


def resolve(name: str | Path) -> Path:
    """``name`` itself when it exists (or is absolute), else the file of that name shipped here."""
    path = Path(name)
    return path if path.is_absolute() or path.exists() else INPUTS / path
