"""Terminal rewards of composition filling: formulas by hand, DFT failures, the hybrid schedule and its logs."""
from __future__ import annotations

import math

import numpy as np
import pytest
from ase.build import bulk

from rlcsp.calculators.espresso import DftSettings, PwRunner
from rlcsp.design.rewards import (AnalyticEvaluator, DftGapEvaluator, HybridEvaluator, get_evaluator,
                                      paper_a_reward, paper_b_reward, window_probability)
from rlcsp.design.gap_model import GapModel, perov5_samples
from rlcsp.db import Store
from rlcsp.exceptions import UnknownName
from rlcsp.design.fill_env import SkeletonFillEnv

CHEAP = DftSettings(ecutwfc=25.0, kpts="gamma")  # 2-atom rock salt: about a second per pw.x run
VOCABULARY = ("Li", "Na", "F", "Cl")


def test_paper_b_reward_by_hand():
    assert paper_b_reward(1.12, 1.12, 3) == 1.0
    assert paper_b_reward(2.12, 1.12, 5) == pytest.approx(math.exp(-1))  # 0.367879
    assert paper_b_reward(0.0, 1.12, 2) == pytest.approx(0.285247, abs=1e-6)  # exp(-1.2544)
    assert paper_b_reward(1.12, 1.12, 6) == -1.0  # more than five distinct elements
    assert paper_b_reward(None, 1.12, 2) == -1.0  # DFT failed


def test_paper_a_reward_by_hand():
    # 1*exp(1/5) + 10*exp(-3/3) = 1.221403 + 3.678794
    assert paper_a_reward(-1.0, 1.12 + math.sqrt(3), 1.12) == pytest.approx(4.900197, abs=1e-6)
    assert paper_a_reward(0.0, 1.12, 1.12) == pytest.approx(11.0)
    assert paper_a_reward(-2.0, 4.0, 4.0, (0.0, 5.0, 5.0, 3.0)) == pytest.approx(5.0)


def test_registry_takes_names_classes_and_instances():
    evaluator = AnalyticEvaluator(len)
    assert get_evaluator(evaluator) is evaluator
    assert isinstance(get_evaluator("dft-gap"), DftGapEvaluator)
    with pytest.raises(UnknownName, match="valid names: analytic, chgnet-energy, dft-gap, gap-model, hybrid"):
        get_evaluator("dft")


def test_dft_failure_is_minus_one_counted_and_logged(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'rlcsp.db'}")
    failing = DftGapEvaluator(DftSettings(ecutwfc=25.0, kpts="gamma", electron_maxstep=1),
                              PwRunner(keep_failed=False), store=store, run_id=None)
    result = failing.evaluate(bulk("NaCl", "rocksalt", a=5.64), 1.12, episode=1)
    assert result.reward == -1.0 and result.dft_outcome == "scf_not_converged" and result.gap is None
    assert failing.counts == {"evaluations": 1, "dft_calls": 1, "dft_failures": 1}
    assert [c["outcome"] for c in store.fill_dft_calls(None)] == ["scf_not_converged"]


@pytest.fixture(scope="module")
def gap_model_state(shared_data):
    model = GapModel(seed=0)
    model.fit(perov5_samples(shared_data / "perov_5", 24, seed=0), epochs=60)
    return model.state()


def test_hybrid_calls_dft_exactly_every_kth_episode_and_logs_each(db_url, gap_model_state):
    store = Store(db_url)
    run_id = store.create_run({"test": "hybrid"}, "fill-test", "NaCl", "random", 0, "hybrid", "test")
    model = GapModel(store=store, run_id=run_id, model_id="m").load_state(gap_model_state)
    dft = DftGapEvaluator(CHEAP, store=store, run_id=run_id)
    env = SkeletonFillEnv(bulk("NaCl", "rocksalt", a=5.64), HybridEvaluator(model, dft, every=3, select="every"),
                          vocabulary=VOCABULARY, target=1.12)
    env.reset(seed=0)
    sources, rewards = [], []
    for episode in range(1, 10):
        env.reset()
        env.step(episode % 2)  # Li or Na
        _, reward, terminated, _, info = env.step(2 + episode % 2)  # F or Cl
        sources.append(info["evaluation"]["source"])
        rewards.append(reward)
        evaluation = info["evaluation"]
        if evaluation["source"] == "dft":
            assert reward == pytest.approx(math.exp(-(evaluation["dft_gap"] - 1.12) ** 2))
            assert evaluation["model_gap"] is not None
    assert sources == ["model", "model", "dft"] * 3
    calls = store.fill_dft_calls(run_id)
    assert [c["episode"] for c in calls] == [3, 6, 9]
    assert all(c["outcome"] == "ok" and c["band_gap"] > 1 for c in calls)
    assert env.evaluator.counts["dft_calls"] == 3 and env.evaluator.counts["dft_failures"] == 0
    steps = store.finetune_steps("m")
    assert len(steps) == 30 and [s["episode"] for s in steps[::10]] == [3, 6, 9]
    assert [v["version"] for v in store.gap_models("m")] == [2, 3, 4]  # the loaded v1, then one per DFT label
    assert np.isfinite(rewards).all()


def test_odd_electron_count_fails_without_running_pw(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'rlcsp.db'}")
    runner = PwRunner()
    evaluator = DftGapEvaluator(CHEAP, runner, store=store)
    mgf = bulk("NaCl", "rocksalt", a=4.2)
    mgf.set_chemical_symbols(["Mg", "F"])  # 10 + 7 valence electrons
    result = evaluator.evaluate(mgf, 1.12, episode=4)
    assert result.reward == -1.0 and result.dft_outcome == "wrong_charge" and runner.launches == 0
    assert evaluator.counts["dft_failures"] == 1
    assert [(c["episode"], c["outcome"]) for c in store.fill_dft_calls(None)] == [(4, "wrong_charge")]


def test_chgnet_energy_and_paper_a_formula():
    nacl = bulk("NaCl", "rocksalt", a=5.64)
    chgnet = get_evaluator("chgnet-energy")
    result = chgnet.evaluate(nacl, 1.12)
    assert -3.0 < result.e_form < -1.0  # rock salt NaCl is stable (experiment: -2.13 eV/atom)
    assert result.reward == pytest.approx(math.exp(-result.e_form / 5))
    paper_a = AnalyticEvaluator(len, formula="paper-a")
    reward, e_form = paper_a.gap_reward(nacl, 2.0, 1.12)
    assert e_form == pytest.approx(result.e_form, abs=1e-4)
    assert reward == pytest.approx(paper_a_reward(e_form, 2.0, 1.12), rel=1e-6)


def test_chgnet_relaxation_before_dft(tmp_path):
    squeezed = bulk("NaCl", "rocksalt", a=5.3)
    evaluator = DftGapEvaluator(CHEAP, relax=True, store=Store(f"sqlite:///{tmp_path / 'dft.db'}"))
    result = evaluator.evaluate(squeezed, 1.12)
    assert result.dft_outcome == "ok" and not evaluator.last.from_cache
    first_key = evaluator.last.key
    relaxed_cell = np.array(evaluator.last.inputs["structure"]["cell"])
    assert abs(np.linalg.det(relaxed_cell)) > 1.05 * squeezed.get_volume()  # CHGNet expanded it before pw.x

    class Refuses:  # the same crystal again is relaxed once: finding its cached gap needs no second relaxation
        def relax(self, structures):
            raise AssertionError("relaxed twice")

    evaluator._relaxer = Refuses()
    again = evaluator.evaluate(squeezed.copy(), 1.12)
    assert again.dft_gap == result.dft_gap and evaluator.last.key == first_key and evaluator.last.from_cache


class ScriptedModel:
    """A gap model whose (mean, spread) per formula is fixed, to pin the selection rule; DFT stays real."""

    def __init__(self, table: dict[str, tuple[float, float]]):
        self.table, self.finetuned = table, []

    def predict_spread(self, atoms):
        if isinstance(atoms, list):  # a batch, as the real models take it
            return tuple(np.array(v) for v in zip(*(self.table[a.get_chemical_formula()] for a in atoms)))
        return self.table[atoms.get_chemical_formula()]

    def predict(self, atoms):
        return self.table[atoms.get_chemical_formula()][0]

    def finetune(self, atoms, label, *args, **kwargs):
        self.finetuned.append(atoms.get_chemical_formula())

    def state(self):
        return ""

    def load_state(self, state):
        return self


def test_window_probability_by_hand():
    # N(1.5, 0.5) within 1.12 +- 0.25: Phi(-0.26) - Phi(-1.26) = 0.397432 - 0.103835
    assert window_probability(1.5, 0.5, 1.12) == pytest.approx(0.293597, abs=1e-6)
    assert window_probability(1.0, 0.0, 1.12) == 1.0 and window_probability(1.5, 0.0, 1.12) == 0.0
    assert window_probability(1.12, 0.1, 1.12) == pytest.approx(0.987581, abs=1e-6)  # 2 Phi(2.5) - 1


def test_hybrid_sends_the_filling_likeliest_on_target_to_dft_once_and_reuses_its_label(tmp_path):
    # chances of a DFT gap within 1.12 +- 0.25: NaCl 1 (1.0 exactly, no spread); NaF 0.29 (1.5 +- 0.5); LiF and
    # LiCl ~0 (5.0 and 0.2 eV, 0.1 deviations)
    table = {"FLi": (5.0, 0.1), "ClLi": (0.2, 0.1), "FNa": (1.5, 0.5), "ClNa": (1.0, 0.0)}
    store = Store(f"sqlite:///{tmp_path / 'rlcsp.db'}")
    model = ScriptedModel(table)
    hybrid = HybridEvaluator(model, DftGapEvaluator(CHEAP, store=store, run_id=None), every=3, penalty=1.0)
    order = ["FLi", "ClLi", "FNa", "FLi", "ClNa", "ClLi", "FNa", "FLi", "ClLi", "ClNa", "FLi", "ClLi"]
    crystals = {"FLi": bulk("LiF", "rocksalt", a=4.03), "ClLi": bulk("LiCl", "rocksalt", a=5.13),
                "FNa": bulk("NaF", "rocksalt", a=4.63), "ClNa": bulk("NaCl", "rocksalt", a=5.64)}
    out = []
    for episode, formula in enumerate(order, 1):
        if episode == 7:  # a resumed run makes the same decisions
            state = hybrid.state()
            hybrid = HybridEvaluator(model, DftGapEvaluator(CHEAP, store=store, run_id=None), every=3)
            hybrid.load_state(state)
        out.append(hybrid.evaluate(crystals[formula], 1.12, episode))
    sources = [e.source for e in out]
    # ep 3: a call earned, NaF the best of its window -> DFT; ep 6: earned, but LiCl is below NaCl's 1 of ep 5;
    # ep 7: NaF is labelled now; ep 9: two calls earned -> LiCl goes; ep 10: NaCl the best of its window -> DFT;
    # ep 12: LiCl is labelled
    assert sources == ["model", "model", "dft", "model", "model", "model", "dft-label", "model", "dft", "dft",
                       "model", "dft-label"]
    assert model.finetuned == ["FNa", "ClLi", "ClNa"] and hybrid.counts["dft_calls"] == 3
    assert [c["episode"] for c in store.fill_dft_calls(None)] == [3, 9, 10]  # at most one call per 3 episodes
    assert out[6].dft_gap == out[2].dft_gap > 1
    assert out[6].reward == pytest.approx(math.exp(-(out[2].dft_gap - 1.12) ** 2))
    # a model reward is taken one deviation further from the target: LiCl's 0.2 +- 0.1 is scored at 0.1 eV
    assert out[1].reward == pytest.approx(math.exp(-(0.1 - 1.12) ** 2)) and out[1].gap == 0.2


def test_a_call_goes_to_a_neighbour_of_the_hit_when_its_window_chance_beats_the_episodes_own(tmp_path):
    """Rock salt NaCl labelled on target (1.1 eV); the agent keeps proposing LiF (5.0 eV, chance ~0). At the call,
    NaF (1.5 +- 0.5: chance 0.29) is the best neighbour of NaCl (LiCl: 0.2 +- 0.1, ~0), so real DFT answers
    NaF; the episode keeps the model's reward for LiF and records what DFT said of NaF."""
    from rlcsp.design.designs import dft_answers
    from rlcsp.design.neighbourhood import Neighbourhood
    from rlcsp.design.skeleton import make_skeleton

    skeleton = make_skeleton(bulk("NaCl", "rocksalt", a=5.0))
    model = ScriptedModel({"FLi": (5.0, 0.1), "ClLi": (0.2, 0.1), "FNa": (1.5, 0.5), "ClNa": (1.1, 0.0)})
    store = Store(f"sqlite:///{tmp_path / 'rlcsp.db'}")
    hood = Neighbourhood(skeleton, [1, -1], {1: ["Li", "Na"], -1: ["F", "Cl"]}, lambda s: True)
    hybrid = HybridEvaluator(model, DftGapEvaluator(CHEAP, store=store, run_id=None), every=2,
                             known=[(["Na", "Cl"], 1.1)], neighbourhood=hood)
    lif = skeleton.atoms(["Li", "F"])
    first, second = hybrid.evaluate(lif, 1.12, 1), hybrid.evaluate(lif, 1.12, 2)
    assert first.explored is None and second.source == "model" and second.gap == 5.0
    assert second.explored["species"] == ["Na", "F"] and second.explored["dft_outcome"] == "ok"
    assert model.finetuned == ["FNa"] and hybrid.counts["dft_neighbours"] == 1
    assert [(c["episode"], c["formula"]) for c in store.fill_dft_calls(None)] == [(2, "FNa")]
    nacl_f = hybrid.evaluate(skeleton.atoms(["Na", "F"]), 1.12, 3)
    assert nacl_f.source == "dft-label" and nacl_f.dft_gap == second.explored["dft_gap"]
    rows = [{**second.to_dict(), "episode": 2, "species": ["Li", "F"]}]
    assert [(r["species"], r.get("neighbour")) for r in dft_answers(rows)] == [(["Li", "F"], None),
                                                                              (["Na", "F"], True)]
    # without a neighbour that beats it, the episode's own filling goes, as before
    lone = HybridEvaluator(model, DftGapEvaluator(CHEAP, store=store, run_id=None), every=1,
                           known=[(["Na", "Cl"], 1.1), (["Na", "F"], 1.4)], neighbourhood=hood)
    assert lone._neighbour(1.12, 0.5) is None
