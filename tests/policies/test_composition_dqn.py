"""Composition DQN (paper d): masks, the branch network, real short training runs, determinism, bad settings."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rlcsp.design.composition_models import GapModelSettings, train_gap_model
from rlcsp.policies.composition_dqn import (METRICS, BranchNet, CompositionDQNConfig, CompositionEnv, generate, train,
                                      uniform_choice)
from rlcsp.design.chem_rules import integer_counts
from rlcsp.exceptions import ConfigError, UnknownElement

SHORT = dict(iterations=12, episodes_per_iteration=50, warm_start_episodes=300, train_samples=500, epochs=20)
TINY = dict(iterations=2, episodes_per_iteration=20, warm_start_episodes=40, train_samples=100, epochs=3)


@pytest.fixture(scope="module")
def gap_model(tmp_path_factory, shared_data):
    settings = GapModelSettings(epochs=20, folds=2, max_samples=600)
    return train_gap_model(settings=settings, cache_dir=tmp_path_factory.mktemp("models"))


def small_env(fixed: str | None = "O", horizon: int = 3) -> CompositionEnv:
    return CompositionEnv(CompositionDQNConfig(vocabulary=("Na", "Fe", "Cl"), fixed_element=fixed, horizon=horizon,
                                               max_count=3))


def test_masks_oxide():
    env = small_env()  # elements Na, Fe, Cl, O; steps 0 and 1 free, step 2 picks the O count
    counts = env.reset(2)
    mask = env.action_masks(counts, 0)
    assert mask.shape == (2, 4, 4)
    assert mask[:, :3].all() and not mask[:, 3].any()  # any count of a free element; O not before the last step
    counts = env.step(counts, np.array([1, 0]), np.array([2, 0]))  # episode 0 takes Fe2, episode 1 skips
    mask = env.action_masks(counts, 1)
    assert not mask[0, 1].any() and mask[0, 0].all() and mask[0, 2].all()  # Fe is used
    assert not mask[1, :, 0].any() and mask[1, :3, 1:].all()  # still empty on the last free step: no skip
    counts = env.step(counts, np.array([2, 0]), np.array([0, 1]))
    last = env.action_masks(counts, 2)
    assert not last[:, :3].any() and not last[:, 3, 0].any() and last[:, 3, 1:].all()
    counts = env.step(counts, np.array([3, 3]), np.array([3, 1]))
    assert [env.formula(row) for row in counts] == ["Fe2O3", "NaO"]


def test_masks_without_fixed_element():
    env = small_env(fixed=None, horizon=2)
    counts = env.reset(1)
    assert env.action_masks(counts, 0)[0].all()
    counts = env.step(counts, np.array([0]), np.array([0]))  # skip with Na: Na stays available
    last = env.action_masks(counts, 1)[0]
    assert not last[:, 0].any() and last[:, 1:].all()


def test_all_actions_equal_single_action_scores():
    torch.manual_seed(0)
    net = BranchNet(n_features=7, horizon=5, n_elements=4, n_counts=10, hidden=8)
    material, step = torch.randn(3, 7), torch.tensor([0, 2, 4])
    table = net.all_actions(material, step)
    assert table.shape == (3, 4, 10)
    for e in range(4):
        for c in (0, 5, 9):
            single = net(material, step, torch.full((3,), e), torch.full((3,), c))
            torch.testing.assert_close(table[:, e, c], single)


def test_uniform_choice_picks_only_allowed():
    allowed = np.zeros((500, 6), bool)
    allowed[:, [1, 4]] = True
    picks = uniform_choice(np.random.default_rng(0), allowed)
    assert set(picks) == {1, 4} and 200 < (picks == 1).sum() < 300


def test_random_agent_obeys_the_masks(gap_model):
    config = CompositionDQNConfig(agent="random", seed=3)
    outcome = generate(train(config, gap_model), 300, seed=3, gap_model=gap_model)
    for formula in outcome.formulas:
        counts = integer_counts(formula)
        assert 2 <= len(counts) <= 5 and 1 <= counts["O"] <= 9 and max(counts.values()) <= 9
    assert np.allclose(outcome.rewards, -np.abs(outcome.gaps - 3.0) - (~outcome.charge_neutral)
                       - (~outcome.electronegativity_balanced))


def test_constrained_dqn_learns_charge_neutrality(gap_model):
    dqn = train(CompositionDQNConfig(seed=0, **SHORT), gap_model)
    outcome = generate(dqn, 200, seed=0, gap_model=gap_model)
    baseline = generate(train(CompositionDQNConfig(agent="random"), gap_model), 200, seed=0, gap_model=gap_model)
    assert outcome.charge_neutral.mean() >= 0.9
    assert outcome.electronegativity_balanced.mean() > baseline.electronegativity_balanced.mean() + 0.1
    assert len(dqn.history) == SHORT["iterations"]
    assert dqn.history[-1]["episodes"] == 300 + 12 * 50 and np.isfinite(dqn.history[-1]["losses/dcn_loss"])


def test_same_seed_same_list(gap_model):
    lists = []
    for _ in range(2):
        agent = train(CompositionDQNConfig(seed=5, **TINY), gap_model)
        lists.append(generate(agent, 40, seed=1, gap_model=gap_model).formulas)
    assert lists[0] == lists[1]
    assert generate(agent, 40, seed=2, gap_model=gap_model).formulas != lists[0]


@pytest.mark.parametrize("settings, error", [
    ({"vocabulary": ()}, ConfigError),
    ({"vocabulary": ("Fe", "Qq")}, UnknownElement),
    ({"fixed_element": "Zz"}, UnknownElement),
    ({"vocabulary": ("Fe", "O")}, ConfigError),  # the fixed element in the vocabulary
    ({"vocabulary": ("Fe", "Ni")}, ConfigError),  # 4 free steps need 4 distinct elements
    ({"agent": "ppo"}, ConfigError),
    ({"top_fraction": 0.0}, ConfigError),
])
def test_bad_settings(settings, error):
    with pytest.raises(error):
        CompositionDQNConfig(**settings)


def test_history_uses_the_stable_metric_names(gap_model):
    agent = train(CompositionDQNConfig(seed=1, **TINY), gap_model)
    assert [tuple(row) for row in agent.history] == [METRICS] * TINY["iterations"]
