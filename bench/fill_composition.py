"""Paper d's Table 1 on rlcsp: oxides from the composition DQN, with and without constraints, against random.

The band-gap model (Magpie MLP on 3,896 experimental gaps, grouped 5-fold CV MAE reported) is trained once and
cached (``rlcsp.design.composition_models.default_cache_dir()``). Three agents build 5-step oxide formulas over
78 elements towards a target gap (default 3.0 eV): ``random`` (uniform over valid actions), ``DQN`` (paper d's
plain agent: reward -|gap - target| only, no constraint network) and ``DQN + constraints`` (reward minus 1 per
failed SMACT oracle, and the constraint network filtering the top-15 % draw). Each trained agent then generates
``--n`` formulas with epsilon 0; the table gives % charge neutral, % electronegativity balanced, % unique, mean
pairwise ElMD, and the predicted-gap distribution. One process, one torch thread.

Writes bench/results/fill_composition.{json,md} and fill_composition.png (predicted gaps per agent).

    python bench/fill_composition.py                       # 6-7 minutes on one core (40 s of it the gap model)
    python bench/fill_composition.py --iterations 50 --n 200
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
AGENTS: dict[str, dict[str, Any]] = {
    "random": {"agent": "random"},
    "DQN": {"use_constraints": False, "constraint_penalty": 0.0},
    "DQN + constraints": {},
}


def _plot(gaps: dict[str, np.ndarray], target: float, window: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    bins = np.linspace(0.0, max(6.0, max(float(g.max()) for g in gaps.values())), 41)
    ax.axvspan(target - window, target + window, color="0.85", label=f"target {target:g} +- {window:g} eV")
    for name, values in gaps.items():
        ax.hist(values, bins=bins, histtype="step", linewidth=1.6, label=name)
    ax.set_xlabel("predicted band gap (eV)")
    ax.set_ylabel("generated compositions")
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(seed: int = 0, n: int = 500, iterations: int = 300, target: float = 3.0, window: float = 0.5,
        agents: Sequence[str] = tuple(AGENTS), cache_dir: str | Path | None = None,
        results_dir: str | Path | None = RESULTS, progress: bool = True) -> dict[str, Any]:
    """Train each agent, generate ``n`` formulas each, and return (and, with ``results_dir``, write) Table 1."""
    import torch
    from tqdm import tqdm

    from rlcsp.design.composition_models import train_gap_model
    from rlcsp.policies.composition_dqn import CompositionDQNConfig, generate, train
    from rlcsp.design.composition_metrics import composition_metrics, table1_markdown
    from rlcsp.exceptions import ConfigError

    unknown = sorted(set(agents) - set(AGENTS))
    if unknown:
        raise ConfigError(f"unknown agents {unknown}; known: {list(AGENTS)}")
    torch.set_num_threads(1)
    started = time.perf_counter()
    gap_model = train_gap_model(cache_dir=cache_dir)
    rows, gaps, details = {}, {}, {}
    for name in agents:
        config = CompositionDQNConfig(seed=seed, iterations=iterations, target_gap=target, **AGENTS[name])
        agent_started = time.perf_counter()
        bar = tqdm(total=config.iterations if config.agent == "dqn" else 0, desc=name, unit="it",
                   disable=not progress)

        def tick(row: dict[str, Any]) -> None:
            bar.update(1)
            bar.set_postfix(neutral=f"{row['charts/charge_neutral']:.2f}", gap=f"{row['charts/gap']:.2f}")

        agent = train(config, gap_model, progress=tick)
        bar.close()
        train_s = time.perf_counter() - agent_started
        outcome = generate(agent, n, seed, gap_model)
        rows[name] = composition_metrics(outcome.formulas, outcome.gaps, target, window)
        gaps[name] = outcome.gaps
        details[name] = {"config": asdict(config), "train_s": round(train_s, 1),
                         "generate_and_score_s": round(time.perf_counter() - agent_started - train_s, 1),
                         "first_formulas": outcome.formulas[:20], "history_last": agent.history[-1:]}
    markdown = table1_markdown(rows, target, window)
    report = gap_model.report
    result = {"table1": rows, "markdown": markdown, "target_eV": target, "window_eV": window, "seed": seed, "n": n,
              "iterations": iterations, "agents": details, "wall_s": round(time.perf_counter() - started, 1),
              "gap_model": {k: report.get(k) for k in ("cv_mae", "cv_mae_std", "fold_mae", "mean_predictor_mae",
                                                        "folds", "samples", "grouped_by", "cache_file")}}
    if results_dir is not None:
        out = Path(results_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "fill_composition.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
        note = (f"Oxides (5 steps, last = O) over 78 elements, target gap {target:g} eV, seed {seed}, {n} formulas "
                f"per agent, DQNs trained {iterations} iterations x 100 episodes. Gaps from the Magpie MLP "
                f"(grouped {report['folds']}-fold CV MAE {report['cv_mae']:.3f} eV on {report['samples']} "
                f"experimental gaps; always-the-mean MAE {report['mean_predictor_mae']:.3f} eV). "
                f"Wall time {result['wall_s']:.0f} s.")
        (out / "fill_composition.md").write_text(f"# fill_composition: paper d Table 1 layout\n\n{note}\n\n"
                                                 f"{markdown}\n\n![predicted gaps](fill_composition.png)\n")
        _plot(gaps, target, window, out / "fill_composition.png")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=500, help="formulas generated per agent")
    parser.add_argument("--iterations", type=int, default=300, help="DQN iterations of 100 episodes")
    parser.add_argument("--target", type=float, default=3.0, help="target band gap (eV)")
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=list(AGENTS))
    parser.add_argument("--cache-dir", help="where the trained gap model is kept (default: ~/.cache/rlcsp/...)")
    args = parser.parse_args(argv)
    result = run(seed=args.seed, n=args.n, iterations=args.iterations, target=args.target, agents=args.agents,
                 cache_dir=args.cache_dir)
    print(result["markdown"])
    print(f"gap model grouped CV MAE {result['gap_model']['cv_mae']:.3f} eV; wall {result['wall_s']:.0f} s; "
          f"wrote {(RESULTS / 'fill_composition.json').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
