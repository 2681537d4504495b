"""FUSE's documented quirks (fuse.md §7), each reproducible on its own.

rlcsp fixes all of them by default. ``fuse_compatible=True`` reproduces every one, as FUSE behaves; a list of
names reproduces only those, so that a benchmark can tell which quirk changes a search.
"""
from __future__ import annotations

from collections.abc import Iterable

from rlcsp.exceptions import UnknownName

QUIRKS: dict[str, str] = {
    "lattice_redraw": "random instructions re-draw the lattice type among all types possible for the size (§1.3)",
    "uncapped_fus": "random strings draw the formula-unit count without the max_fus cap, and moves 6 and 7 cap "
                    "sub-modules rather than formula units (§1.6, §2.3)",
    "cartesian_offsets": "every gamma = 120 genome takes its layer offsets as Cartesian multiples of ap; the default "
                         "draws that style or lattice fractions per genome (§1.4)",
    "plain_checks": "distances on a plain 2x2x2 supercell, coordination by minimum image within it (§1.7)",
    "block_reversal": "moves 2 and 4 rebuild the blocks in reverse order, a point reflection (§2.2)",
    "string_double": "move 5 along a or b repeats string rows, not a supercell when na != nb (§2.2)",
    "noop_moves": "exchange moves may return the genome unchanged, with FUSE's ranges for k (§2.1)",
}


def quirk_set(value: bool | str | Iterable[str] | None) -> frozenset[str]:
    """The quirks a ``fuse_compatible`` setting asks for: True or "all" for every one, names (list or "a,b")."""
    if value is None or value is False:
        return frozenset()
    if value is True:
        return frozenset(QUIRKS)
    names = [n.strip() for n in (value.split(",") if isinstance(value, str) else value) if n.strip()]
    if "all" in names:
        return frozenset(QUIRKS)
    for name in names:
        if name not in QUIRKS:
            raise UnknownName("FUSE quirk", name, [*QUIRKS, "all"])
    return frozenset(names)


def setting(value: bool | str | Iterable[str] | None) -> bool | list[str]:
    """The JSON-safe form a config keeps: True for every quirk, False for none, else the sorted names."""
    quirks = quirk_set(value)
    if quirks == frozenset(QUIRKS):
        return True
    return sorted(quirks) if quirks else False
