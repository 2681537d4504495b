"""Small linear algebra for batches of structures: 3×3 determinants, inverses and products, segment offsets.

Elementwise where a library call would cost more than its arithmetic on a GPU: a batched solver synchronises with
the host to check its result, and batched GEMM runs a 1×3-by-3×3 product as a whole tile.
"""
from __future__ import annotations

import math

import torch


def det3(m: torch.Tensor) -> torch.Tensor:
    """Determinants of [...,3,3] by cofactors: elementwise, so no solver call and no host synchronisation."""
    return (m[..., 0, 0] * (m[..., 1, 1] * m[..., 2, 2] - m[..., 1, 2] * m[..., 2, 1])
            - m[..., 0, 1] * (m[..., 1, 0] * m[..., 2, 2] - m[..., 1, 2] * m[..., 2, 0])
            + m[..., 0, 2] * (m[..., 1, 0] * m[..., 2, 1] - m[..., 1, 1] * m[..., 2, 0]))


def inv3(m: torch.Tensor) -> torch.Tensor:
    """Inverses of [...,3,3] by the adjugate (see :func:`det3`)."""
    c = torch.stack([torch.cross(m[..., 1, :], m[..., 2, :], dim=-1), torch.cross(m[..., 2, :], m[..., 0, :], dim=-1),
                     torch.cross(m[..., 0, :], m[..., 1, :], dim=-1)], dim=-1)  # columns: the reciprocal basis
    return c / det3(m)[..., None, None]


def singular_extremes(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Largest and smallest singular values of [...,3,3], from the eigenvalues of MᵀM in closed form (Smith 1961).

    Elementwise: ``torch.linalg.svdvals`` synchronises a CUDA device with the host on every call.
    """
    a = matmul3(m.transpose(-1, -2), m)
    q = (a[..., 0, 0] + a[..., 1, 1] + a[..., 2, 2]) / 3.0
    off = a[..., 0, 1] ** 2 + a[..., 0, 2] ** 2 + a[..., 1, 2] ** 2
    p = torch.sqrt((((a[..., 0, 0] - q) ** 2 + (a[..., 1, 1] - q) ** 2 + (a[..., 2, 2] - q) ** 2 + 2.0 * off) / 6.0))
    eye = torch.eye(3, dtype=m.dtype, device=m.device)
    b = (a - q[..., None, None] * eye) / p.clamp(min=1e-300)[..., None, None]
    phi = torch.acos((det3(b) / 2.0).clamp(-1.0, 1.0)) / 3.0
    top = q + 2.0 * p * torch.cos(phi)
    bottom = q + 2.0 * p * torch.cos(phi + 2.0 * math.pi / 3.0)
    return torch.sqrt(top.clamp(min=0.0)), torch.sqrt(bottom.clamp(min=0.0))


def vecmat(v: torch.Tensor, m: torch.Tensor, elementwise: bool | None = None) -> torch.Tensor:
    """Row vectors times small matrices, v·M over broadcast leading dimensions.

    On a GPU as elementwise products and a sum (``elementwise``, by default where ``v`` is on CUDA): there einsum
    turns millions of 1×3 by 3×3 products into as many batched GEMM tiles, which took 70 % of a relaxation step's
    kernel time (bench/results/gpu_throughput.md, the fc136b3 profile). On a CPU einsum's batched BLAS is the
    faster of the two (a step of 32 structures: 76 against 110 ms).
    """
    if v.is_cuda if elementwise is None else elementwise:
        return (v[..., :, None] * m).sum(-2)
    return torch.einsum("...i,...ij->...j", v, m)


def matmul3(a: torch.Tensor, b: torch.Tensor, elementwise: bool | None = None) -> torch.Tensor:
    """3×3 matrix products over broadcast leading dimensions, chosen as :func:`vecmat` chooses."""
    if a.is_cuda if elementwise is None else elementwise:
        return (a[..., :, :, None] * b[..., None, :, :]).sum(-2)
    return a @ b


def segment_ranges(counts: torch.Tensor) -> torch.Tensor:
    """Offsets [S+1] of consecutive segments of the given lengths (atoms of each structure, k-vectors, ...)."""
    return torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
