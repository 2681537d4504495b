"""Pair lists with room to spare, so that a rebuild rewrites a structure's entries where they are.

Each structure's pairs and k-vectors occupy one contiguous range of the lists, ``spare`` times longer than it
needs (and at least ``MIN_ROOM`` entries longer), filled up with inert entries: a pair of a structure's first
atom with its own image 10⁴ lattice vectors away, beyond any cutoff, so its energy and gradient are exactly zero,
and a k-vector of 10⁴ reciprocal vectors, whose Gaussian factor underflows to exactly zero. A rebuild then writes
each stale structure's new entries into its own range (:func:`write_in_place`): the lists keep their lengths and
addresses, which a CUDA graph of the step needs, and a rebuild costs a dozen tensor operations instead of
dropping and joining every list. A structure whose new entries do not fit is reported, and the caller lays the
lists out anew. The atom–k products need no room of their own: they pair every atom with every k slot.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # torch_buckingham imports this module
    from rlcsp.calculators.torch_buckingham import Neighbours

INERT = 1.0e4  # lattice (or reciprocal lattice) vectors along the first axis: an entry that contributes nothing
MIN_ROOM = 8  # spare entries per structure at least


def inert_rows(n: int, like: torch.Tensor) -> torch.Tensor:
    """[n,3] rows (INERT, 0, 0): the shift of an inert pair, the m of an inert k-vector."""
    rows = torch.zeros((n, 3), dtype=like.dtype, device=like.device)
    rows[:, 0] = INERT
    return rows


def ranges(segment: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First index and length of each of ``n`` structures' contiguous ranges in a list whose entries belong to
    structure ``segment`` (the ranges need not be in structure order: a list laid out anew appends)."""
    index = torch.arange(len(segment), device=segment.device)
    first = torch.full((n,), len(segment), dtype=torch.long, device=segment.device)
    return first.scatter_reduce(0, segment, index, "amin"), torch.bincount(segment, minlength=n)


def padded(segment: torch.Tensor, n: int, spare: float, columns: list[torch.Tensor],
           fills: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Lists grouped by structure (``segment`` ascending), each structure's range lengthened by ``spare`` times its
    entries plus ``MIN_ROOM``; ``fills`` [n, ...] give each structure's inert entry of every column."""
    need = torch.bincount(segment, minlength=n)
    room = need + torch.ceil(need * spare).long() + MIN_ROOM
    seg = torch.repeat_interleave(torch.arange(n, device=segment.device), room,
                                  output_size=int(room.sum()))  # the new length on the host: one sync
    slot = (torch.cumsum(room, 0) - room)[segment] + _rank(segment, need)
    out = []
    for column, fill in zip(columns, fills):
        full = fill[seg].clone()
        full[slot] = column
        out.append(full)
    return seg, out


def _rank(segment: torch.Tensor, need: torch.Tensor) -> torch.Tensor:
    """Each entry's index inside its structure's range, for a list grouped by structure in ascending order."""
    return torch.arange(len(segment), device=segment.device) - (torch.cumsum(need, 0) - need)[segment]


def write_in_place(nbrs: Neighbours, fresh: Neighbours, stale: torch.Tensor, first_atom: torch.Tensor) -> bool:
    """Replace the ``stale`` structures' entries of padded ``nbrs`` by ``fresh``, their new exact
    lists in the same numbering and grouped by structure in ascending order; in place. False, with nothing
    written, when some structure's new pairs or k-vectors outnumber its range (one host synchronisation)."""
    n = len(stale)
    p_first, p_room = ranges(nbrs.pair_system, n)
    k_first, k_room = ranges(nbrs.k_system, n)
    p_need = torch.bincount(fresh.pair_system, minlength=n)
    k_need = torch.bincount(fresh.k_system, minlength=n)
    if bool(((p_need > p_room) | (k_need > k_room)).any()):
        return False
    old = stale[nbrs.pair_system]
    atom = first_atom[nbrs.pair_system]
    nbrs.i.copy_(torch.where(old, atom, nbrs.i))
    nbrs.j.copy_(torch.where(old, atom, nbrs.j))
    nbrs.shift.copy_(torch.where(old[:, None], inert_rows(1, nbrs.shift), nbrs.shift))
    slot = p_first[fresh.pair_system] + _rank(fresh.pair_system, p_need)
    nbrs.i[slot], nbrs.j[slot], nbrs.shift[slot] = fresh.i, fresh.j, fresh.shift
    old_k = stale[nbrs.k_system]
    nbrs.m.copy_(torch.where(old_k[:, None], inert_rows(1, nbrs.m), nbrs.m))
    nbrs.m[k_first[fresh.k_system] + _rank(fresh.k_system, k_need)] = fresh.m
    return True
