"""Move 3: new instructions (lattice type, cell shape, angles, layer offsets) for the same string, fuse.md §2.2."""
from __future__ import annotations

import numpy as np

from rlcsp.actions.base import Move, MoveContext
from rlcsp.exceptions import NotApplicable
from rlcsp.csp.genome import Genome, offset_styles, possible_lattices, random_instructions


class NewInstructions(Move):
    """Move 3: redraw the instructions from scratch among the lattice types possible for the sub-module count."""

    name, number = "new_instructions", 3

    def propose(self, genome: Genome, ctx: MoveContext, rng: np.random.Generator) -> Genome:
        if not possible_lattices(genome.n_sub):
            raise NotApplicable(f"{self.name}: no cell shape has {genome.n_sub} sub-modules")
        return Genome(genome.string, random_instructions(genome.n_sub, genome.instructions.ap, rng,
                                                         styles=offset_styles(ctx.fuse_compatible,
                                                                              ctx.offset_styles)))
