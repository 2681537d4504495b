"""Which minima do different relaxers reach from the same starts? Basin statistics against LammpsRelaxer.

Trajectories of two relaxers part within a few steps, so the same start rarely ends in the same minimum; what a
search needs is that the minima they reach are alike in distribution. Each ``relax`` run relaxes every structure of
some extxyz files (search candidates from ``bench/gpu_throughput.py candidates``, or the rattled GM genomes that
``bench/gm_genomes.py --structures`` writes) with one relaxer and stores one row per structure (energy, failure,
steps) in ``bench/results/relaxer_basins/<file>_<relaxer>.json``; ``report`` sets every relaxer beside the peer,
LammpsRelaxer: convergence and collapse rates, energy quantiles, the GM rate and the rate within 0.05 eV/atom of
it (Fisher exact p against the peer), and how often both reach the same minimum. Relaxers:
  lammps                    ``LammpsRelaxer`` (CG + box/relax; the exponential kept below 1.2 Å), one per worker
  ase                       ``AseRelaxer`` FIRE -> BFGS on the exact GULP model, one per worker
  torch-<optimizer>-<inner> ``TorchRelaxer`` batched (fire, lbfgs, cg; keep or gulp below 1.2 Å)

    python bench/relaxer_basins.py relax lammps --files runs/candidates/y2ti2o7.extxyz --workers 2
    python bench/relaxer_basins.py relax torch --files runs/candidates/*.extxyz --device cuda \\
        --optimizers fire lbfgs cg --inner keep gulp
    python bench/relaxer_basins.py report
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from rlcsp.version import commit
from gpu_throughput import SAME, TARGETS  # this folder is the script's sys.path[0]

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "relaxer_basins"
PEER = "lammps"
GM_TOL, NEAR = 1e-5, 0.05  # eV/atom: at the GM, near it (the same minimum as the peer: SAME, 1e-4)
COLOURS = {"lammps": "k", "ase": "tab:grey", "lbfgs": "tab:blue", "cg": "tab:orange", "fire": "tab:red"}
_relaxer = None  # one per worker process


def _start(name: str) -> None:
    global _relaxer
    from rlcsp.calculators import get_relaxer

    _relaxer = get_relaxer("lammps-buckingham", relaxer=name)


def _row(result) -> list:
    """[energy per atom or None, failure ('' when converged), steps]."""
    energy = round(result.energy_per_atom, 7) if result.ok else None
    return [energy, result.failure.value if result.failure else "", int(result.steps)]


def _one(atoms) -> list:
    return _row(_relaxer.relax_one(atoms))


def relax_cpu(name: str, structures: list, workers: int) -> list:
    """One relaxer per worker process, structures one at a time, in order."""
    from tqdm import tqdm

    with ProcessPoolExecutor(workers, initializer=_start, initargs=(name,)) as pool:
        return list(tqdm(pool.map(_one, structures, chunksize=4), total=len(structures), desc=name))


def relax_torch(relaxer, structures: list, label: str) -> list:
    """The whole file through the relaxer's stream (the batch refilled from the queue)."""
    from tqdm import tqdm

    stream = relaxer.stream()
    for k, atoms in enumerate(structures):
        stream.submit(k, atoms)
    rows: list = [None] * len(structures)
    with tqdm(total=len(structures), desc=label) as bar:
        while stream.pending:
            for k, result, _ in stream.poll():
                rows[k] = _row(result)
                bar.update()
    return rows


def save(path: Path, label: str, settings: dict, structures: list, rows: list, wall: float, ran: str) -> None:
    comps = sorted({a.info.get("comp", "") for a in structures})
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"{path.stem}_{label}.json"
    out.write_text(json.dumps({"file": path.name, "relaxer": label, "settings": settings, "composition": comps[0],
                               "commit": ran, "wall_s": round(wall, 1), "rows": rows}) + "\n")
    print(f"{out.relative_to(ROOT)}: {len(rows)} structures in {wall:.0f} s")


def relax(args: argparse.Namespace) -> None:
    """One relaxer over every file. The torch relaxer takes all files as one stream, so the slowest
    structures of all of them finish together, at the end of one run."""
    from ase.io import read

    ran = commit()  # the code that runs, whatever is committed meanwhile
    files = {path: read(path, index=":")[:args.n] for path in args.files}
    for path, structures in files.items():
        if len({a.info.get("comp") for a in structures}) != 1:
            raise SystemExit(f"{path}: every structure needs the same info['comp'] (one of {sorted(TARGETS)})")
    if args.relaxer != "torch":
        for path, structures in files.items():
            start = time.perf_counter()
            rows = relax_cpu(args.relaxer, structures, args.workers)
            save(path, args.relaxer, {"workers": args.workers}, structures, rows, time.perf_counter() - start, ran)
        return
    from rlcsp.calculators import get_relaxer

    everything = [a for structures in files.values() for a in structures]
    for optimizer, inner in itertools.product(args.optimizers, args.inner):
        relaxer = get_relaxer("torch-buckingham", device=args.device, optimizer=optimizer, inner=inner)
        label = f"torch-{optimizer}-{inner}"
        start = time.perf_counter()
        rows = relax_torch(relaxer, everything, label)
        wall = time.perf_counter() - start
        settings = {"device": args.device, "optimizer": optimizer, "inner": inner, "hold_atoms": relaxer.hold_atoms,
                    "compile": relaxer.model.compiled, "files": [p.name for p in files]}  # wall_s: all files
        for path, structures in files.items():
            save(path, label, settings, structures, rows[:len(structures)], wall, ran)
            rows = rows[len(structures):]


def fisher(a: int, n_a: int, b: int, n_b: int) -> float:
    from scipy.stats import fisher_exact

    return float(fisher_exact([[a, n_a - a], [b, n_b - b]])[1])


def counts(run: dict, target: float) -> dict:
    """One relaxer's rates and quantiles on one file."""
    rows = run["rows"]
    energies = [r[0] for r in rows if r[0] is not None]
    failures: dict[str, int] = {}
    for r in rows:
        if r[1]:
            failures[r[1]] = failures.get(r[1], 0) + 1
    return {"n": len(rows), "converged": len(energies), "failures": failures,
            "collapses": failures.get("exploded", 0), "gm": sum(e <= target + GM_TOL for e in energies),
            "near": sum(e <= target + NEAR for e in energies),
            "quantiles": [round(float(q), 4) for q in np.quantile(energies, [0.1, 0.5, 0.9])] if energies else None,
            "median_steps": float(np.median([r[2] for r in rows])), "wall_s": run["wall_s"], "commit": run["commit"],
            "settings": run["settings"]}


def summary(runs: dict[str, dict]) -> dict[str, dict]:
    """Per relaxer of one file: rates, quantiles, and agreement with the peer (where it ran): Fisher exact p for
    the counts, Mann-Whitney p for the converged energies, a sign test on the starts where they differ."""
    from scipy.stats import binomtest, mannwhitneyu

    target = TARGETS[next(iter(runs.values()))["composition"]]
    out = {label: counts(run, target) for label, run in runs.items()}
    if PEER not in runs:
        return out
    theirs = runs[PEER]["rows"]
    peer, n = out[PEER], len(theirs)
    for label, run in runs.items():
        s = out[label]
        if label == PEER or s["n"] != n:
            continue
        both = [(r[0], t[0]) for r, t in zip(run["rows"], theirs) if r[0] is not None and t[0] is not None]
        lower, higher = sum(a < b - SAME for a, b in both), sum(a > b + SAME for a, b in both)
        mine, peers = ([r[0] for r in rows if r[0] is not None] for rows in (run["rows"], theirs))
        s.update(both=len(both), same=sum(abs(a - b) < SAME for a, b in both), lower=lower, higher=higher,
                 p_sign=float(binomtest(lower, lower + higher).pvalue) if lower + higher else 1.0,
                 p_energy=float(mannwhitneyu(*_ties(mine, peers)).pvalue) if mine and peers else 1.0,
                 **{f"p_{key}": fisher(s[key], n, peer[key], n) for key in ("collapses", "gm", "near")})
    return out


def _ties(*energies) -> list[np.ndarray]:
    """Energies to the same-minimum resolution: two engines' values of one minimum differ in the last digits,
    which a rank test would otherwise read as a systematic difference."""
    return [np.round(np.asarray(e) / SAME) for e in energies]


def _p(s: dict, key: str) -> str:
    return f" (p {s[key]:.2g})" if key in s else ""


def markdown(tables: dict[str, dict]) -> str:
    lines = ["| structures | relaxer | converged | collapses | other failures | E p10 / median / p90 (eV/atom) | GM "
             "| within 0.05 | same minimum as LAMMPS | lower / higher than LAMMPS | median steps | commit |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, runs in tables.items():
        for label, s in runs.items():
            n = s["n"]
            other = ", ".join(f"{k} {v}" for k, v in s["failures"].items() if k != "exploded") or "0"
            q = " / ".join(f"{x:.3f}" for x in s["quantiles"]) + _p(s, "p_energy") if s["quantiles"] else "-"
            same = f"{s['same']} of {s['both']}" if "same" in s else "-"
            updown = f"{s['lower']} / {s['higher']}{_p(s, 'p_sign')}" if "lower" in s else "-"
            lines.append(f"| {name} ({n}) | {label} | {100 * s['converged'] / n:.1f} % | "
                         f"{100 * s['collapses'] / n:.1f} %{_p(s, 'p_collapses')} | {other} | {q} | "
                         f"{s['gm']}{_p(s, 'p_gm')} | {s['near']}{_p(s, 'p_near')} | {same} | {updown} | "
                         f"{s['median_steps']:.0f} | {s['commit']} |")
    return "\n".join(lines) + "\n"


def plot(tables: dict[str, dict], path: Path) -> None:
    """Energy ECDF of every relaxer on every file: where the minima they reach lie."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tables), figsize=(6 * len(tables), 4.5), squeeze=False)
    for ax, (name, runs) in zip(axes[0], tables.items()):
        target = TARGETS[next(iter(runs.values()))["composition"]]
        for label, run in runs.items():
            e = np.sort([r[0] for r in run["rows"] if r[0] is not None])
            kind = label.split("-")  # colour by optimiser, dashed for GULP's convention below 1.2 Å
            ax.step(e - target, np.arange(1, len(e) + 1) / len(run["rows"]), where="post", label=label,
                    lw=2.0 if label == PEER else 1.0, color=COLOURS.get(kind[1] if len(kind) > 1 else label, "k"),
                    ls="--" if kind[-1] == "gulp" else "-")
        ax.set_xlim(0, 1.0)
        ax.set(title=name, xlabel="energy above the GM (eV/atom)", ylabel="share of starts reaching it")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def report(_: argparse.Namespace) -> None:
    runs: dict[str, dict[str, dict]] = {}
    for f in sorted(OUT.glob("*.json")):
        if f.name == "summary.json":
            continue
        run = json.loads(f.read_text())
        runs.setdefault(Path(run["file"]).stem, {})[run["relaxer"]] = run
    for name in runs:  # the peer first
        runs[name] = dict(sorted(runs[name].items(), key=lambda kv: (kv[0] != PEER, kv[0])))
    tables = {name: summary(r) for name, r in runs.items()}
    text = markdown(tables)
    print(text)
    (OUT / "summary.json").write_text(json.dumps(tables, indent=1) + "\n")
    (OUT.parent / "relaxer_basins.md").write_text(
        "Basin statistics: every relaxer on the same starts (bench/relaxer_basins.py). p against LAMMPS: Fisher "
        "exact for counts, Mann-Whitney for the converged energies, a sign test for lower / higher; same minimum: "
        "both converged within 1e-4 eV/atom.\n\n" + text)
    plot({n: runs[n] for n in runs}, OUT.parent / "relaxer_basins.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    rel = sub.add_parser("relax", help="relax every structure of some files with one relaxer")
    rel.add_argument("relaxer", choices=("lammps", "ase", "torch"))
    rel.add_argument("--files", nargs="+", type=Path, required=True, help="extxyz files, info['comp'] on each")
    rel.add_argument("--n", type=int, default=None, help="only the first n structures of each file")
    rel.add_argument("--workers", type=int, default=os.cpu_count(), help="processes (lammps, ase)")
    rel.add_argument("--device", default="cpu", help="torch device")
    rel.add_argument("--optimizers", nargs="+", default=["lbfgs"], choices=("fire", "lbfgs", "cg"))
    rel.add_argument("--inner", nargs="+", default=["keep"], choices=("keep", "gulp"))
    rel.set_defaults(run=relax)
    rep = sub.add_parser("report", help="the table and plot from every stored run")
    rep.set_defaults(run=report)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
