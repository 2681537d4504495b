"""The small batched linear algebra of the torch engine, in both of its forms (CPU)."""
from __future__ import annotations

import torch

from rlcsp.calculators.torch_linalg import matmul3, singular_extremes, vecmat


def test_the_gpu_forms_of_the_small_products_equal_the_cpu_forms():
    """vecmat and matmul3 run elementwise on CUDA and through einsum/BLAS on a CPU: same values and gradients."""
    g = torch.Generator().manual_seed(3)
    v = torch.randn(50, 3, generator=g, dtype=torch.float64, requires_grad=True)
    m = torch.randn(50, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    outs = []
    for elementwise in (True, False):
        out = (vecmat(v, m, elementwise) ** 2).sum() + (matmul3(m, m.transpose(1, 2), elementwise) ** 2).sum()
        outs.append((out, *torch.autograd.grad(out, (v, m))))
    for a, b in zip(*outs):
        assert torch.allclose(a, b, rtol=1e-13, atol=1e-12)
    broadcast = vecmat(v[None, :5], m[:2, None], True)  # [2,5,3]: each matrix against every vector
    assert torch.allclose(broadcast, vecmat(v[None, :5], m[:2, None], False), rtol=1e-13, atol=1e-13)


def test_extreme_singular_values_in_closed_form_equal_svdvals():
    """Near-identity deformations (what the pair-list check sees), general matrices, and degenerate spectra."""
    g = torch.Generator().manual_seed(5)
    eye = torch.eye(3, dtype=torch.float64)
    m = torch.cat([eye + 0.02 * torch.randn(200, 3, 3, generator=g, dtype=torch.float64),
                   torch.randn(200, 3, 3, generator=g, dtype=torch.float64),
                   torch.stack([eye, 2.0 * eye, torch.diag(torch.tensor([1.0, 1.0, 3.0], dtype=torch.float64))])])
    top, bottom = singular_extremes(m)
    sv = torch.linalg.svdvals(m)
    assert torch.allclose(top, sv[:, 0], rtol=0, atol=1e-12)
    assert torch.allclose(bottom[:200], sv[:200, 2], rtol=0, atol=1e-12)
    assert torch.allclose(bottom, sv[:, 2], rtol=0, atol=1e-6)  # sqrt of a small eigenvalue of MᵀM
