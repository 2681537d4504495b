"""rlcsp: FUSE-style crystal structure prediction with RL-guided move selection."""
from __future__ import annotations

__version__ = "0.1.0"
