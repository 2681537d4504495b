"""``rlcsp fill`` end to end on a cheap skeleton: hybrid reward with real pw.x, plots, store, resume."""
from __future__ import annotations

import csv
import json

import pytest
from ase.build import bulk
from ase.io import read
import torch

from rlcsp.db import Store
from rlcsp.cli import main
from rlcsp.design.label_gp import skeleton_labels
from rlcsp.design.designs import dft_answers, dft_structures
from rlcsp.design.skeleton import make_skeleton

SCRIPT = '''
from ase.build import bulk

FILL = {"skeleton": bulk("NaCl", "rocksalt", a=5.64), "target": 4.0, "vocabulary": ["Li", "Na", "F", "Cl"],
        "dft": {"ecutwfc": 25.0, "kpts": "gamma"}}
'''


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def test_fill_hybrid_run_writes_plots_logs_and_resumes(tmp_path, capsys):
    script = tmp_path / "rocksalt.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    args = ["fill", str(script), "--agent", "dqn", "--reward", "hybrid", "--dft-every", "3", "--seed", "2",
            "--out", str(out), "--perov5-samples", "16", "--quiet", "--relax", "--dqn", "learning_starts=4",
            "--dqn", "hidden=16", "--dqn", "blocks=1"]
    assert main([*args, "--episodes", "6"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    # the default selection: at most one call per 3 episodes, on the fillings likeliest to be on target
    assert summary["episodes"] == 6 and 1 <= summary["dft_calls"] <= 2
    assert summary["config"]["uncertainty"] == {"members": 5, "select": "window", "penalty": 1.0, "site_gp": True,
                                                "neighbours": True}
    assert summary["counts"]["dft_neighbours"] >= 0  # the env's neighbourhood reached the hybrid evaluator
    for name in ("reward.png", "gaps.png", "finetune_loss.png", "gap_distribution.png", "checkpoint.pt",
                 "metrics.csv", "gap_model_initial.txt"):
        assert (out / name).stat().st_size > 0, name
    assert main([*args, "--episodes", "9"]) == 0  # the same command with more episodes continues the run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] == 9 and 1 <= summary["dft_calls"] <= 3
    store = Store(f"sqlite:///{out / 'rlcsp.db'}")
    assert len(store.list_runs()) == 1
    run_id = store.list_runs()[0]["id"]
    calls = store.fill_dft_calls(run_id)
    assert len(calls) == summary["dft_calls"] and len({c["formula"] for c in calls}) == len(calls)  # each once
    episodes = {e["episode"]: e for e in store.episodes(run_id)}
    for call in calls:  # a call is made when one is earned: by episode 3k at most k calls
        assert sum(c["episode"] <= call["episode"] for c in calls) <= call["episode"] // 3
        episode = episodes[call["episode"]]  # its own filling, or the neighbour DFT answered in its stead
        assert (episode["explored"] or episode)["dft_outcome"] == call["outcome"]
    assert [e["episode"] for e in store.episodes(run_id)] == list(range(1, 10))
    ok = sum(c["outcome"] == "ok" for c in store.fill_dft_calls(run_id))
    assert len(store.finetune_steps(f"run{run_id}")) == 10 * ok
    # the design list: distinct DFT-verified fillings, closest to the target first, each with its CIF
    designs = list(csv.DictReader((out / "designs.csv").open()))
    verified = {tuple(e["species"]) for e in dft_answers(store.episodes(run_id)) if e["dft_outcome"] == "ok"}
    assert ok and len(designs) == len(verified) == summary["designs"]["distinct"]
    assert sum(summary["dft_outcomes"].values()) == len(calls) and summary["dft_outcomes"].get("ok", 0) == ok
    errors = [float(d["gap_error"]) for d in designs]
    assert errors == sorted(errors) and [int(d["rank"]) for d in designs] == list(range(1, len(designs) + 1))
    computed = dft_structures(store, run_id)  # the crystals pw.x was given: CHGNet-relaxed (--relax)
    volumes = [a.get_volume() for a in computed.values()]
    assert len(computed) == len(calls) and all(abs(v - 5.64 ** 3 / 4) > 0.5 for v in volumes)
    for d in designs:
        assert abs(float(d["dft_gap"]) - 4.0) == pytest.approx(float(d["gap_error"]))
        assert d["smact_valid"] == "True" and d["in_window"] == str(float(d["gap_error"]) <= 0.25)
        cif = read(out / d["cif"])
        assert cif.get_chemical_formula(mode="metal", empirical=True) == d["formula"]
        assert min(abs(cif.get_volume() - v) for v in volumes) < 1e-3  # the CIF is the crystal DFT computed
        # every filling here is a rock-salt alkali halide, a prototype of its own hull: on it, and bound
        assert abs(float(d["e_above_hull"])) < 0.01 and float(d["chgnet_e_form"]) < -1.0, d
    assert summary["designs"]["hull_placed"] == len(designs) == summary["designs"]["within_0_1_of_hull"]
    # the GP on the skeleton's labels reached the model: it holds every DFT gap, which the store gives back too
    assert summary["gap_model"]["skeleton_gp"]["labels"] == ok
    skeleton = make_skeleton(bulk("NaCl", "rocksalt", a=5.64))
    labels = sorted((tuple(s), round(g, 6)) for s, g in skeleton_labels(store, skeleton))
    assert labels == sorted((tuple(e["species"]), round(e["dft_gap"], 6)) for e in store.episodes(run_id)
                            if e["source"] == "dft" and e["dft_outcome"] == "ok")


def test_fill_reports_bad_input_clearly(tmp_path, capsys):
    script = tmp_path / "bad.py"
    script.write_text('FILL = {"skeleton": "missing.cif", "vocabulary": ["Na", "Cs"]}\n')
    assert main(["fill", str(script), "--reward", "dft-gap", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "no structure file missing.cif" in capsys.readouterr().err
    script.write_text('from ase.build import bulk\nFILL = {"skeleton": bulk("NaCl", "rocksalt", a=5.64), '
                      '"vocabulary": ["Na", "Cs"]}\n')
    assert main(["fill", str(script), "--reward", "dft-gap", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "no pseudopotential for Cs" in capsys.readouterr().err


def test_flat_rewards_are_flagged_only_after_fifty_identical_episodes():
    from rlcsp.design.fill import flat_rewards

    same = [0.2836] * 50
    assert flat_rewards(same) and not flat_rewards(same[:49])
    assert not flat_rewards([*same[:49], 0.29]) and flat_rewards([0.9, *same])


def test_dft_settings_warn_below_the_settled_cutoff(monkeypatch):
    import ase.config
    import warnings

    from rlcsp.design.fill import UnderconvergedCutoff, dft_settings

    monkeypatch.setattr(ase.config.cfg.parser, "get", lambda *a, fallback=None, **k: fallback)  # no pseudo_dir set
    with pytest.warns(UnderconvergedCutoff, match="30 Ry is below the 60 Ry"):
        settings, _ = dft_settings({"dft": {"ecutwfc": 30.0, "kpts": [2, 2, 2]}})
    assert settings.ecutwfc == 30.0 and settings.kpts == (2, 2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dft_settings({"dft": {"ecutwfc": 60.0}})  # settled
        dft_settings({"dft": {}})  # the engine's default cutoff
        dft_settings({"dft": {"ecutwfc": 30.0, "pseudo_dir": "/my/sssp"}})  # the user's own pseudopotentials
