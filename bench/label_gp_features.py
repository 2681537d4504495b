"""What the skeleton GP's descriptors are worth on DFT labels it has: leave-one-out accuracy per descriptor set.

Issue 22's hybrid loop sends to DFT the filling likeliest to land in the ±0.25 eV window, so the GP's accuracy
decides its hit rate. This bench reads the DFT labels of ``bench/fill_bandgap.py`` stores (one skeleton; the
runs of both targets pooled), fits the GP on each descriptor set and predicts every label from all the others
(closed form): MAE, r, the window precision of its 20 likeliest hits (the fraction of the labels it thought
likeliest in the window, by the leave-one-out mean and deviation, that are), and a paired Wilcoxon test of the
absolute errors against the set without site potentials. The labels were chosen by one of these GPs, so they are
not a random sample of fillings: the comparison is paired on the same labels.

    python bench/label_gp_features.py runs/bench-fill-1.12/bench.db runs/bench-fill-3.0/bench.db
    python bench/label_gp_features.py bench/results/label_gp_features_60_t3.json runs/next/bench.db

The JSON keeps the labels it read (``label_set``: species and gap), so later runs can pool them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def leave_one_out(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each label's (mean, deviation) from the GP fitted to all the others."""
    from rlcsp.design.label_gp import LabelGP

    gp = LabelGP(x, y - y.mean())
    return y.mean() + gp.leave_one_out(), np.sqrt(1 / np.diag(gp.inverse))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stores", nargs="+", type=Path,
                        help="fill_bandgap bench stores (OUT/bench.db), or this bench's JSON (its label_set)")
    parser.add_argument("--targets", nargs="+", type=float, default=[1.12, 3.0])
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--name", default="label_gp_features")
    args = parser.parse_args()

    from scipy.stats import wilcoxon

    from rlcsp.db import Store
    from rlcsp.design.gap_model import CrystalFeatures
    from rlcsp.design.label_gp import POTENTIALS, SiteDescriptors, skeleton_labels
    from rlcsp.design.rewards import WINDOW, window_probability
    from rlcsp.design.skeleton import make_skeleton
    from rlcsp.version import commit

    sys.path.insert(0, str(ROOT / "inputs"))
    from elpasolite import skeleton as elpasolite

    skeleton = make_skeleton(elpasolite())
    labels: dict[tuple[str, ...], float] = {}
    for path in args.stores:
        if path.suffix == ".json":  # an earlier run's labels (stores live in runs/, which sessions do not keep)
            found = [(row["species"], row["gap"]) for row in json.loads(path.read_text())["label_set"]]
        else:
            store = Store(f"sqlite:///{path.resolve()}", create=False)
            found = skeleton_labels(store, skeleton)
            store.close()
        for species, gap in found:
            labels[skeleton.canonical(species)] = gap
    fillings, y = list(labels), np.array(list(labels.values()))
    sites = np.stack([SiteDescriptors(skeleton)(s) for s in fillings])
    crystal = CrystalFeatures()([skeleton.atoms(s) for s in fillings])
    elemental = sites[:, :-POTENTIALS]
    sets = {"elements": elemental, "elements + potentials": sites,
            "CHGNet + elements": np.concatenate([crystal, elemental], axis=1),
            "CHGNet + elements + potentials": np.concatenate([crystal, sites], axis=1)}
    rows, errors = [], {}
    for name, x in sets.items():
        mean, spread = leave_one_out(x, y)
        errors[name] = np.abs(mean - y)
        row = {"descriptors": name, "columns": x.shape[1], "loo_mae": float(errors[name].mean()),
               "loo_r": float(np.corrcoef(mean, y)[0, 1])}
        for target in args.targets:
            chance = [window_probability(m, d, target) for m, d in zip(mean, spread)]
            likeliest = np.argsort(-np.array(chance))[:args.top]
            row[f"top{args.top}_in_window_{target}"] = int((np.abs(y[likeliest] - target) <= WINDOW).sum())
        rows.append(row)
    for row in rows:
        base = "CHGNet + elements" if row["descriptors"].startswith("CHGNet") else "elements"
        if row["descriptors"] != base:
            row["wilcoxon_p_vs"] = [base, float(wilcoxon(errors[row["descriptors"]], errors[base]).pvalue)]
    in_window = {t: int((np.abs(y - t) <= WINDOW).sum()) for t in args.targets}
    head = ("| descriptors | columns | LOO MAE (eV) | LOO r | " + " | ".join(
        f"top {args.top} in window at {t} eV" for t in args.targets) + " | Wilcoxon p (vs without potentials) |")
    lines = [head, "|" + "---|" * (5 + len(args.targets))]
    for row in rows:
        test = row.get("wilcoxon_p_vs")
        lines.append(f"| {row['descriptors']} | {row['columns']} | {row['loo_mae']:.3f} | {row['loo_r']:.3f} | "
                     + " | ".join(str(row[f"top{args.top}_in_window_{t}"]) for t in args.targets)
                     + f" | {'–' if test is None else f'{test[1]:.2g}'} |")
    table = "\n".join(lines)
    intro = (f"{len(y)} distinct DFT-labelled fillings of the Rb3ScF6 skeleton from {', '.join(map(str, args.stores))}"
             f" (in the window: " + ", ".join(f"{n} at {t} eV" for t, n in in_window.items())
             + f"); mean-gap predictor MAE {np.abs(y - y.mean()).mean():.3f} eV. Commit {commit()}.")
    print(intro, table, sep="\n\n")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.md").write_text(f"# Skeleton GP descriptors, leave-one-out\n\n{intro}\n\n{table}\n")
    (RESULTS / f"{args.name}.json").write_text(json.dumps(
        {"commit": commit(), "stores": list(map(str, args.stores)), "labels": len(y), "in_window": in_window,
         "rows": rows, "label_set": [{"species": list(f), "gap": float(g)} for f, g in zip(fillings, y)]},
        indent=1) + "\n")


if __name__ == "__main__":
    main()
