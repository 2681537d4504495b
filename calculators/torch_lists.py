"""Flat enumerations for the batched pair and k-vector lists: uneven segments without padding or host syncs."""
from __future__ import annotations

import numpy as np
import torch


def runs(cost: np.ndarray, limit: int):
    """Consecutive ranges [lo, hi) whose summed ``cost`` stays under ``limit`` (one item at least)."""
    lo, total = 0, 0
    for k, c in enumerate(cost.tolist()):
        if k > lo and total + c > limit:
            yield lo, k
            lo, total = k, 0
        total += c
    if lo < len(cost):
        yield lo, len(cost)


def segments(sizes: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For segments of the given host-side sizes, each item's segment and its index inside it: a flat
    enumeration of uneven segments, without padding and without a host synchronisation."""
    total = int(sizes.sum())
    seg = torch.repeat_interleave(torch.arange(len(sizes), device=device), torch.as_tensor(sizes, device=device),
                                  output_size=total)
    return seg, torch.arange(total, device=device) - torch.as_tensor(np.cumsum(sizes) - sizes, device=device)[seg]


def boxes(reach: np.ndarray, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer triples of each structure's own box [-reach, reach]³, in lexicographic order, and their structure."""
    widths = 2 * reach + 1
    system, q = segments(widths.prod(1), device)
    w = torch.as_tensor(widths, device=device)[system]
    triples = torch.stack([q // (w[:, 1] * w[:, 2]), q // w[:, 2] % w[:, 1], q % w[:, 2]], 1)
    return (triples - torch.as_tensor(reach, device=device)[system]).to(dtype), system


def positive(grid: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Integer triples lexicographically above zero: one of each ±pair."""
    return grid[..., 0] * 4096.0 * 4096.0 + grid[..., 1] * 4096.0 + grid[..., 2] > 0
