"""The relaxer's graphed step, on a CPU: the graphs' rules emulated, the same relaxations as eager steps."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from ase.io import read

from rlcsp.calculators import get_relaxer
from rlcsp.calculators.torch_graph import FlightGraph, shadow

from ..conftest import ROOT


@dataclass
class _Inner:
    y: torch.Tensor


@dataclass
class _Toy:
    batch: object
    nbrs: object
    x: torch.Tensor
    inner: _Inner


def _step(f: _Toy) -> torch.Tensor:
    f.x, f.inner.y = f.x + f.inner.y, f.x  # replaced, and one new value is an old buffer
    return f.x.sum()


def test_a_replay_updates_the_captured_buffers_in_place_and_refuses_replaced_tensors():
    toy = _Toy(None, None, torch.tensor([1.0, 2.0]), _Inner(torch.tensor([10.0, 20.0])))
    graph = FlightGraph(_step, toy)
    x, y = toy.x, toy.inner.y
    assert float(graph.replay()) == 33.0
    assert float(graph.replay()) == 36.0  # x = (11, 22) + (1, 2)
    assert toy.x is x and toy.inner.y is y and y.tolist() == [11.0, 22.0]
    toy.x = toy.x + 1.0  # what a graph would never see
    with pytest.raises(RuntimeError, match="x was replaced outside its graph"):
        graph.replay()
    toy.x, toy.nbrs = x, object()
    with pytest.raises(RuntimeError, match="nbrs was replaced"):
        graph.replay()


def test_a_warm_up_on_the_shadow_leaves_the_flight_alone():
    """A capture first runs its function on a shadow, to compile it outside the capture: the flight's own
    tensors must come out of that untouched, and what it shares (batch, lists) must be the same objects."""
    batch = object()
    toy = _Toy(batch, None, torch.tensor([1.0, 2.0]), _Inner(torch.tensor([10.0, 20.0])))
    copy = shadow(toy)
    assert float(_step(copy)) == 33.0
    assert toy.x.tolist() == [1.0, 2.0] and toy.inner.y.tolist() == [10.0, 20.0]
    assert copy.batch is batch and copy.inner is not toy.inner


def test_graphed_steps_relax_as_eager_steps():
    """Real search candidates through graphed steps (captured after refills and relayouts) and eager ones: the
    same steps and minima, so rebuilds, releases and refills keep to the buffers the graphs read."""
    structures = [read(ROOT / "tests" / "data" / f) for f in
                  ("y2ti2o7_candidate.extxyz", "y2o3_overlapping_candidate.extxyz", "sry2o4_overlapping_start.extxyz")]
    assert get_relaxer("torch-buckingham", graphs=True).spare == 1.0
    eager = get_relaxer("torch-buckingham", spare=0.5, batch_size=2)
    graphed = get_relaxer("torch-buckingham", graphs=True, spare=0.5, batch_size=2)  # room 0.5: a relayout or two
    for a, b in zip(eager.relax(structures), graphed.relax(structures)):
        assert a.ok and b.ok and a.steps == b.steps
        assert a.energy_per_atom == pytest.approx(b.energy_per_atom, abs=1e-9)
    assert graphed.stats["captures"] > 2 and graphed.stats["relayouts"] >= 1 and eager.stats["captures"] == 0
    with pytest.raises(ValueError, match="spare"):
        get_relaxer("torch-buckingham", graphs=True, spare=0.0)
