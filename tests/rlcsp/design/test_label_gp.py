"""The skeleton's symmetry for fillings, and the GP that corrects the gap model on one skeleton's DFT labels."""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np

from rlcsp.design.gap_model import GapModel
from rlcsp.design.label_gp import POTENTIALS, LabelGP, LabelledGapModel, SiteDescriptors
from rlcsp.design.skeleton import make_skeleton

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "inputs"))
from elpasolite import skeleton as elpasolite  # noqa: E402

ELPASOLITE = make_skeleton(elpasolite())
FLUORINES = [i for i, s in enumerate(ELPASOLITE.species) if s == "F"]


def test_elpasolite_fillings_are_told_apart_only_where_the_crystal_differs():
    assert ELPASOLITE.site_permutations.shape == (48, 10)  # Fm-3m's point group on the primitive cell
    parent = list(ELPASOLITE.species)

    def swapped(sites):
        species = parent.copy()
        for i in sites:
            species[i] = "Cl"
        return ELPASOLITE.canonical(species)

    assert len({swapped([i]) for i in FLUORINES}) == 1  # one Cl on any of the six F sites: one crystal
    assert len({swapped(pair) for pair in itertools.combinations(FLUORINES, 2)}) == 2  # cis and trans
    assert len({swapped(three) for three in itertools.combinations(FLUORINES, 3)}) == 2  # fac and mer
    rb = [i for i, s in enumerate(parent) if s == "Rb"]
    on_a = [ELPASOLITE.canonical([("K" if i == site else s) for i, s in enumerate(parent)]) for site in rb]
    assert len(set(on_a)) == 2  # the octahedral Rb (4b) and the two tetrahedral ones (8c) differ
    assert ELPASOLITE.canonical(ELPASOLITE.canonical(parent)) == ELPASOLITE.canonical(parent)


def test_descriptors_see_roles_and_orbits_and_not_the_order_of_equivalent_sites():
    describe = SiteDescriptors(ELPASOLITE)
    assert [len(s) for s in describe.roles] == [4, 6] and sorted(len(o) for o in describe.orbits) == [1, 1, 2, 6]
    one, other = list(ELPASOLITE.species), list(ELPASOLITE.species)
    one[FLUORINES[0]], other[FLUORINES[3]] = "Cl", "Cl"
    assert np.allclose(describe(one), describe(other), rtol=0, atol=1e-12)
    assert not np.allclose(describe(one), describe(ELPASOLITE.species))
    # two O on the fluorine sites (Rb2 Sr on the A sites keeps the charge): cis and trans hold the same ions in the
    # same orbits, and only the site potentials tell them apart; every cis pair gives the same descriptors
    def filling(pair):
        species = list(ELPASOLITE.species)
        for i in pair:
            species[i] = "O"
        species[species.index("Rb")] = "Sr"
        species[species.index("Sc")] = "Ti"
        return species

    pairs = {ELPASOLITE.canonical(filling(p)): filling(p) for p in itertools.combinations(FLUORINES, 2)}
    assert len(pairs) > 1
    described = [describe(s) for s in pairs.values()]
    elemental = len(described[0]) - POTENTIALS
    assert all(np.allclose(d[:elemental], described[0][:elemental]) for d in described[1:] if len(d) == len(
        described[0]))
    assert len({tuple(np.round(d[elemental:], 6)) for d in described}) == len(pairs)
    for pair in itertools.combinations(FLUORINES, 2):
        assert np.allclose(describe(filling(pair)), describe(pairs[ELPASOLITE.canonical(filling(pair))]), atol=1e-9)


def test_gp_interpolates_a_smooth_law_and_knows_where_it_has_no_data():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(60, 3))
    y = 2.0 + 1.5 * x[:, 0] - x[:, 1] ** 2
    gp = LabelGP(x, y)
    loo = gp.leave_one_out()
    assert np.abs(loo - y).mean() < 0.25 * np.abs(y - y.mean()).mean()
    near, near_spread = gp.predict(x[:1])
    far, far_spread = gp.predict(np.array([[8.0, 8.0, 8.0]]))
    assert abs(near[0] - y[0]) < 0.2 and far_spread[0] > 3 * near_spread[0]
    again = LabelGP(x, y)  # a refit is deterministic
    assert again.length == gp.length and again.noise == gp.noise


class ScriptedModel:
    """A gap model that answers a fixed function of the species, to pin how the GP weighs it."""

    def __init__(self, law):
        self.law, self.version, self.report, self.finetuned = law, 0, {"heldout_gapped_mae": 1.0}, 0

    def predict_spread(self, structures):
        gaps = np.array([self.law(a.get_chemical_symbols()) for a in structures])
        return gaps, np.full(len(gaps), 0.3)

    def predict(self, structures):
        return self.predict_spread(structures)[0]

    def finetune(self, atoms, label, *args, **kwargs):
        self.finetuned += 1
        return [], []

    def state(self):
        return "scripted"

    def load_state(self, state):
        return self


def random_fillings(n: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [[str(rng.choice(["F", "Cl", "Br", "O"])) if s == "F" else str(rng.choice(["Na", "K", "Rb", "Sc"]))
             for s in ELPASOLITE.species] for _ in range(n)]


def true_gap(species) -> float:
    """A made-up law of the kind the descriptors see: the anions' mean electronegativity sets it."""
    from rlcsp.design.label_gp import element_properties

    return 3.0 * (np.mean([element_properties(s)[0] for s in species[:6]]) - 2.8)


def test_the_labels_decide_whatever_the_gap_model_says():
    fillings = random_fillings(40, 1)
    labels = [(s, true_gap(s)) for s in fillings]
    noise = np.random.default_rng(2)
    model = LabelledGapModel(ScriptedModel(lambda s: float(noise.uniform(0, 5))), ELPASOLITE, labels)
    test = random_fillings(20, 3)
    errors = np.abs(model.predict([ELPASOLITE.atoms(s) for s in test]) - [true_gap(s) for s in test])
    assert errors.mean() < 0.3  # the GP on the descriptors learns the law by itself
    report = model.report["skeleton_gp"]
    assert report["labels"] == len({ELPASOLITE.canonical(s) for s in fillings}) and report["loo_mae"] < 0.3
    assert report["loo_mae"] < 0.3 * report["mean_predictor_mae"]
    assert report["site_potentials"] and report["descriptors"] == len(SiteDescriptors(ELPASOLITE)(fillings[0]))
    assert model.report["heldout_gapped_mae"] == 1.0  # the gap model's own report stays


def test_labels_are_kept_once_per_crystal_and_survive_a_restart():
    model = LabelledGapModel(ScriptedModel(lambda s: 1.0), ELPASOLITE)
    atoms = ELPASOLITE.atoms(ELPASOLITE.species)
    assert model.predict_spread(atoms) == (1.0, 0.3)  # no labels: the gap model's own answer
    parent = list(ELPASOLITE.species)
    for site in FLUORINES[:2]:  # two equivalent fillings: one label
        species = parent.copy()
        species[site] = "Cl"
        model.finetune(ELPASOLITE.atoms(species), 4.0)
    model.finetune(atoms, 6.0)
    assert len(model.labels) == 2 and model.model.finetuned == 3
    restored = LabelledGapModel(ScriptedModel(lambda s: 1.0), ELPASOLITE).load_state(model.state())
    assert restored.labels == model.labels
    assert restored.predict_spread(atoms) == model.predict_spread(atoms)
    assert abs(model.predict(atoms) - 6.0) < 1.0  # the labels, not the gap model's 1 eV, decide


def test_the_gp_reads_the_crystal_features_of_a_real_gap_model_alike_for_equivalent_fillings():
    model = LabelledGapModel(GapModel(hidden=(8,)), ELPASOLITE)
    one, other = list(ELPASOLITE.species), list(ELPASOLITE.species)
    one[FLUORINES[0]], other[FLUORINES[3]] = "Cl", "Cl"
    described = model.descriptors([ELPASOLITE.atoms(one), ELPASOLITE.atoms(other)])
    assert described.shape == (2, 64 + 28)  # CHGNet's crystal features, then the site descriptors
    assert np.allclose(described[0], described[1], atol=1e-4)
