"""``rlcsp fill``: an agent fills a skeleton towards a target band gap (seed paper b's pipeline).

An input script (``inputs/elpasolite.py``) holds ``FILL = {"skeleton": ..., "target": ..., "dft": {...}}``.
The run writes into ``--out``: ``metrics.csv`` (one row per episode), ``checkpoint.pt`` (exact resume: rerun
the same command), ``gap_model_initial.txt`` (the pre-trained gap model), ``summary.json`` and the plots
``reward.png``, ``gaps.png``, ``finetune_loss.png`` and ``gap_distribution.png``, and the design list
(``designs.csv`` and ``designs/*.cif``, rlcsp.design.designs). Every episode, DFT call,
fine-tuning step and gap-model version goes to the store (``rlcsp.db`` in ``--out`` by default).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from rlcsp.csp.config import script_dict
from rlcsp.exceptions import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("RLCSP_SHARED", ROOT.parent / "shared"))
REWARDS = ("hybrid", "gap-model", "dft-gap", "chgnet-energy")
FILL_KEYS = {"skeleton", "target", "max_elements", "vocabulary", "dft", "root", "allowed"}


def load_fill_script(path: str | Path) -> dict[str, Any]:
    """The script's ``FILL`` dict, with a callable ``skeleton`` called (it may read shared data)."""
    path = Path(path)
    fill = script_dict(path, "FILL", "inputs/elpasolite.py")
    unknown = sorted(set(fill) - FILL_KEYS)
    if unknown or "skeleton" not in fill:
        raise ConfigError(f"{path}: FILL needs 'skeleton' and takes {sorted(FILL_KEYS)}; unknown {unknown}")
    if callable(fill["skeleton"]):
        fill["skeleton"] = fill["skeleton"]()
    fill["name"] = path.stem
    return fill


def make_gap_model(out: Path, store, run_id: int, seed: int, gap_model: str | None, perov5_samples: int,
                   members: int = 1):
    """The gap model to start from: ``gap_model`` if given, else an ensemble of ``members`` trained on perov_5 and
    cached DFT gaps."""
    from rlcsp.design.gap_model import GapModel, train_gap_model

    initial = out / "gap_model_initial.txt"
    if gap_model is not None:
        model = GapModel.load(gap_model, store=store, run_id=run_id)
    elif initial.exists():
        model = GapModel.load(initial, store=store, run_id=run_id)
    else:
        model = train_gap_model(SHARED / "data" / "perov_5", store=store, n_perov5=perov5_samples, seed=seed,
                                run_id=run_id, model_id=f"run{run_id}", members=members)
    model.model_id, model.store, model.run_id = f"run{run_id}", store, run_id
    if not store.gap_models(model.model_id):  # a loaded model is this run's first version too
        store.add_gap_model(model.model_id, model.version, "loaded", model.n_samples, model.state(), run_id=run_id)
    model.save(initial)
    return model


class UnderconvergedCutoff(UserWarning):
    """DFT gaps asked for below the cutoff at which the default pseudopotentials settle them."""


def dft_settings(fill: dict[str, Any]):
    """The script's ``dft`` options as (DftSettings on seed-paper defaults, PwRunner).

    A cutoff below the one at which the default ONCV pseudopotentials settle gaps is allowed, with a warning: on
    elpasolite fillings 30 Ry gaps were up to 0.73 eV off their 80 Ry values, and metals got gaps of 0.2-0.74 eV
    (``bench/results/dft_cutoff.md``), so a ±0.25 eV window cannot be verified there.
    """
    import ase.config

    from rlcsp.calculators.espresso import DftSettings, PwRunner
    from rlcsp.calculators.espresso.inputs import DEFAULT_ECUTWFC_RY

    options = dict(fill.get("dft", {}))
    timeout = options.pop("timeout_s", 1800.0)
    if isinstance(options.get("kpts"), list):
        options["kpts"] = tuple(options["kpts"])
    settings = DftSettings.seed_papers(**options)
    oncv = settings.pseudo_dir is None and not ase.config.cfg.parser.get("espresso", "pseudo_dir", fallback=None)
    if oncv and settings.ecutwfc is not None and settings.ecutwfc < DEFAULT_ECUTWFC_RY:
        warnings.warn(f"ecutwfc {settings.ecutwfc:g} Ry is below the {DEFAULT_ECUTWFC_RY:g} Ry at which the ONCV "
                      "pseudopotentials settle band gaps: gaps may be off by tenths of an eV and metals may get a gap "
                      "(bench/results/dft_cutoff.md)", UnderconvergedCutoff, stacklevel=2)
    return settings, PwRunner(timeout_s=timeout)


# paper b: 1 member, "every", no penalty, no GP, no neighbours
UNCERTAINTY = {"members": 5, "select": "window", "penalty": 1.0, "site_gp": True, "neighbours": True}


def make_evaluator(reward: str, fill: dict[str, Any], skeleton, out: Path, store, run_id: int, seed: int,
                   dft_every: int, gap_model: str | None, perov5_samples: int, formula: str, relax: bool,
                   finetune_steps: int, finetune_lr: float, uncertainty: dict[str, Any] = UNCERTAINTY):
    """The reward evaluator of a run; ``uncertainty`` sets the gap ensemble's size, the hybrid loop's DFT selection
    (``rewards.HybridEvaluator``), how far an uncertain prediction's reward is discounted, whether a GP on the
    skeleton's DFT labels corrects the gap model (``label_gp``) and whether a call may go to a neighbour of the
    labels nearest the target (``neighbourhood``; run_fill gives the env's, whose masks decide what is a filling)."""
    from rlcsp.design.label_gp import LabelledGapModel, skeleton_labels
    from rlcsp.design.rewards import (ChgnetEnergyEvaluator, DftGapEvaluator, GapModelEvaluator,
                                          HybridEvaluator)

    if reward not in REWARDS:
        raise ConfigError(f"--reward must be one of {REWARDS}, got {reward!r}")
    common = {"formula": formula, "max_elements": fill.get("max_elements", 5)}
    if reward == "chgnet-energy":
        return ChgnetEnergyEvaluator(**common)
    settings, runner = dft_settings(fill)
    dft = DftGapEvaluator(settings, runner, store=store, run_id=run_id, relax=relax, **common)
    if reward == "dft-gap":
        return dft
    model = make_gap_model(out, store, run_id, seed, gap_model, perov5_samples, uncertainty["members"])
    known = skeleton_labels(store, skeleton)
    if uncertainty["site_gp"]:
        model = LabelledGapModel(model, skeleton, known)
    if reward == "gap-model":
        return GapModelEvaluator(model, penalty=uncertainty["penalty"], **common)
    return HybridEvaluator(model, dft, every=dft_every, finetune_steps=finetune_steps, finetune_lr=finetune_lr,
                           select=uncertainty["select"], penalty=uncertainty["penalty"], canonical=skeleton.canonical,
                           known=known, **common)


def run_fill(script: str | Path, *, agent: str = "dqn", reward: str = "hybrid", target: float | None = None,
             episodes: int = 1000, dft_every: int = 30, pretrained: str | None = None, seed: int = 1,
             out: str | Path | None = None, db_url: str | None = None, gap_model: str | None = None,
             perov5_samples: int = 1000, formula: str = "paper-b", relax: bool = False, finetune_steps: int = 10,
             finetune_lr: float = 1e-3, dqn: dict[str, Any] | None = None, dft: dict[str, Any] | None = None,
             chemistry: bool = True, hull: bool = True, uncertainty: dict[str, Any] | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Run (or resume) one filling run; returns the summary written to ``summary.json``.

    ``dft`` overrides entries of the script's DFT options (e.g. cheaper settings for a benchmark); ``hull`` places
    each design against the CHGNet hull of its competing phases (``rlcsp.design.hull``); ``uncertainty`` overrides
    entries of ``UNCERTAINTY`` (paper b: ``{"members": 1, "select": "every"}``).
    """
    import torch

    from rlcsp.db import Store
    from rlcsp.policies.dqn import load_config, train
    from rlcsp import __version__
    from rlcsp.design.fill_env import PAPER_B_VOCABULARY, SkeletonFillEnv
    from rlcsp.design.rewards import GapModelEvaluator
    from rlcsp.design.skeleton import make_skeleton

    torch.set_num_threads(1)
    fill = load_fill_script(script)
    skeleton = make_skeleton(fill["skeleton"])
    fill["dft"] = {**fill.get("dft", {}), **(dft or {})}
    target = fill.get("target", 1.12) if target is None else target
    uncertainty = {**UNCERTAINTY, **(uncertainty or {})}
    config = load_config({"seed": seed, "agent": agent, **(dqn or {})})
    out = Path(out or Path("runs") / f"fill-{fill['name']}-{agent}-{reward}-seed{seed}")
    out.mkdir(parents=True, exist_ok=True)
    store = Store(db_url or os.environ.get("RLCSP_DB_URL") or f"sqlite:///{out.resolve() / 'rlcsp.db'}")
    run_config = {"kind": "fill", "script": str(Path(script).resolve()), "reward": reward, "target": target,
                  "episodes": episodes, "dft_every": dft_every, "pretrained": pretrained, "formula": formula,
                  "relax": relax, "finetune": [finetune_steps, finetune_lr], "dqn": asdict(config),
                  "chemistry": chemistry, "uncertainty": uncertainty,
                  "dft": fill["dft"],
                  "out": str(out.resolve())}
    resume_config = {k: v for k, v in run_config.items() if k != "episodes"}  # more episodes continue a run
    run_id = store.find_run(resume_config, which="any")
    if run_id is None:
        run_id = store.create_run(resume_config, f"fill-{fill['name']}", fill["name"], agent, seed, reward,
                                  __version__)
    evaluator = make_evaluator(reward, fill, skeleton, out, store, run_id, seed, dft_every, gap_model,
                               perov5_samples, formula, relax, finetune_steps, finetune_lr, uncertainty)
    env = SkeletonFillEnv(skeleton, evaluator, target=target,
                          vocabulary=fill.get("vocabulary", PAPER_B_VOCABULARY), root=fill.get("root", "random"),
                          max_elements=fill.get("max_elements", 5), allowed=fill.get("allowed"), chemistry=chemistry)
    if uncertainty["neighbours"] and getattr(evaluator, "select", None) == "window":
        evaluator.explore(env.neighbourhood())  # the env's masks say which fillings DFT may be sent
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=episodes, desc=f"fill {fill['name']} ({agent}, {reward})", unit="ep")

    recent: list[float] = []

    def on_episode(row: dict[str, Any]) -> None:
        recent.append(row["charts/episodic_return"])
        if flat_rewards(recent) and len(recent) % FLAT_WINDOW == 0:
            print(f"rlcsp fill: warning: the reward has been {recent[-1]:.4f} in each of the last {FLAT_WINDOW} "
                  "episodes, so the agent has nothing to learn from; the gap model may predict one value for "
                  "every filling (see gap_distribution.png)", file=sys.stderr)
        if bar is not None:
            bar.n = row["episode"]
            bar.set_postfix(reward=f"{row['charts/episodic_return']:.3f}", eps=f"{row['charts/epsilon']:.3f}",
                            dft=env.evaluator.counts["dft_calls"], refresh=False)
            bar.refresh()

    try:
        result = train(env, config, episodes, out, store=store, run_id=run_id, pretrained=pretrained,
                       on_episode=on_episode)
    finally:
        if bar is not None:
            bar.close()
    store.set_status(run_id, "finished" if result["episodes"] >= episodes else "stopped")
    summary = summarise(out, target, run_id, store, result["counts"])
    summary.update(run_id=run_id, db=store.url, config=run_config)
    if isinstance(evaluator, GapModelEvaluator):  # its held-out errors on perov_5 (gap_model.py)
        summary["gap_model"] = evaluator.model.report
    from rlcsp.design.designs import dft_structures, write_designs

    designs = write_designs(out, env.skeleton, target, store.episodes(run_id), hull=shared_hull() if hull else None,
                            structures=dft_structures(store, run_id))
    summary["designs"] = {"distinct": len(designs), "in_window": sum(d["in_window"] for d in designs),
                          "smact_valid": sum(d["smact_valid"] for d in designs)}
    if hull:
        placed = [d for d in designs if d.get("e_above_hull") is not None]
        summary["designs"].update(hull_placed=len(placed),
                                  within_0_1_of_hull=sum(d["e_above_hull"] <= 0.1 for d in placed),
                                  in_window_within_0_1_of_hull=sum(d["in_window"] and d["e_above_hull"] <= 0.1
                                                                    for d in placed))
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    plot_fill(out, target, store, run_id)
    store.close()
    return summary


FLAT_WINDOW = 50


@lru_cache(maxsize=1)
def shared_hull():
    """One CHGNet hull per process: it keeps every relaxed energy, so a run resumed in the same process (a bench's
    chunks) places its earlier designs without relaxing them again (~9 s each)."""
    from rlcsp.design.hull import Hull

    return Hull()


def flat_rewards(rewards: list[float], window: int = FLAT_WINDOW) -> bool:
    """Whether the last ``window`` rewards are all the same: a reward that cannot teach."""
    return len(rewards) >= window and float(np.ptp(rewards[-window:])) < 1e-9


def summarise(out: Path, target: float, run_id: int, store, counts: dict[str, int]) -> dict[str, Any]:
    """paper b's Table 2 columns and the model-only metrics, from metrics.csv and the store."""
    from rlcsp.policies.training_log import read_metrics

    rows = read_metrics(out / "metrics.csv")
    rewards = np.array([r["charts/episodic_return"] for r in rows], dtype=float)
    last = rows[-100:]
    gaps = [r["gap"] for r in last if r["gap"] is not None]
    calls = store.fill_dft_calls(run_id)
    ok = [c for c in calls if c["outcome"] == "ok" and c["band_gap"] is not None]
    fresh = [c["wall_s"] for c in calls if not c["from_cache"]]
    return {
        "episodes": len(rows), "mean_reward_last_100": float(rewards[-100:].mean()) if len(rows) else None,
        "best_reward": float(rewards.max()) if len(rows) else None,
        "reward_spread_last_50": float(np.ptp(rewards[-FLAT_WINDOW:])) if len(rows) else None,
        "within_0.25_eV_last_100": (float(np.mean([abs(g - target) <= 0.25 for g in gaps])) if gaps else None),
        "dft_calls": len(calls), "dft_call_percent": 100.0 * len(calls) / max(len(rows), 1),
        "dft_success_percent": 100.0 * len(ok) / len(calls) if calls else None,
        "dft_outcomes": {o: sum(c["outcome"] == o for c in calls) for o in sorted({c["outcome"] for c in calls})},
        "mean_dft_gap_last_100_ok": float(np.mean([c["band_gap"] for c in ok[-100:]])) if ok else None,
        "mean_dft_wall_s": float(np.mean(fresh)) if fresh else None, "counts": counts,
    }


def plot_fill(out: Path, target: float, store, run_id: int) -> list[Path]:
    """reward.png, gaps.png, finetune_loss.png and gap_distribution.png in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlcsp.policies.training_log import read_metrics

    rows = read_metrics(out / "metrics.csv")
    episode = np.array([r["episode"] for r in rows], dtype=float)
    reward = np.array([r["charts/episodic_return"] for r in rows], dtype=float)
    paths = []

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(episode, reward, ".", ms=2, alpha=0.4, label="episode")
    if len(reward) >= 10:
        window = max(10, len(reward) // 50)
        ax.plot(episode[window - 1:], np.convolve(reward, np.ones(window) / window, "valid"),
                label=f"mean of {window}")
    ax.set(xlabel="episode", ylabel="reward", title="reward")
    ax.legend()
    paths.append(out / "reward.png")

    fig2, ax2 = plt.subplots(figsize=(7, 4))
    model = [(r["episode"], r["model_gap"]) for r in rows if r["model_gap"] is not None]
    dft = [(r["episode"], r["dft_gap"]) for r in rows if r["dft_gap"] is not None]
    if model:
        ax2.plot(*zip(*model), ".", ms=2, alpha=0.4, label="gap model")
    if dft:
        ax2.plot(*zip(*dft), "o", ms=4, color="C3", label="DFT")
    ax2.axhline(target, color="k", ls="--", lw=1, label=f"target {target} eV")
    ax2.set(xlabel="episode", ylabel="band gap (eV)", title="model and DFT gaps")
    ax2.legend()
    paths.append(out / "gaps.png")

    fig3, ax3 = plt.subplots(figsize=(7, 4))
    steps = store.finetune_steps(f"run{run_id}")
    if steps:
        ax3.plot(range(1, len(steps) + 1), [s["loss"] for s in steps], ".-", ms=2)
        ax3.set_yscale("log")
    else:
        ax3.text(0.5, 0.5, "no fine-tuning in this run: only successful DFT calls of the\nhybrid reward fine-tune "
                 "the gap model", ha="center", va="center", transform=ax3.transAxes)
    ax3.set(xlabel="fine-tuning step", ylabel="MSE loss (eV^2)",
            title=f"gap-model fine-tuning ({len(steps)} steps)")
    paths.append(out / "finetune_loss.png")

    fig4, ax4 = plt.subplots(figsize=(7, 4))
    gaps = [r["gap"] for r in rows if r["gap"] is not None]
    if gaps:
        ax4.hist(gaps, bins=40)
    ax4.axvline(target, color="k", ls="--", lw=1)
    ax4.set(xlabel="band gap of generated crystal (eV)", ylabel="crystals",
            title=f"generated gaps ({len(gaps)} crystals, std {np.std(gaps) if gaps else 0.0:.2f} eV)")
    paths.append(out / "gap_distribution.png")

    for figure, path in zip((fig, fig2, fig3, fig4), paths):
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        plt.close(figure)
    return paths


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agent", choices=("dqn", "random"), default="dqn", help="who fills the sites (default dqn)")
    p.add_argument("--reward", choices=REWARDS, default="hybrid", help="how a filling is scored (default hybrid)")
    p.add_argument("--target", type=float, help="target band gap in eV (default: the script's, else 1.12)")
    p.add_argument("--episodes", type=int, default=1000, help="fillings to make; more continues a run")
    p.add_argument("--dft-every", type=int, default=30,
                   help="hybrid: one DFT call per k episodes (--dft-select says which)")
    p.add_argument("--pretrained", help="a checkpoint.pt whose Q-network starts the run (epsilon from 0.2)")
    p.add_argument("--seed", type=int, default=1, help="random seed of the agent and the environment")
    p.add_argument("--out", help="output folder (default runs/fill-NAME-AGENT-REWARD-seedS)")
    p.add_argument("--db", help="store URL (default sqlite in --out, or RLCSP_DB_URL)")
    p.add_argument("--gap-model", help="a saved gap model (gap_model_initial.txt of another run)")
    p.add_argument("--perov5-samples", type=int, default=1000,
                   help="perov_5 crystals for the gap model; a fifth of the gapped ones, and as many metals, are "
                   "held out to measure it (summary.json's gap_model)")
    p.add_argument("--formula", choices=("paper-b", "paper-a"), default="paper-b",
                   help="reward formula of seed paper b (default) or a")
    p.add_argument("--relax", action="store_true", help="CHGNet FIRE relaxation before each DFT call")
    p.add_argument("--no-chemistry", action="store_true",
                   help="paper b's masks (element count only): no site roles, charge balance or SMACT check")
    p.add_argument("--gap-members", type=int, default=UNCERTAINTY["members"],
                   help="gap-model ensemble size; its spread is the model's uncertainty (paper b: 1)")
    p.add_argument("--dft-select", choices=("window", "every"), default=UNCERTAINTY["select"],
                   help="hybrid: DFT on the filling of each k episodes likeliest to be within 0.25 eV of the target, "
                   "or on every k-th (paper b)")
    p.add_argument("--no-site-gp", action="store_true",
                   help="the gap model alone, without the GP on the skeleton's DFT labels that corrects it (paper b)")
    p.add_argument("--no-neighbours", action="store_true",
                   help="hybrid: DFT only on the agent's own fillings, never on a neighbour (a swap or substitution) "
                   "of the labelled fillings nearest the target")
    p.add_argument("--uncertainty-penalty", type=float, default=UNCERTAINTY["penalty"],
                   help="a model reward is taken this many ensemble deviations further from the target (0: none)")
    p.add_argument("--no-hull", action="store_true",
                   help="leave the design list's CHGNet formation energy and energy above hull empty")
    p.add_argument("--finetune-steps", type=int, default=10, help="Adam steps on the gap model per DFT label")
    p.add_argument("--finetune-lr", type=float, default=1e-3, help="learning rate of that fine-tuning")
    p.add_argument("--dqn", action="append", default=[], metavar="KEY=VALUE",
                   help="a DQN setting (policies/dqn.py DQNConfig), e.g. --dqn learning_starts=500")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_from_args(script: str, args: argparse.Namespace) -> int:
    dqn = {}
    for pair in args.dqn:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--dqn expects key=value, got {pair!r}")
        dqn[key] = json.loads(value) if value[:1] in "-0123456789.[{" or value in ("true", "false") else value
    summary = run_fill(script, agent=args.agent, reward=args.reward, target=args.target, episodes=args.episodes,
                       dft_every=args.dft_every, pretrained=args.pretrained, seed=args.seed, out=args.out,
                       db_url=args.db, gap_model=args.gap_model, perov5_samples=args.perov5_samples,
                       formula=args.formula, relax=args.relax, finetune_steps=args.finetune_steps,
                       finetune_lr=args.finetune_lr, dqn=dqn, chemistry=not args.no_chemistry, hull=not args.no_hull,
                       uncertainty={"members": args.gap_members, "select": args.dft_select,
                                    "penalty": args.uncertainty_penalty, "site_gp": not args.no_site_gp,
                                    "neighbours": not args.no_neighbours},
                       progress=not args.quiet)
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2, default=float))
    return 0

