"""Moves 6 (new structure of the same size or smaller) and 7 (new structure of any size), fuse.md §2.3.

FUSE_RL calls the random builder with the current formula-unit count as ``max_fus``, which only bounds the
sub-module count; the default mode's builder also caps the formula units, so move 6 really is "same or smaller".
``exact_fu_count`` (FUSE 1.06) draws the count uniformly and builds exactly that many, keeping the count until a
candidate passes the checks. Re-drawing it at every failed build instead would favour the sizes that pass most
often: for SrY2O4, 31 % of such candidates had one formula unit, against 1.06's 20 %. Under
``move6_global_cells`` move 6 draws its count from the current structure but its cell from the global sub-module
limit, as 1.06 passes the global ``max_fus`` to ``generate_random_structure``.
"""
from __future__ import annotations

import numpy as np

from rlcsp.actions.base import Move, MoveContext
from rlcsp.exceptions import InvalidMove
from rlcsp.csp.genome import Genome, random_genome


def _new_genome(genome: Genome, ctx: MoveContext, rng: np.random.Generator, max_fus: int,
                cells_fus: int | None = None) -> Genome:
    """A random genome of at most ``max_fus`` formula units, on cells sized for ``cells_fus`` (default the same)."""
    target = int(rng.integers(1, max_fus + 1)) if ctx.exact_fu_count else None
    tries = ctx.size_attempts if target is not None and ctx.passes is not None else 1
    for _ in range(tries):
        candidate = random_genome(ctx.composition, ctx.max_atoms, rng, max_fus=cells_fus or max_fus,
                                  target_fus=target, vac_ratio=ctx.vac_ratio, ap=genome.instructions.ap,
                                  fuse_compatible=ctx.fuse_compatible, styles=ctx.offset_styles,
                                  overflow_fails=ctx.quirk("string_overflow_redraw"))
        if tries == 1 or ctx.passes(candidate):
            return candidate
    raise InvalidMove(f"no structure of {target} formula units passed the checks in {tries} builds")


class NewSameOrSmaller(Move):
    """Move 6: a random structure with at most the current number of formula units."""

    name, number = "new_same_or_smaller", 6

    def propose(self, genome: Genome, ctx: MoveContext, rng: np.random.Generator) -> Genome:
        current = max(1, genome.n_atoms // ctx.composition.atoms_per_fu)
        cells = ctx.composition.max_fus(ctx.max_atoms) if ctx.quirk("move6_global_cells") else None
        return _new_genome(genome, ctx, rng, current, cells)


class NewAnySize(Move):
    """Move 7: a random structure of any size up to ``max_atoms``."""

    name, number = "new_any_size", 7

    def propose(self, genome: Genome, ctx: MoveContext, rng: np.random.Generator) -> Genome:
        return _new_genome(genome, ctx, rng, ctx.composition.max_fus(ctx.max_atoms))
