"""Pair lists with room to spare: inert entries change nothing, rebuilds write in place or say they cannot (CPU)."""
from __future__ import annotations

import pytest
import torch
from ase.io import read

from rlcsp.calculators import get_relaxer
from rlcsp.calculators.torch_buckingham import TorchBuckingham
from rlcsp.calculators.torch_slots import MIN_ROOM, ranges, write_in_place

from ..conftest import ROOT
from .test_buckingham import GM_FILES, gm


@pytest.fixture(scope="module")
def model() -> TorchBuckingham:
    return TorchBuckingham(cutoff=8.0, accuracy=1e-6)  # the relaxer's minimiser model


def test_inert_entries_change_no_energy_force_or_stress(model):
    structures = [gm(c) for c in GM_FILES]
    for atoms in structures:
        atoms.rattle(0.05, seed=1)
    batch = model.batch(structures)
    exact, roomy = model.neighbours(batch), model.neighbours(batch, spare=0.5)
    n = batch.n_systems
    for seg, spare_seg in ((exact.pair_system, roomy.pair_system), (exact.k_system, roomy.k_system)):
        need, room = torch.bincount(seg, minlength=n), ranges(spare_seg, n)[1]
        assert torch.equal(room, need + torch.ceil(need * 0.5).long() + MIN_ROOM)
    a, b = model.evaluate(batch, exact), model.evaluate(batch, roomy)
    for x, y in ((a.energy, b.energy), (a.forces, b.forces), (a.virial, b.virial), (a.min_distance, b.min_distance)):
        assert torch.allclose(x, y, rtol=0, atol=1e-10)


@pytest.mark.parametrize("factor, fits", [(0.97, True), (0.7, False)])
def test_a_rebuild_writes_a_stale_structure_in_place_or_says_it_does_not_fit(model, factor, fits):
    """Structure 1 of three is compressed and its lists rebuilt: in place, the lists keep their lengths and
    addresses and evaluate as lists built from scratch; beyond its room nothing is written."""
    structures = [gm("Y2O3"), gm("Y2Ti2O7"), gm("SrY2O4")]
    roomy = model.neighbours(model.batch(structures), spare=0.5)
    structures[1].set_cell(structures[1].cell * factor, scale_atoms=True)
    batch = model.batch(structures)
    sub = model.batch(structures[1:2])
    fresh = model.neighbours(sub).remap(torch.arange(len(sub.positions)) + len(structures[0]), torch.tensor([1]))
    before = [t.clone() for t in (roomy.i, roomy.j, roomy.shift, roomy.m)]
    ptrs = [t.data_ptr() for t in (roomy.i, roomy.j, roomy.shift, roomy.m)]
    stale = torch.tensor([False, True, False])
    assert write_in_place(roomy, fresh, stale, torch.tensor([0, len(structures[0]), len(structures[0]) + 22])) is fits
    if not fits:
        assert all(torch.equal(x, y) for x, y in zip(before, (roomy.i, roomy.j, roomy.shift, roomy.m)))
        return
    assert [t.data_ptr() for t in (roomy.i, roomy.j, roomy.shift, roomy.m)] == ptrs
    a, b = model.evaluate(batch, roomy), model.evaluate(batch, model.neighbours(batch))
    assert torch.allclose(a.energy, b.energy, rtol=0, atol=1e-9)
    assert torch.allclose(a.forces, b.forces, rtol=0, atol=1e-9)


def test_the_relaxer_with_spare_room_reaches_the_same_minima():
    """Rebuilds in place (the GPU's default, which CUDA graphs need) against lists dropped and joined (the CPU's):
    the same minima and steps on real search candidates, one of them laid out anew at least once."""
    structures = [read(ROOT / "tests" / "data" / f) for f in
                  ("y2ti2o7_candidate.extxyz", "y2o3_overlapping_candidate.extxyz", "sry2o4_overlapping_start.extxyz")]
    joined = get_relaxer("torch-buckingham")
    assert joined.spare == 0 and not joined.graphs
    roomy = get_relaxer("torch-buckingham", spare=0.5)
    for a, b in zip(joined.relax(structures), roomy.relax(structures)):
        assert a.ok and b.ok and a.steps == b.steps
        assert a.energy_per_atom == pytest.approx(b.energy_per_atom, abs=1e-7)
    assert roomy.stats["rebuilds"] > len(structures) and roomy.stats["relayouts"] >= 1
