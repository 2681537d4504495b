"""Move 5: double the cell along a, b or c, fuse.md §2.2.

The default mode builds the genome of the exact 2x supercell of the assembled structure along the drawn axis.
FUSE's string surgery differs by version and is a quirk for each; both are supercells along c.
``string_double`` (1.04) repeats groups of na blocks of the reversed block list (a) or single blocks (b) and
writes them out in that reversed order, which also reverses the layers: not a supercell even when na = nb
(fuse.md §2.2 says it is then; for na = nb = 2 it is not, see tests/actions/test_moves.py). ``string_double_106``
(1.06 reverses the list back first) repeats runs of nb blocks (a) or single blocks (b) in string order: rows or
blocks in place (AABB rather than ABAB), an exact supercell whenever the doubled axis had one sub-module.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from rlcsp.actions.base import Move, MoveContext
from rlcsp.exceptions import NotApplicable
from rlcsp.csp.genome import Genome, Instructions, block_grid, from_block_grid

AXES = ("a", "b", "c")


def double_instructions(ins: Instructions, axis: str) -> Instructions:
    """Instructions with one axis doubled; along c the layer offsets repeat."""
    if axis == "a":
        return replace(ins, na=2 * ins.na)
    if axis == "b":
        return replace(ins, nb=2 * ins.nb)
    return replace(ins, nc=2 * ins.nc, translations=ins.translations * 2)


def fuse106_double(genome: Genome, axis: str) -> Genome:
    """FUSE 1.06's version: in string order, repeat each run of nb blocks (a) or each block (b) in place."""
    ins = genome.instructions
    if axis == "c":
        return Genome(genome.string * 2, double_instructions(ins, axis))
    group = ins.nb if axis == "a" else 1
    blocks = np.array(genome.string).reshape(-1, group, 4)
    return Genome(tuple(np.repeat(blocks, 2, axis=0).reshape(-1)), double_instructions(ins, axis))


def exact_double(genome: Genome, axis: str) -> Genome:
    """Genome whose assembly is the 2x supercell of ``genome``'s assembly along ``axis``."""
    grid = block_grid(genome)
    doubled = np.concatenate([grid, grid], axis={"c": 0, "a": 1, "b": 2}[axis])
    return from_block_grid(doubled, double_instructions(genome.instructions, axis))


def fuse_double(genome: Genome, axis: str) -> Genome:
    """FUSE's version: on the reversed block list, repeat each group of na blocks (a) or each block (b) in place,
    and keep that list's order as the new string (FUSE never reverses it back)."""
    ins = genome.instructions
    if axis == "c":
        return Genome(genome.string * 2, double_instructions(ins, axis))
    layers = np.array(genome.string).reshape(-1, 4)[::-1].reshape(ins.nc, ins.na * ins.nb, 4)
    group = ins.na if axis == "a" else 1
    grouped = layers.reshape(ins.nc, -1, group, 4)
    doubled = np.repeat(grouped, 2, axis=1).reshape(-1, 4)
    return Genome(tuple(doubled.reshape(-1)), double_instructions(ins, axis))


class Double(Move):
    """Move 5: double along a random axis, when the result stays within ``max_atoms``."""

    name, number = "double", 5

    def propose(self, genome: Genome, ctx: MoveContext, rng: np.random.Generator) -> Genome:
        if genome.n_atoms > ctx.max_atoms / 2:
            raise NotApplicable(f"{self.name}: {genome.n_atoms} atoms, more than max_atoms/2 = {ctx.max_atoms / 2}")
        axis = AXES[rng.integers(3)]
        if ctx.quirk("string_double_106"):
            return fuse106_double(genome, axis)
        return fuse_double(genome, axis) if ctx.quirk("string_double") else exact_double(genome, axis)
