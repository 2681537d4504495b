"""Is the composition bench's DFT converged? Gaps of elpasolite fillings against the plane-wave cutoff.

Issue 22's hybrid loop counts a design as verified when pw.x puts its gap within ±0.25 eV of the target, and
``bench/fill_bandgap.py`` ran pw.x at 30 Ry (Gamma only) to fit a shared 2-core machine, half the 60 Ry at which
the engine's default (``DEFAULT_ECUTWFC_RY``) settles ONCV norm-conserving gaps. This bench measures what that
costs in the labels themselves: random masked fillings of the Rb3ScF6 skeleton (chemistry rules on, even electron
counts), each relaxed with CHGNet as ``--relax`` does, then one pw.x SCF per cutoff on the same relaxed crystal;
the highest cutoff is the reference. Per cutoff: the quantiles of |gap - reference gap|, how many fillings change
sides of each target's window (1.12 and 3.0 eV) and of 0.1 eV (metal or not), and the pw.x wall time.
``--designs`` takes the fillings of a fill run's design list instead (``designs.csv`` and its CIFs), to see the
verified designs themselves at other cutoffs. Writes bench/results/dft_cutoff.{json,md,png} (``--name``).

    python bench/dft_cutoff.py --fillings 20 --processes 2
    python bench/dft_cutoff.py --designs runs/fill/hybrid/designs.csv --name dft_cutoff_designs
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from ase import Atoms

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SCRIPT = ROOT / "inputs" / "elpasolite.py"
TARGETS = (1.12, 3.0)


def fillings(n: int, seed: int, usable: list[str]) -> list[Atoms]:
    """``n`` random masked fillings with an even electron count (fixed occupations can give them a gap)."""
    from rlcsp.calculators.espresso import resolve_inputs
    from rlcsp.design.fill import dft_settings, load_fill_script
    from rlcsp.design.fill_env import PAPER_B_VOCABULARY, SkeletonFillEnv
    from rlcsp.design.rewards import AnalyticEvaluator

    fill = load_fill_script(SCRIPT)
    settings = dft_settings(fill)[0]
    env = SkeletonFillEnv(fill["skeleton"], AnalyticEvaluator(len), chemistry=True, vocabulary=PAPER_B_VOCABULARY,
                          allowed=usable)
    rng, found = np.random.default_rng(seed), []
    env.reset(seed=seed)
    while len(found) < n:
        atoms = env.random_filling(rng)
        if resolve_inputs(atoms, settings).n_occupied is not None:
            found.append(atoms)
    return found


def designs(path: Path) -> list[Atoms]:
    """The fillings of a ``rlcsp fill`` design list (``designs.csv`` and its CIFs of the unrelaxed fillings)."""
    from ase.io import read

    with path.open() as handle:
        return [read(path.parent / row["cif"]) for row in csv.DictReader(handle)]


def ladder(atoms: Atoms, cutoffs: list[float], timeout: float) -> dict:
    """One filling: CHGNet-relaxed, then its gap at every cutoff (Gamma only, as the bench runs pw.x)."""
    from rlcsp.calculators.chgnet import chgnet_relaxer
    from rlcsp.calculators.espresso import DftSettings, PwRunner, run_dft

    relaxed = chgnet_relaxer(threads=1).relax([atoms])[0]
    crystal = relaxed.atoms if relaxed.ok else atoms
    row = {"formula": atoms.get_chemical_formula(), "species": atoms.get_chemical_symbols(),
           "chgnet_ok": bool(relaxed.ok), "runs": {}}
    for cutoff in cutoffs:
        result = run_dft(crystal, DftSettings(ecutwfc=cutoff, kpts="gamma"), runner=PwRunner(timeout_s=timeout))
        gap = float(result.band_gap) if result.ok and result.band_gap is not None else None
        row["runs"][f"{cutoff:g}"] = {"gap": gap, "outcome": result.outcome.value, "retries": result.retries,
                                      "wall_s": round(result.wall_s, 2)}
    return row


def summarise(rows: list[dict], cutoffs: list[float]) -> list[dict]:
    """Per cutoff below the reference: error quantiles, side changes of each window and of 0.1 eV, wall time."""
    reference = f"{max(cutoffs):g}"
    table = []
    for cutoff in sorted(cutoffs):
        key = f"{cutoff:g}"
        pairs = [(r["runs"][key]["gap"], r["runs"][reference]["gap"]) for r in rows
                 if r["runs"][key]["gap"] is not None and r["runs"][reference]["gap"] is not None]
        low, ref = (np.array(v, dtype=float) for v in zip(*pairs)) if pairs else (np.zeros(0), np.zeros(0))
        error = np.abs(low - ref)
        line = {"cutoff_Ry": cutoff, "compared": len(pairs),
                "abs_error_p50_p90_max_eV": [round(float(np.quantile(error, q)), 3) for q in (0.5, 0.9, 1.0)]
                if len(error) else None,
                "over_0.1_eV": int((error > 0.1).sum()),
                "metal_flips": int(((low > 0.1) != (ref > 0.1)).sum()),
                "median_wall_s": round(float(np.median([r["runs"][key]["wall_s"] for r in rows])), 1),
                "failures": sum(r["runs"][key]["outcome"] != "ok" for r in rows)}
        for target in TARGETS:
            line[f"window_{target:g}_flips"] = int(((np.abs(low - target) <= 0.25)
                                                    != (np.abs(ref - target) <= 0.25)).sum())
            line[f"window_{target:g}_at_cutoff"] = int((np.abs(low - target) <= 0.25).sum())
        table.append(line)
    return table


def render(result: dict) -> str:
    cutoffs = [line["cutoff_Ry"] for line in result["table"]]
    reference = f"{max(cutoffs):g}"
    lines = [f"# dft_cutoff: elpasolite filling gaps against the plane-wave cutoff (reference {reference} Ry)", "",
             (f"The first {len(result['rows'])} designs of `{result['designs']}`" if result.get("designs") else
              f"{len(result['rows'])} random masked fillings of the Rb3ScF6 skeleton (seed {result['seed']})")
             + ", CHGNet-relaxed, pw.x PBE ONCV, Gamma only, fixed occupations (retries as `run_dft`); commit "
             f"{result['commit']}.", "",
             "| cutoff (Ry) | compared | abs. error p50 / p90 / max (eV) | > 0.1 eV | metal flips (0.1 eV) | "
             + "".join(f"in ±0.25 of {t} / flips | " for t in TARGETS) + "median pw.x wall (s) | failures |",
             "|---|---|---|---|---|" + "---|" * len(TARGETS) + "---|---|"]
    for line in result["table"]:
        error = " / ".join(map(str, line["abs_error_p50_p90_max_eV"] or ["-"]))
        windows = "".join(f"{line[f'window_{t:g}_at_cutoff']} / {line[f'window_{t:g}_flips']} | " for t in TARGETS)
        lines.append(f"| {line['cutoff_Ry']:g} | {line['compared']} | {error} | {line['over_0.1_eV']} | "
                     f"{line['metal_flips']} | {windows}{line['median_wall_s']} | {line['failures']} |")
    lines += ["", "| filling | " + " | ".join(f"{c:g} Ry gap (eV), wall (s)" for c in cutoffs) + " |",
              "|---|" + "---|" * len(cutoffs)]
    for row in result["rows"]:
        cells = []
        for c in cutoffs:
            run = row["runs"][f"{c:g}"]
            gap = f"{run['gap']:.3f}" if run["gap"] is not None else run["outcome"]
            cells.append(f"{gap}, {run['wall_s']:.0f}" + (f" ({run['retries']} retries)" if run["retries"] else ""))
        lines.append(f"| {row['formula']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cutoffs = [line["cutoff_Ry"] for line in result["table"]]
    reference = f"{max(cutoffs):g}"
    fig, ax = plt.subplots(figsize=(5, 5))
    for c in cutoffs[:-1]:
        pairs = [(r["runs"][reference]["gap"], r["runs"][f"{c:g}"]["gap"]) for r in result["rows"]
                 if r["runs"][reference]["gap"] is not None and r["runs"][f"{c:g}"]["gap"] is not None]
        if pairs:
            ax.scatter(*zip(*pairs), label=f"{c:g} Ry", s=18)
    top = max([r["runs"][reference]["gap"] or 0 for r in result["rows"]] + [1.0]) * 1.05
    ax.plot([0, top], [0, top], color="grey", lw=0.8)
    for target in TARGETS:
        ax.axhspan(target - 0.25, target + 0.25, color="orange", alpha=0.15)
    ax.set(xlabel=f"gap at {reference} Ry (eV)", ylabel="gap at the lower cutoff (eV)",
           title="Elpasolite fillings: gap against cutoff")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fillings", type=int, default=24)
    parser.add_argument("--cutoffs", type=float, nargs="+", default=[30.0, 45.0, 60.0, 80.0],
                        help="ecutwfc values (Ry); the highest is the reference")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--processes", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per pw.x request, retries included")
    parser.add_argument("--designs", type=Path, help="a run's designs.csv: its DFT-verified fillings, not random ones")
    parser.add_argument("--name", default="dft_cutoff")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    from rlcsp.calculators.espresso import DftSettings
    from rlcsp.design.fill_env import PAPER_B_VOCABULARY
    from rlcsp.design.rewards import DftGapEvaluator
    from rlcsp.version import commit

    # Elements pw.x cannot use at the lowest cutoff are left out, so every cutoff sees the same fillings.
    probe = DftGapEvaluator(DftSettings(ecutwfc=min(args.cutoffs), kpts="gamma"))
    usable = sorted(set(PAPER_B_VOCABULARY) - probe.check_vocabulary(PAPER_B_VOCABULARY))
    chosen = designs(args.designs)[:args.fillings] if args.designs else fillings(args.fillings, args.seed, usable)
    with ProcessPoolExecutor(args.processes) as pool:
        jobs = [pool.submit(ladder, atoms, args.cutoffs, args.timeout) for atoms in chosen]
        rows = [job.result() for job in tqdm(jobs, desc="fillings", file=sys.stdout)]
    result = {"commit": commit(), "seed": args.seed, "designs": str(args.designs) if args.designs else None,
              "usable": usable, "cutoffs": args.cutoffs,
              "table": summarise(rows, args.cutoffs), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / f"{args.name}.md").write_text(render(result))
    plot(result, RESULTS / f"{args.name}.png")
    print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
