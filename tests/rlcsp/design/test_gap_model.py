"""The band-gap model: CHGNet features + MLP head, trained on perov_5, fine-tuned online from DFT labels."""
from __future__ import annotations

import pytest
from ase.build import bulk

from rlcsp.calculators.espresso import DftSettings, run_dft
from rlcsp.design.gap_model import GapModel, dft_samples, perov5_samples, train_gap_model
from rlcsp.db import Store


@pytest.fixture(scope="module")
def samples(shared_data):
    return perov5_samples(shared_data / "perov_5", 24, seed=1)


def test_perov5_samples_are_half_gapped(samples):
    assert len(samples) == 24 and sum(s.gap > 0 for s in samples) == 12
    assert all(len(s.atoms) == 5 for s in samples)


def test_fit_learns_the_training_set_and_state_round_trips(samples, tmp_path):
    model = GapModel(seed=0)
    losses = model.fit(samples, epochs=80)
    assert losses[-1] < 0.2 * losses[0]
    path = tmp_path / "model.txt"
    model.save(path)
    again = GapModel.load(path)
    assert again.version == model.version == 1
    assert again.predict([s.atoms for s in samples]).tolist() == model.predict([s.atoms for s in samples]).tolist()


def test_finetuning_on_one_dft_sample_moves_the_prediction_towards_the_label(samples, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'rlcsp.db'}")
    nacl = bulk("NaCl", "rocksalt", a=5.64)
    result = run_dft(nacl, DftSettings(ecutwfc=25.0, kpts="gamma"), cache=store)
    assert result.ok
    model = GapModel(seed=0, store=store, model_id="ft")
    model.fit(samples, epochs=40)
    before = model.predict(nacl)
    losses, predictions = model.finetune(nacl, result.band_gap, steps=10, lr=1e-3, episode=7)
    after = model.predict(nacl)
    assert abs(after - result.band_gap) < abs(before - result.band_gap)
    assert losses[-1] < losses[0] and predictions[0] == pytest.approx(before, abs=1e-5)
    assert [m["reason"] for m in store.gap_models("ft")] == ["fit", "finetune"]
    rows = store.finetune_steps("ft")
    assert len(rows) == 10 and {r["label"] for r in rows} == {result.band_gap} and rows[0]["episode"] == 7

    # the cached DFT gap is a training label for the next model
    labelled = dft_samples(store)
    assert len(labelled) == 1 and labelled[0].gap == result.band_gap
    trained = train_gap_model(None, store=store, epochs=5, extra=samples[:4], model_id="next")
    assert trained.n_samples == 5
