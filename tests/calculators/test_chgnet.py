from __future__ import annotations

import numpy as np
import pytest
from ase.io import read

from rlcsp.calculators import get_calculator, get_relaxer
from rlcsp.calculators.chgnet import model_loads

from ..conftest import FUSE_REFERENCE


def test_chgnet_relaxes_a_20_atom_y2o3_cell_and_loads_the_model_once():
    atoms = read(FUSE_REFERENCE / "Y2O3" / "RLCSP" / "lowest_energy_structure_1.cif")
    assert len(atoms) == 20
    atoms.rattle(0.05, rng=np.random.default_rng(0))
    relaxer = get_relaxer("chgnet", threads=1)
    loads = model_loads()
    [result] = relaxer.relax([atoms])
    assert result.ok, result.message
    assert result.fmax <= 0.05
    assert -12.0 < result.energy_per_atom < -7.0  # CHGNet's MP-compatible scale, not Buckingham's
    # Further calculators and relaxers reuse the loaded model.
    again = get_calculator("chgnet")
    probe = atoms.copy()
    probe.calc = again
    assert np.isfinite(probe.get_potential_energy())
    get_relaxer("chgnet")
    assert model_loads() == loads == 1


def test_cuda_request_without_gpu_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="no CUDA device"):
        get_calculator("chgnet", device="cuda")
