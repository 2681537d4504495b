"""Real GULP: write ``.gin`` inputs, parse ``.got`` outputs and ``dump`` files, and relax in FUSE's two stages.

``files`` holds GULP's file formats (text in, text out, testable without a GULP binary); ``calculator`` finds
and runs GULP: ASE's calculator for single points and :class:`GulpRelaxer`, FUSE's staged relaxation.
"""
from __future__ import annotations

from rlcsp.calculators.gulp.calculator import (FUSE_KEYWORDS, FUSE_OPTIONS, GulpRelaxer, find_gulp_command,
                                               gulp_calculator)
from rlcsp.calculators.gulp.files import GulpDump, GulpOutput, parse_dump, parse_gout, write_gin

__all__ = ["FUSE_KEYWORDS", "FUSE_OPTIONS", "GulpRelaxer", "find_gulp_command", "gulp_calculator", "GulpOutput",
           "GulpDump", "parse_gout", "parse_dump", "write_gin"]
