"""How much recording costs: steps stored per second on SQLite and MariaDB, against a 40-atom relaxation.

Each recorded step is what the search writes: the step row, a new structure (packed positions and its genome) and
the walker's full state (genome, structures, RNG and policy state) in one transaction. The peer is the
LammpsRelaxer on perturbed 40-atom bixbyite Y2O3, measured in the same run; the target is < 2 % overhead.

    python bench/db_throughput.py --steps 300 --mysql mysql://rlcsp_test@127.0.0.1:3306/rlcsp_test_bench
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from ase.io import read

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def realistic_step(search, relaxation: int, atoms):
    from rlcsp.csp.walker import StepRecord

    record = StepRecord(relaxation, "S", 1, 3, "accepted", -27.39, -27.39, -27.39, 0.02, True, len(atoms),
                        0.01, 0.2, 0.001)
    return record, {"atoms": atoms, "energy": -27.39, "genome": search.walker.genome.to_dict()}


def measure(url: str, steps: int, atoms) -> dict:
    from rlcsp.db import Store
    from rlcsp.csp.config import SearchConfig
    from rlcsp.csp.search import Search
    from rlcsp.csp.walker import Walker

    config = SearchConfig(composition={"Y": [2, 3], "O": [3, -2]}, max_atoms=80, budget=steps + 10,
                          initial_population=1)
    search = Search(config)
    genome, raw, _ = search.random_structure()
    search.walker = Walker(genome, atoms, -27.39, genome, atoms, -27.39, 0.02, relaxations=1)
    store = Store(url)
    run_id = store.create_run(config.to_dict(), "bench", "Y2O3", "original", 0, "lammps-buckingham", "bench")
    times = []
    for k in range(1, steps + 1):
        record, structure = realistic_step(search, k, atoms)
        t0 = time.perf_counter()
        store.record_step(run_id, record, search.checkpoint(), structure, best_energy=-27.39)
        times.append(time.perf_counter() - t0)
    state_bytes = len(json.dumps(search.checkpoint()))
    store.close()
    return {"url": url.split("://")[0], "steps": steps, "steps_per_s": steps / sum(times),
            "mean_ms": 1e3 * statistics.mean(times), "p95_ms": 1e3 * float(np.percentile(times, 95)),
            "state_bytes": state_bytes}


def encoding_ms(atoms, repeats: int = 200) -> dict:
    """Milliseconds to encode one structure for its row: packed (schema 3) against schema 2's JSON and CIF."""
    from io import BytesIO

    from ase.io import write

    from rlcsp.db import atoms_to_text

    def schema2(a) -> str:
        cif = BytesIO()
        write(cif, a, format="cif")
        return json.dumps({"numbers": a.numbers.tolist(), "cell": a.cell.array.tolist(),
                           "positions": a.positions.tolist(), "pbc": a.pbc.tolist()}) + cif.getvalue().decode()

    out = {}
    for name, encode in (("packed", atoms_to_text), ("schema2_json_cif", schema2)):
        t0 = time.perf_counter()
        for _ in range(repeats):
            text = encode(atoms)
        out[name] = {"ms": 1e3 * (time.perf_counter() - t0) / repeats, "bytes": len(text)}
    return out


def main() -> None:
    from rlcsp.version import commit

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--relaxations", type=int, default=20)
    parser.add_argument("--mysql", default=os.environ.get("RLCSP_BENCH_MYSQL",
                                                          "mysql://rlcsp_test@127.0.0.1:3306/rlcsp_test_bench"))
    args = parser.parse_args()
    os.environ.setdefault("RLCSP_DB_PASSWORD", "rlcsp_test")

    from rlcsp.calculators import get_relaxer

    bixbyite = read(ROOT / "inputs" / "structures" / "y2o3_bixbyite.cif")
    rng = np.random.default_rng(0)
    relaxer = get_relaxer("lammps-buckingham")
    relax_times = []
    for _ in range(args.relaxations):
        trial = bixbyite.copy()
        trial.rattle(0.1, rng=rng)
        trial.set_cell(trial.cell @ (np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))), scale_atoms=True)
        relax_times.append(relaxer.relax([trial])[0].wall_s)
    relax_s = statistics.mean(relax_times)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for url in (f"sqlite:///{tmp}/bench.db", args.mysql):
            row = measure(url, args.steps, bixbyite)
            row["overhead_vs_relaxation"] = row["mean_ms"] / 1e3 / relax_s
            rows.append(row)
    from rlcsp.db import Database

    scratch = Database(args.mysql)  # the bench's own scratch schema: drop it again
    scratch.run(lambda tx: tx.execute(f"DROP DATABASE `{scratch.url.database}`"))
    scratch.close()

    encoding = encoding_ms(bixbyite)
    lines = [f"40-atom Y2O3 LammpsRelaxer (peer): {relax_s * 1e3:.0f} ms per relaxation (mean of {args.relaxations})",
             f"structure row encoding (commit {commit()}): packed {encoding['packed']['ms']:.3f} ms, "
             f"{encoding['packed']['bytes']} B; schema 2's JSON + CIF {encoding['schema2_json_cif']['ms']:.3f} ms, "
             f"{encoding['schema2_json_cif']['bytes']} B",
             "", "| backend | steps/s | mean ms/step | p95 ms | state JSON bytes | overhead vs relaxation |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['url']} | {r['steps_per_s']:.0f} | {r['mean_ms']:.2f} | {r['p95_ms']:.2f} | "
                     f"{r['state_bytes']} | {100 * r['overhead_vs_relaxation']:.2f} % |")
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "db_throughput.md").write_text(table + "\n")
    (RESULTS / "db_throughput.json").write_text(json.dumps({"commit": commit(), "relaxation_s": relax_s,
                                                            "encoding": encoding, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
