"""The small batched linear algebra of the torch engine, in both of its forms (CPU)."""
from __future__ import annotations

import torch

from rlcsp.calculators.torch_linalg import matmul3, vecmat


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
