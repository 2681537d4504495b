"""Magpie features against matminer's own featuriser, and the band-gap model on the real experimental gaps."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matminer.featurizers.composition import ElementProperty, Stoichiometry
from pymatgen.core import Composition

from rlcsp.design import composition_models
from rlcsp.design.composition_models import (CompositionGapModel, GapModelSettings, MagpieFeaturizer,
                                            formula_matrix, load_band_gaps, train_gap_model)
from rlcsp.exceptions import CompositionError, ConfigError, UnknownElement

SMALL = GapModelSettings(epochs=40, folds=3, max_samples=1200)


@pytest.fixture(scope="module")
def gap_model(tmp_path_factory, shared_data) -> CompositionGapModel:
    return train_gap_model(settings=SMALL, cache_dir=tmp_path_factory.mktemp("models"))


@pytest.mark.parametrize("formula", ["Fe2O3", "NaCl", "Hg0.7Cd0.3Te", "BaTiO3", "Cu", "Li7La3Zr2O12"])
def test_features_match_matminer(formula):
    matrix, symbols = formula_matrix([formula])
    ours = MagpieFeaturizer(symbols)(matrix)[0]
    comp = Composition(formula)
    theirs = np.array(Stoichiometry().featurize(comp) + ElementProperty.from_preset("magpie").featurize(comp))
    assert ours.shape == (138,)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)
    assert MagpieFeaturizer.labels()[6:] == ElementProperty.from_preset("magpie").feature_labels()


def test_empty_formula_has_zero_features():
    features = MagpieFeaturizer(("Fe", "O"))(np.array([[0, 0], [2, 3]]))
    assert not features[0].any() and features[1].any()


def test_featurizer_bad_input():
    with pytest.raises(UnknownElement):
        MagpieFeaturizer(("Fe", "Xx"))
    with pytest.raises(CompositionError):
        MagpieFeaturizer(())
    with pytest.raises(CompositionError):
        MagpieFeaturizer(("Fe", "O"))(np.zeros((2, 3)))


def test_cross_validated_mae_on_experimental_gaps(gap_model):
    report = gap_model.report
    assert report["samples"] == 1200 and len(report["fold_mae"]) == 3
    assert np.isfinite(report["cv_mae"]) and report["cv_mae"] < 1.0
    assert report["cv_mae"] < 0.8 * report["mean_predictor_mae"]  # it learned more than the mean gap


def test_predictions_depend_on_the_composition_only(gap_model):
    gaps = gap_model.predict_formulas(["Fe2O3", "Fe4O6", {"O": 3, "Fe": 2}, "NaCl", "Cu"])
    assert gaps[0] == pytest.approx(gaps[1]) and gaps[0] == pytest.approx(gaps[2])
    assert (gaps >= 0).all() and gaps[3] != pytest.approx(gaps[0])


def test_cache_round_trip(gap_model, tmp_path, monkeypatch):
    cache_file = Path(gap_model.report["cache_file"])
    assert cache_file.is_file() and cache_file.name.startswith("gap-")

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of loading the cache")

    monkeypatch.setattr(composition_models, "cross_validate", no_training)
    again = train_gap_model(settings=SMALL, cache_dir=cache_file.parent)
    assert again.report == gap_model.report
    formulas = ["Fe2O3", "ZnO", "GaAs"]
    np.testing.assert_array_equal(again.predict_formulas(formulas), gap_model.predict_formulas(formulas))
    saved = tmp_path / "model.pt"
    gap_model.save(saved)
    np.testing.assert_array_equal(CompositionGapModel.load(saved).predict_formulas(formulas),
                                  gap_model.predict_formulas(formulas))


def test_missing_data_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_band_gaps(tmp_path / "nope.csv")
