"""``rlcsp fill-eval`` end to end on 20 + 8 real perov_5 crystals (table, JSON, plots, store, continuation);
its DFT columns from real pw.x runs."""
from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
import torch
from ase.build import bulk

from rlcsp.db import Store
from rlcsp.cli import main
from rlcsp.design.fill_dataset import SkippedRows
from rlcsp.design.fill_eval import dft_evaluator
from rlcsp.design.properties import DftProperties, Properties, property_metrics

csv.field_size_limit(sys.maxsize)
ROWS = ("random", "BC", "CQL", "c-CQL α=1", "c-CQL α=5", "held-out crystals")


def perov5(shared_data, split: str, n: int, path):
    with open(shared_data / "perov_5" / f"{split}.csv", newline="") as handle:
        rows = [row for _, row in zip(range(n + 1), csv.reader(handle))]
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return str(path)


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def test_fill_eval_trains_evaluates_reports_and_continues(shared_data, tmp_path, capsys):
    train, test = perov5(shared_data, "val", 20, tmp_path / "train.csv"), perov5(shared_data, "test", 8,
                                                                                 tmp_path / "test.csv")
    out = tmp_path / "eval"
    args = ["fill-eval", "--train", train, "--test", test, "--out", str(out), "--batch-size", "32", "--hidden", "8",
            "--blocks", "1", "--gap-samples", "20", "--condition-range", "0", "3", "--quiet"]
    assert main([*args, "--steps", "20"]) == 0
    printed = capsys.readouterr().out
    assert "| agent | accuracy % | similarity % | validity % | novelty % | in window % | OOD design % | EMD gap (eV) " \
           "| EMD E_form (eV/atom) |" in printed
    assert all(f"| {row} |" in printed for row in ROWS)
    report = json.loads((out / "fill_eval.json").read_text())
    results = report["results"]
    assert [r["label"] for r in results.values()] == list(ROWS)
    assert results["held-out"]["accuracy"] == 1.0 and results["held-out"]["emd_gap"] == 0.0
    assert results["held-out"]["novelty"] == 1.0  # perov_5 val and test share no composition here
    for row in results.values():
        assert all(0.0 <= row[k] <= 1.0 for k in ("accuracy", "similarity", "validity", "novelty", "in_window"))
        assert row["emd_e_form"] >= 0.0
    assert results["bc"]["steps"] == 20 and report["property_crystals"] == 8
    for name in ("metrics.png", "gap_distribution.png", "e_form_distribution.png", "training_loss.png", "table.md",
                 "gap_model.txt", "bc/checkpoint.pt", "c-cql-5/metrics.csv"):
        assert (out / name).stat().st_size > 0, name

    store = Store(f"sqlite:///{out / 'rlcsp.db'}")
    runs = {r["policy"]: r["id"] for r in store.list_runs()}
    assert sorted(runs) == ["bc", "c-cql-1", "c-cql-5", "cql", "random"]
    episodes = store.episodes(runs["c-cql-1"])
    assert len(episodes) == 8 and all(len(e["species"]) == 5 for e in episodes)
    assert store.run_info(runs["c-cql-1"])["config"]["condition_range"] == [0, 3]
    store.close()

    assert main([*args, "--steps", "30"]) == 0  # more steps continue the same runs
    capsys.readouterr()
    assert torch.load(out / "cql" / "checkpoint.pt", weights_only=False)["global_step"] == 30
    store = Store(f"sqlite:///{out / 'rlcsp.db'}")
    assert len(store.list_runs()) == 5 and len(store.episodes(runs["bc"])) == 8  # the new evaluation replaced it
    store.close()


def test_fill_eval_trains_only_and_a_signal_stops_it_at_a_checkpoint(shared_data, tmp_path, capsys, monkeypatch):
    """A lent GPU trains (--train-only, --device), in slices a signal ends; the evaluation runs where the
    checkpoints come back."""
    import rlcsp.policies.bc as bc

    from ...policies.test_cql import StopsAt

    train, test = perov5(shared_data, "val", 6, tmp_path / "train.csv"), perov5(shared_data, "test", 3,
                                                                                tmp_path / "test.csv")
    out = tmp_path / "eval"
    args = ["fill-eval", "--train", train, "--test", test, "--out", str(out), "--batch-size", "16", "--hidden", "8",
            "--blocks", "1", "--agents", "bc", "--no-properties", "--quiet", "--device", "cpu", "--train-only"]
    monkeypatch.setattr(bc, "StopRequest", lambda: StopsAt(5))
    assert main([*args, "--steps", "12"]) == 2
    assert "bc stopped at step 4 of 12 (signal SIGTERM), checkpointed" in capsys.readouterr().err
    monkeypatch.undo()
    assert main([*args, "--steps", "12"]) == 0
    assert "trained: bc (12 steps)" in capsys.readouterr().out and not (out / "fill_eval.json").exists()
    assert torch.load(out / "bc" / "checkpoint.pt", weights_only=False)["global_step"] == 12
    assert main([a for a in args if a != "--train-only"] + ["--steps", "12"]) == 0
    report = json.loads((out / "fill_eval.json").read_text())
    assert report["results"]["bc"]["steps"] == 12


def test_fill_eval_reports_a_vocabulary_that_fits_no_crystal(shared_data, tmp_path, capsys):
    train, test = perov5(shared_data, "val", 3, tmp_path / "train.csv"), perov5(shared_data, "test", 2,
                                                                                tmp_path / "test.csv")
    with pytest.warns(SkippedRows, match="3 element outside the vocabulary"):
        assert main(["fill-eval", "--train", train, "--test", test, "--out", str(tmp_path / "o"), "--vocabulary",
                     "Li,Na", "--quiet"]) == 2
    assert "no crystal became a trajectory" in capsys.readouterr().err


def test_dft_columns_come_from_real_pw_x_runs(tmp_path):
    """NaCl runs pw.x (Gamma, 25 Ry) and gets a gap; one Na atom has an odd electron count and fails unrun."""
    store = Store(f"sqlite:///{tmp_path / 'rlcsp.db'}")
    predictor = DftProperties(dft_evaluator({"ecutwfc": 25.0, "kpts": "gamma"}, store))
    props = predictor([bulk("NaCl", "rocksalt", a=5.64), bulk("Na", "bcc", a=4.23)])
    assert props.outcomes == ["ok", "wrong_charge"] and props.gap[0] > 1.0 and np.isnan(props.gap[1])
    metrics = property_metrics(props, Properties(props.gap[:1]), np.array([True, False]), target=props.gap[0] + 0.2,
                               prefix="dft_")
    assert metrics["dft_success"] == 0.5 and metrics["dft_in_window"] == 0.5 and metrics["dft_ood_design"] == 0.5
    assert metrics["dft_emd_gap"] == 0.0
    assert [c["outcome"] for c in store.fill_dft_calls(None)] == ["ok", "wrong_charge"]
    store.close()
