"""Learning policies against FUSE's fixed ones: `rlcsp compare` per composition, collected into one table.

Each composition runs every (policy, seed) walker through `rlcsp.csp.compare.compare` (Dask LocalCluster, one
SQLite store per composition, so an interrupted bench resumes where it stopped). The per-composition reports
(Markdown, JSON, PNGs) are copied to `bench/results/compare_policies/<composition>/`; the combined table, next to
FUSE's published success counts out of 40 runs at budget 2000, goes to `bench/results/compare_policies.{md,json}`.

    python bench/compare_policies.py --compositions sry2o4 y2o3 --seeds 10 --budget 2000
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from rlcsp.csp.walker_stats import FUSE_COUNTS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
POLICIES = ["original", "uniform", "reinforce-rlcsp", "npg", "ppo:value"]


def run_composition(name: str, args) -> dict:
    from rlcsp.csp.compare import compare

    script = ROOT / "inputs" / f"{name}.py"
    out = Path(args.runs) / f"compare-{name}-b{args.budget}"
    report = compare(script, args.policies, args.seeds, args.budget, out=out, workers=args.workers,
                     run_missing=not args.report_only)
    dest = RESULTS / "compare_policies" / name
    dest.mkdir(parents=True, exist_ok=True)
    for path in [out / "report.md", out / "report.json", *out.glob("*.png")]:
        shutil.copy2(path, dest / path.name)
    return report


def table(reports: dict[str, dict], args) -> list[dict]:
    rows = []
    for name, report in reports.items():
        comp = report["composition"]
        walls = {}
        for w in report["walkers"]:
            walls.setdefault(w["policy"], []).append(w["wall_s_to_gm"] / max(w["relaxations_to_gm"], 1))
        for policy, s in report["summary"].items():
            tests = report["logrank_relaxations_to_gm"].get(policy, {})
            rows.append({
                "composition": comp, "policy": policy, "runs": s["runs"], "gm_reached": s["successes"],
                "fuse_of_40": FUSE_COUNTS.get(comp, {}).get(policy),
                "km_median_relaxations": s["relaxations_to_gm"]["km_median"],
                "best_energy_median": s["best_energy"]["median"], "best_energy_min": s["best_energy"]["min"],
                "target_energy": report["target_energy"],
                "s_per_relaxation": sum(walls.get(policy, [0])) / max(len(walls.get(policy, [])), 1),
                "p_vs_original": tests.get("original", {}).get("p"), "p_vs_uniform": tests.get("uniform", {}).get("p"),
            })
    return rows


def fmt(x, digits=0) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def write(rows: list[dict], args, wall_s: float) -> None:
    """Merge this invocation's compositions into the combined table (each keeps its own budget and seeds)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "compare_policies.json"
    run = "report of the walkers finished so far" if args.report_only else f"wall {wall_s:.0f} s"
    meta = {"budget": args.budget, "seeds": args.seeds, "workers": args.workers, "run": run}
    combined = json.loads(path.read_text()) if path.exists() else {}
    if "compositions" not in combined:
        combined = {"compositions": {}}
    for comp in {r["composition"] for r in rows}:
        combined["compositions"][comp] = {**meta, "rows": [r for r in rows if r["composition"] == comp]}
    path.write_text(json.dumps(combined, indent=1) + "\n")
    head = ("| composition | budget, seeds | policy | GM reached | FUSE (of 40, budget 2000) | "
            "KM median relax. to GM | best E median (min) | E_target | s / relaxation | log-rank p vs original | "
            "vs uniform |")
    lines = ["Budgets count relaxations including the initial population, which is budget // 2 when the budget is "
             "below the paper's 2000.", "",
             head, "|" + "---|" * 11]
    for comp, entry in sorted(combined["compositions"].items()):
        for r in entry["rows"]:
            lines.append(f"| {comp} | {entry['budget']}, seeds 0-{entry['seeds'] - 1} | {r['policy']} | "
                         f"{r['gm_reached']}/{r['runs']} | {fmt(r['fuse_of_40'])} | "
                         f"{fmt(r['km_median_relaxations'])} | "
                         f"{fmt(r['best_energy_median'], 6)} ({fmt(r['best_energy_min'], 6)}) | "
                         f"{fmt(r['target_energy'], 6)} | {r['s_per_relaxation']:.2f} | "
                         f"{fmt(r['p_vs_original'], 3)} | {fmt(r['p_vs_uniform'], 3)} |")
    text = "\n".join(lines) + "\n"
    (RESULTS / "compare_policies.md").write_text(text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compositions", nargs="+", default=["sry2o4", "y2o3"])
    parser.add_argument("--policies", nargs="+", default=POLICIES)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", default=str(ROOT / "runs"))
    parser.add_argument("--report-only", action="store_true",
                        help="report the walkers already finished (e.g. after stopping a bench cut short by time)")
    args = parser.parse_args()
    started = time.perf_counter()
    reports = {name: run_composition(name, args) for name in args.compositions}
    write(table(reports, args), args, time.perf_counter() - started)


if __name__ == "__main__":
    main()
