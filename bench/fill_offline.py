"""Paper a's Table 1 on perov_5: random, BC, CQL and conditional CQL (alpha 1, 5) filling held-out skeletons.

Offline data: every crystal of perov_5 ``val.csv`` (3,787 five-site skeletons, five BFS orderings each, paper a's
reward of its ``heat_ref`` and ``ind_gap`` labels at target 1.12 eV). Held out: the first ``--test-limit`` rows of
``test.csv``, each filled once greedily in BFS order from site 0 over paper a's 88 elements. Columns: per-site
accuracy, category similarity, SMACT validity, novelty against the training compositions (all held-out crystals);
then % within 1.12 +- 0.25 eV, the out-of-distribution design rate and EMDs of gap and formation energy after the
gap model (CHGNet features + MLP trained on 1,000 val crystals) for the first ``--property-limit`` crystals.
Conditional CQL trains on targets drawn per episode from ``--condition-range`` (rewards relabelled), so the target
in its state carries information; unconditional CQL and BC see the fixed 1.12 eV rewards. At the end, paper d's
composition DQN against random through ``bench/fill_composition.py``'s ``run()``.

Reduced from paper a to fit one CPU core (stated in the output): gradient steps (paper: 200,000), batch (1,024),
hidden width (64) and MEGNet blocks (3); everything else is paper a's (Adam 3e-4, gamma 0.99, tau 5e-3, clip 5,
alpha 1 / 5, T 1). Writes bench/results/fill_offline.{json,md} and PNGs under bench/results/fill_offline/; the
work folder (datasets cache, checkpoints, store) is ``--work``, so a rerun reuses what is done.

    python bench/fill_offline.py                    # about 25 minutes on one loaded core
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TARGET = 1.12
PAPER = {"source": "paper a (Govindarajan et al. 2024), MP-20, Table 1: SMACT validity",
         "BC validity %": 81.84, "c-CQL validity % (range over targets)": [78.0, 81.0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="gradient steps per agent (paper a: 200000)")
    parser.add_argument("--batch-size", type=int, default=256, help="paper a: 1024")
    parser.add_argument("--hidden", type=int, default=32, help="paper a's network: 64")
    parser.add_argument("--blocks", type=int, default=2, help="paper a's network: 3")
    parser.add_argument("--test-limit", type=int, default=1000, help="held-out crystals (test.csv has 3,785)")
    parser.add_argument("--property-limit", type=int, default=400, help="held-out crystals given to the gap model")
    parser.add_argument("--condition-range", type=float, nargs=2, default=(0.0, 4.0), metavar=("LOW", "HIGH"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", default=str(ROOT / "runs" / "bench-fill-offline"))
    parser.add_argument("--composition-iterations", type=int, default=100,
                        help="paper d's DQN iterations of 100 episodes (its bench default: 300)")
    parser.add_argument("--composition-n", type=int, default=300, help="formulas generated per composition agent")
    args = parser.parse_args(argv)

    from rlcsp.design.fill import SHARED
    from rlcsp.design.fill_eval import run_fill_eval, table_markdown

    perov5 = SHARED / "data" / "perov_5"

    started = time.perf_counter()
    work = Path(args.work)
    reduced = {"gradient steps": [args.steps, 200_000], "batch size": [args.batch_size, 1024],
               "hidden width": [args.hidden, 64], "MEGNet blocks": [args.blocks, 3],
               "held-out crystals": [args.test_limit, 3785], "crystals given to the gap model": [args.property_limit,
                                                                                               args.test_limit]}
    print("reduced from paper a (ours, paper): " + "; ".join(f"{k} {a} vs {b}" for k, (a, b) in reduced.items()),
          flush=True)
    report = run_fill_eval(perov5 / "val.csv", perov5 / "test.csv", work, target=TARGET, steps=args.steps,
                           settings={"batch_size": args.batch_size, "hidden": args.hidden, "blocks": args.blocks,
                                     "checkpoint_every": 500, "log_every": 20},
                           seed=args.seed, test_limit=args.test_limit, property_limit=args.property_limit,
                           condition_range=tuple(args.condition_range), progress=True)
    offline_s = time.perf_counter() - started
    table = table_markdown(report["results"])
    plots = RESULTS / "fill_offline"
    plots.mkdir(parents=True, exist_ok=True)
    for png in work.glob("*.png"):
        shutil.copy(png, plots / png.name)

    from fill_composition import run as composition_run

    composition = composition_run(seed=args.seed, n=args.composition_n, iterations=args.composition_iterations,
                                  results_dir=None, progress=True)
    wall = time.perf_counter() - started
    result = {"target_eV": TARGET, "seed": args.seed, "reduced_ours_vs_paper": reduced,
              "condition_range_eV": list(args.condition_range), "paper_a_orientation": PAPER,
              "table": report["results"], "markdown": table, "train_dataset": report["train_dataset"],
              "test_dataset": report["test_dataset"], "offline_wall_s": round(offline_s, 1),
              "composition_dqn": {k: composition[k] for k in ("table1", "markdown", "target_eV", "window_eV", "n",
                                                              "iterations", "wall_s")},
              "wall_s": round(wall, 1)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fill_offline.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    counts = report["train_dataset"]["counts"]
    note = (f"Trained on perov_5 val.csv ({counts['crystals']} crystals, {counts['episodes']} episodes, 5 BFS "
            f"orderings each); evaluated on the first {args.test_limit} rows of test.csv at target {TARGET} eV "
            f"(gap-model columns on the first {args.property_limit}). Conditional CQL trained on targets drawn "
            f"uniformly from {args.condition_range[0]:g}-{args.condition_range[1]:g} eV per episode. Reduced from "
            "paper a to fit one CPU core: " + "; ".join(f"{k} {a} (paper {b})" for k, (a, b) in reduced.items())
            + f". Seed {args.seed}. Offline part {offline_s / 60:.1f} min, total {wall / 60:.1f} min.")
    orientation = (f"Paper a on MP-20 for orientation: BC validity {PAPER['BC validity %']} %, c-CQL "
                   f"{PAPER['c-CQL validity % (range over targets)'][0]:g}-"
                   f"{PAPER['c-CQL validity % (range over targets)'][1]:g} %.")
    images = "\n".join(f"![{p.stem}](fill_offline/{p.name})" for p in sorted(plots.glob("*.png")))
    markdown = (f"# fill_offline: paper a Table 1 layout on perov_5\n\n{note}\n\n{table}\n\n{orientation}\n\n"
                f"## Composition DQN (paper d) against random\n\n{composition['markdown']}\n\n{images}\n")
    (RESULTS / "fill_offline.md").write_text(markdown)
    print(f"\n{note}\n\n{table}\n\n{orientation}\n\n{composition['markdown']}")
    print(f"wrote {(RESULTS / 'fill_offline.json').relative_to(ROOT)} and .md; wall {wall / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
