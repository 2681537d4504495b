"""Behaviour cloning: recovery of the expert, stable metrics in CSV and store, and vocabulary checks."""
from __future__ import annotations

import pytest
import torch

from rlcsp.db import Store
from rlcsp.policies.bc import METRICS, BCConfig, train
from rlcsp.policies.training_log import read_metrics
from rlcsp.exceptions import ConfigError, VocabularyMismatch
from rlcsp.design.fill_eval import NetworkPolicy, fill
from rlcsp.design.fill_metrics import site_accuracy

from .toy_crystals import VOCABULARY, toy_dataset


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def toy():
    return toy_dataset()


def test_bc_recovers_the_expert_policy_and_logs_stable_metrics(toy, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'rlcsp.db'}")
    run_id = store.create_run({"kind": "fill-offline"}, "toy", "toy", "bc", 0, "offline", "test")
    config = BCConfig(seed=0, hidden=16, blocks=2, batch_size=64, learning_rate=3e-3, log_every=50)
    result = train(toy, config, 300, tmp_path, store=store, run_id=run_id, progress=False)
    generated = fill(NetworkPolicy(tmp_path / "checkpoint.pt", toy), toy, target=1.12)
    accuracy = site_accuracy([toy.symbols(g, generated[g]) for g in range(3)], [toy.symbols(g) for g in range(3)])
    assert accuracy >= 0.95
    rows = read_metrics(tmp_path / "metrics.csv")
    assert list(rows[0]) == list(METRICS) and len(rows) == 6
    assert rows[-1]["losses/bc_loss"] < rows[0]["losses/bc_loss"] / 10 and rows[-1]["charts/accuracy"] == 1.0
    assert [s for s, _ in store.metrics(run_id, "losses/bc_loss")] == [50, 100, 150, 200, 250, 300]
    assert result["metrics"]["losses/bc_loss"] == pytest.approx(rows[-1]["losses/bc_loss"])
    store.close()


def test_a_checkpoint_meets_only_datasets_of_its_vocabulary(toy, tmp_path):
    train(toy, BCConfig(seed=0, hidden=8, blocks=1, batch_size=16), 2, tmp_path, progress=False)
    other = toy_dataset(vocabulary=("O", "F", "Ca", "Ti", "Sr", "Ba"))
    with pytest.raises(VocabularyMismatch, match="dataset only: none; checkpoint .* only: none"):
        NetworkPolicy(tmp_path / "checkpoint.pt", toy_dataset(vocabulary=tuple(reversed(VOCABULARY))))
    with pytest.raises(VocabularyMismatch, match=r"checkpoint .* only: none"):
        NetworkPolicy(tmp_path / "checkpoint.pt", other)
    with pytest.raises(VocabularyMismatch):
        train(other, BCConfig(seed=0, hidden=8, blocks=1, batch_size=16), 4, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="other settings"):
        train(toy, BCConfig(seed=1, hidden=8, blocks=1, batch_size=16), 4, tmp_path, progress=False)
