"""Offline discrete CQL: the loss on a hand-computed batch, recovery of the expert, exact resume, stable metrics."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlcsp.db import Store
from rlcsp.policies.cql import METRICS, CQLConfig, cql_loss, train
from rlcsp.policies.training_log import read_metrics
from rlcsp.design.fill_eval import NetworkPolicy, fill
from rlcsp.design.fill_metrics import site_accuracy

from .toy_crystals import toy_dataset

TINY = {"hidden": 8, "blocks": 1, "batch_size": 32, "log_every": 5, "checkpoint_every": 10}


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def toy():
    return toy_dataset()


def test_cql_loss_of_a_hand_computed_batch():
    q = torch.tensor([[1.0, 2.0, 0.0], [0.5, -1.0, 3.0]])
    actions, td_target = torch.tensor([1, 2]), torch.tensor([1.5, 2.0])
    lse = [math.log(math.exp(1.0) + math.exp(2.0) + math.exp(0.0)),
           math.log(math.exp(0.5) + math.exp(-1.0) + math.exp(3.0))]
    conservative = ((lse[0] - 2.0) + (lse[1] - 3.0)) / 2
    td = 0.5 * ((2.0 - 1.5) ** 2 + (3.0 - 2.0) ** 2) / 2
    loss, parts = cql_loss(q, actions, td_target, alpha=5.0)
    assert float(loss) == pytest.approx(5.0 * conservative + td, rel=1e-6)
    assert parts["losses/cql_loss"] == pytest.approx(conservative, rel=1e-6)
    assert parts["losses/td_loss"] == pytest.approx(0.3125, rel=1e-6)
    assert parts["losses/q_values"] == pytest.approx(2.5) and parts["losses/logsumexp"] == pytest.approx(sum(lse) / 2)
    # temperature T: T logsumexp(Q / T)
    lse_t2 = [2.0 * math.log(math.exp(0.5) + math.exp(1.0) + math.exp(0.0)),
              2.0 * math.log(math.exp(0.25) + math.exp(-0.5) + math.exp(1.5))]
    loss_t2, _ = cql_loss(q, actions, td_target, alpha=1.0, temperature=2.0)
    assert float(loss_t2) == pytest.approx(((lse_t2[0] - 2.0) + (lse_t2[1] - 3.0)) / 2 + td, rel=1e-6)


def test_cql_recovers_the_expert_policy(toy, tmp_path):
    config = CQLConfig(seed=0, alpha=5.0, hidden=16, blocks=2, batch_size=64, learning_rate=3e-3, log_every=50)
    result = train(toy, config, 300, tmp_path, progress=False)
    assert result["global_step"] == 300
    generated = fill(NetworkPolicy(tmp_path / "checkpoint.pt", toy), toy, target=1.12)
    accuracy = site_accuracy([toy.symbols(g, generated[g]) for g in range(3)], [toy.symbols(g) for g in range(3)])
    assert accuracy >= 0.95


def test_cql_resumes_exactly_and_logs_stable_metrics(toy, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'rlcsp.db'}")
    run_id = store.create_run({"kind": "fill-offline"}, "toy", "toy", "cql", 0, "offline", "test")
    config = CQLConfig(seed=3, **TINY)
    train(toy, config, 20, tmp_path / "resumed", store=store, run_id=run_id, progress=False)
    train(toy, config, 40, tmp_path / "resumed", store=store, run_id=run_id, progress=False)  # continues
    train(toy, config, 40, tmp_path / "straight", progress=False)
    resumed = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    assert resumed["global_step"] == straight["global_step"] == 40
    for name in ("q_network", "target_network"):
        for key, value in straight[name].items():
            assert torch.equal(resumed[name][key], value), (name, key)
    rows = read_metrics(tmp_path / "resumed" / "metrics.csv")
    assert list(rows[0]) == list(METRICS) and [r["global_step"] for r in rows] == list(range(5, 41, 5))
    same = read_metrics(tmp_path / "straight" / "metrics.csv")
    assert [r["losses/loss"] for r in rows] == [r["losses/loss"] for r in same]
    assert [s for s, _ in store.metrics(run_id, "losses/cql_loss")] == list(range(5, 41, 5))
    store.close()


def test_unconditional_cql_ignores_the_target_and_conditional_cql_reads_it(toy, tmp_path):
    for conditional in (False, True):
        out = tmp_path / str(conditional)
        train(toy.with_targets((0.0, 4.0), seed=1), CQLConfig(seed=1, conditional=conditional, **TINY), 10, out,
              progress=False)
        policy = NetworkPolicy(out / "checkpoint.pt", toy)
        types = np.full((3, 6), toy.blank, dtype=np.int16)
        focus, graph, mask = np.zeros(3, dtype=int), np.arange(3), np.ones((3, 5), dtype=bool)
        q = [policy.network(policy.batcher(types, focus, np.full(3, t, np.float32) * conditional, graph))
             for t in (0.5, 3.5)]
        assert torch.equal(q[0], q[1]) != conditional
        assert policy(types, focus, np.full(3, 0.5, np.float32), graph, mask).shape == (3,)


class StopsAt:
    """A StopRequest that asks to stop when the loop checks it for the ``k``-th time (a signal, deterministically)."""

    def __init__(self, k: int):
        self.k, self.calls = k, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def __call__(self):
        self.calls += 1
        return "signal SIGTERM" if self.calls >= self.k else None


def test_a_signal_stops_cql_at_a_checkpoint_and_the_rerun_continues_exactly(toy, tmp_path, monkeypatch):
    import rlcsp.policies.cql as cql

    config = CQLConfig(seed=4, **TINY)
    monkeypatch.setattr(cql, "StopRequest", lambda: StopsAt(13))
    stopped = train(toy, config, 40, tmp_path / "stopped", progress=False)
    assert stopped["stopped"] == "signal SIGTERM" and stopped["global_step"] == 12
    assert torch.load(tmp_path / "stopped" / "checkpoint.pt", weights_only=False)["global_step"] == 12
    monkeypatch.undo()
    assert train(toy, config, 40, tmp_path / "stopped", progress=False)["stopped"] is None
    train(toy, config, 40, tmp_path / "straight", progress=False)
    resumed = torch.load(tmp_path / "stopped" / "checkpoint.pt", weights_only=False)
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    for key, value in straight["q_network"].items():
        assert torch.equal(resumed["q_network"][key], value), key
    assert [r["losses/loss"] for r in read_metrics(tmp_path / "stopped" / "metrics.csv")] == \
        [r["losses/loss"] for r in read_metrics(tmp_path / "straight" / "metrics.csv")]
