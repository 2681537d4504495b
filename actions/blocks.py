"""Moves 2 (swap sub-modules) and 4 (swap modules, i.e. layers), fuse.md §2.2.

FUSE rebuilds the string from its reversed block list after either swap, which point-reflects the sub-module
grid while the layer offsets stay with the layer indices; FUSE's ``block_reversal`` quirk keeps that side effect.
"""
from __future__ import annotations

import numpy as np

from rlcsp.actions.base import Move, MoveContext
from rlcsp.exceptions import NotApplicable
from rlcsp.csp.genome import Genome, block_grid, from_block_grid


def _reverse_blocks(genome: Genome) -> Genome:
    """FUSE's side effect: the blocks in reverse order, (x, i, j) -> (nc-1-x, na-1-i, nb-1-j)."""
    blocks = np.array(genome.string).reshape(-1, 4)[::-1]
    return Genome(tuple(blocks.reshape(-1)), genome.instructions)


class SwapSubmodules(Move):
    """Move 2: exchange the contents of two distinct sub-modules."""

    name, number = "swap_submodules", 2

    def propose(self, genome: Genome, ctx: MoveContext, rng: np.random.Generator) -> Genome:
        if genome.n_sub < 2:
            raise NotApplicable(f"{self.name}: a single sub-module")
        blocks = np.array(genome.string).reshape(-1, 4)
        a, b = rng.choice(len(blocks), 2, replace=False)
        blocks[[a, b]] = blocks[[b, a]]
        new = Genome(tuple(blocks.reshape(-1)), genome.instructions)
        return _reverse_blocks(new) if ctx.quirk("block_reversal") else new


class SwapModules(Move):
    """Move 4: exchange the contents of two layers (only with more than two layers)."""

    name, number = "swap_modules", 4

    def propose(self, genome: Genome, ctx: MoveContext, rng: np.random.Generator) -> Genome:
        if genome.instructions.nc <= 2:
            raise NotApplicable(f"{self.name}: needs more than two layers, nc={genome.instructions.nc}")
        grid = block_grid(genome).copy()
        x, y = rng.choice(len(grid), 2, replace=False)
        grid[[x, y]] = grid[[y, x]]
        new = from_block_grid(grid, genome.instructions)
        return _reverse_blocks(new) if ctx.quirk("block_reversal") else new
