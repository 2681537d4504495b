"""Issue 21's two experiments as tables, from the one store that holds their walkers.

``walk`` advances every unfinished walker of an experiment's cells in lockstep around one relaxer, so a GPU's batch
holds all of them (a cell alone is 40 walkers; experiment 1 is 800): on a device machine inside
``bench/device/campaign.sh``, whose carry ``rlcsp copy`` brings back into the campaign's store. ``tables`` builds
the tables from that store alone, each cell with ``rlcsp compare``'s own report (``run_missing=False``: only
finished walkers count, the rest are listed as missing; ``--interim`` also counts those still walking, censored
at their last stored relaxation).

- Experiment 1, FUSE's table: five compositions, four rows each: the paper's three policies on the FUSE profiles
  that ran them (1.04 + original, 1.06 + uniform, FUSE_RL + reinforce-rlcsp; rlcsp.csp.quirks) and rlcsp's default
  mode with ``--policy``; GM reached of the seeds next to FUSE's count of 40 with Fisher's p, the KM median of
  relaxations to the GM with its 95 % interval, and the row's relaxer (GPU) seconds.
- Experiment 2, policy-update rules on one composition: reinforce, npg and ppo with each baseline, reinforce-rlcsp
  (its own entropy bonus: it takes no baseline), original and uniform, all in one mode; log-rank p against uniform,
  Holm-corrected across the rows.

FUSE-profile rows keep only each walker's new bests (``keep_structures='best'``) and experiment 2 runs with FUSE's
energy uniqueness, so that every walker but the default row's travels as a lean carry (``bench/store_size.py``);
the default row's walkers resume from every structure they stored, so they walk in a store of their own
(``--rows default``), in groups small enough for 64 MiB.

    bash bench/device/campaign.sh 1350 540 python3 bench/experiments.py walk --experiment 1 2 --processes 15
    python bench/experiments.py keep --carry carry.db --db sqlite:///runs/c.db   # then commit the slice, and
    python bench/experiments.py shelve                                           # commit its move into history
    python bench/experiments.py carry --experiment 2 --part 1/2 --carry .devrun/carry.db --db sqlite:///runs/c.db
    python bench/experiments.py tables --db mysql://me@host/campaign --seeds 40 --first-seed 1
"""
from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
HISTORY = RESULTS / "campaign"  # the campaign's store as slices, one per device session (``keep``, ``restore``)
# Slices that live only in git history (``shelve``): the working tree travels whole with every device call, 64 MiB
# at most, and the slices grow 10-20 MB a session.
SHELF = HISTORY / "shelved.json"
COMPOSITIONS = ("y2o3", "y2ti2o7", "y2tio5", "sry2o4", "sr4ti3o10")
LEAN = {"keep_structures": "best"}
EXP1_ROWS = (("FUSE 1.04, original", {"fuse": "1.04", **LEAN}, "original"),
             ("FUSE 1.06, uniform", {"fuse": "1.06", **LEAN}, "uniform"),
             ("FUSE_RL, reinforce-rlcsp", {"fuse": "rl", **LEAN}, "reinforce-rlcsp"))
EXP2_MODE = {"quirks": "energy_uniqueness", **LEAN}
EXP2_POLICIES = (*(f"{rule}:{baseline}" for rule in ("reinforce", "npg", "ppo")
                   for baseline in ("none", "entropy", "value", "mixed")),
                 "reinforce-rlcsp", "original", "uniform")


def cells(args, experiment: int) -> list[tuple[str, str, dict, list[str]]]:
    """(name, composition, mode, policies) of every compare the experiment needs, or of those ``--rows`` names."""
    if experiment == 2:
        return [("policy rules", args.composition, EXP2_MODE, list(EXP2_POLICIES))]
    rows = [*EXP1_ROWS, ("rlcsp default", {}, args.default_policy)]
    return [(name, comp, mode, [policy]) for comp in COMPOSITIONS for name, mode, policy in rows
            if args.rows is None or args.rows in name]


def cell_folder(out: str, name: str, comp: str) -> Path:
    return Path(out) / f"{comp}_{name.replace(' ', '_').replace(',', '')}"


def part_walkers(args) -> list[tuple]:
    """(config, folder) of every walker of the chosen experiments and rows, in a fixed order, and of those only
    ``--part K/N``'s share (every N-th from the K-th): a campaign whose carry outgrows a device call (64 MiB)
    walks in parts, each with a carry of its own runs."""
    from rlcsp.csp.compare import walker_dir
    from rlcsp.csp.config import load_script, make_config

    k, n = map(int, args.part.split("/"))
    if not 1 <= k <= n:
        raise SystemExit(f"--part {args.part}: want K/N with 1 <= K <= N")
    walkers = []
    for name, comp, mode, policies in (cell for experiment in args.experiment for cell in cells(args, experiment)):
        base = {**load_script(ROOT / "inputs" / f"{comp}.py"), **mode}
        for policy in policies:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                config = make_config(base, policy=policy, seed=seed, budget=args.budget)
                walkers.append((config, walker_dir(cell_folder(args.out, name, comp), policy, seed)))
    return walkers[k - 1::n]


def walk(args) -> None:
    """Every unfinished walker of every cell (of ``--part``), in lockstep around one relaxer (SIGTERM stops them
    cleanly)."""
    from rlcsp.csp.compare import finished_run
    from rlcsp.csp.lockstep import run_lockstep
    from rlcsp.csp.shards import in_flight
    from rlcsp.db import Store

    store = Store(args.db)
    walkers = [(config, folder) for config, folder in part_walkers(args) if finished_run(store, config) is None]
    store.close()
    print(f"{len(walkers)} unfinished walkers of experiment {' and '.join(map(str, args.experiment))}", flush=True)
    timings: dict[str, float] = {}
    summaries = run_lockstep(walkers, args.db, device=args.device, processes=args.processes, progress=True,
                             timings=timings, graphs=args.graphs)
    ended = sum("error" not in s and s.get("stop_reason", "").startswith(("budget", "target")) for s in summaries)
    print(f"{ended} of {len(walkers)} walkers finished in this call")
    share = in_flight(timings)
    if share is not None:
        print(f"in flight: {share:.3f} of the live walkers while the relaxer stepped (the rest were on the host)")
    print("seconds per phase (walker processes summed; serve_s: the relaxer stepping, wait_s: it waiting for work):",
          json.dumps({phase: round(seconds, 1) for phase, seconds in timings.items()}))


def carry(args) -> None:
    """The lean carry of ``--part``'s walkers (those stored so far) for a device call: ``rlcsp copy --lean`` of
    their runs alone."""
    from rlcsp.db import Store
    from rlcsp.db.transfer import copy_runs

    store, out = Store(args.db, create=False), Path(args.carry).resolve()
    out.unlink(missing_ok=True)
    runs = [run for config, _ in part_walkers(args) if (run := store.find_run(config.to_dict(), which="any"))]
    dest = Store(f"sqlite:///{out}")
    n = copy_runs(store, dest, lean=True, runs=runs)
    store.close()
    dest.close()
    print(f"{args.db} -> {out}: {n['new']} runs of part {args.part} ({n['steps']} steps); xz -T0 it for the call")


def restore(args) -> None:
    """The campaign's store from its history: every kept slice (``keep``), shelved or not, copied in order."""
    from rlcsp.db import Store
    from rlcsp.db.transfer import copy_runs

    parts = {entry["name"]: lambda entry=entry: _shelved(entry) for entry in _shelf()}
    parts.update({part.name: part.read_bytes for part in HISTORY.glob("slice_*.db.xz")})
    store = Store(args.db)
    for name in sorted(parts):
        with _unpacked(name, parts[name]()) as url:
            source = Store(url, create=False)
            n = copy_runs(source, store)
            source.close()
        print(f"{name}: {n['new']} new runs, {n['forward']} brought forward ({n['steps']} steps), {n['gap']} gaps")
    store.close()


def shelve(args) -> None:
    """Take the committed slices out of the working tree, into git history alone: shelved.json names the commit
    that holds each one (and its SHA-256), which ``restore`` reads back. Commit shelved.json and the removals."""
    import hashlib

    entries = _shelf()
    for part in sorted(HISTORY.glob("slice_*.db.xz")):
        path = part.relative_to(ROOT).as_posix()
        commit = _git("log", "-1", "--format=%H", "--", path)
        if not commit or _git("status", "--porcelain", "--", path):
            raise SystemExit(f"{path} is not committed as it stands: commit it first, then shelve")
        data = part.read_bytes()
        entries.append({"name": part.name, "commit": commit, "path": path, "bytes": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()})
        _git("rm", "-q", "--", path)
        print(f"{path}: shelved in {commit[:10]}")
    SHELF.parent.mkdir(parents=True, exist_ok=True)  # git rm takes the emptied folder away
    SHELF.write_text(json.dumps(entries, indent=1) + "\n")


def _shelf() -> list[dict]:
    return json.loads(SHELF.read_text()) if SHELF.exists() else []


def _shelved(entry: dict) -> bytes:
    import hashlib
    import subprocess

    shown = subprocess.run(["git", "show", f"{entry['commit']}:{entry['path']}"], cwd=ROOT, capture_output=True)
    if shown.returncode:
        raise SystemExit(f"{entry['path']} is not in this clone's history at {entry['commit'][:10]} (a shallow "
                         "clone? git fetch --unshallow)")
    data = shown.stdout
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise SystemExit(f"{entry['path']} at {entry['commit'][:10]} is not the slice shelved.json names")
    return data


def _git(*command: str) -> str:
    import subprocess

    return subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def keep(args) -> None:
    """A device call's carry into the campaign's store, and what it added as the history's next slice (a few MB
    of xz in bench/results/campaign/, committed: the store itself lives only as long as a session)."""
    import lzma
    import time

    from rlcsp.db import Store
    from rlcsp.db.transfer import copy_runs

    HISTORY.mkdir(parents=True, exist_ok=True)
    store, carry = Store(args.db), Store(f"sqlite:///{Path(args.carry).resolve()}", create=False)
    delta_path = HISTORY / f"slice_{time.strftime('%Y%m%d_%H%M%S', time.gmtime())}.db"
    delta = Store(f"sqlite:///{delta_path}")
    n = copy_runs(carry, delta, after=store)
    delta.close()
    m = copy_runs(carry, store)
    carry.close()
    store.close()
    if n["new"] + n["forward"] == 0:
        delta_path.unlink()
        print(f"{args.carry} -> {args.db}: nothing new")
        return
    with delta_path.open("rb") as raw, lzma.open(f"{delta_path}.xz", "wb", preset=9) as packed:
        packed.write(raw.read())
    delta_path.unlink()
    print(f"{args.carry} -> {args.db}: {m['new']} new runs, {m['forward']} brought forward ({m['steps']} steps); "
          f"slice {delta_path.name}.xz ({Path(f'{delta_path}.xz').stat().st_size / 1e6:.1f} MB, {n['steps']} steps)")


@contextlib.contextmanager
def _unpacked(name: str, packed: bytes):
    import lzma
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name.removesuffix(".xz")
        path.write_bytes(lzma.decompress(packed))
        yield f"sqlite:///{path}"


def tables(args) -> None:
    for experiment in args.experiment:
        table(args, experiment)


def table(args, experiment: int) -> None:
    from rlcsp.csp.compare import compare

    lines, data = [], []
    for name, comp, mode, policies in cells(args, experiment):
        out = cell_folder(args.out, name, comp)
        report = compare(ROOT / "inputs" / f"{comp}.py", policies, args.seeds, args.budget, out=out, db_url=args.db,
                         echo=lambda line: None, run_missing=False, mode=mode, first_seed=args.first_seed,
                         interim=args.interim)
        for policy in policies:
            s = report["summary"][policy]
            fuse = s.get("fuse")
            test = report["logrank_relaxations_to_gm"].get(policy, {}).get("uniform")
            low, high = s["relaxations_to_gm"]["ci95"]
            row = {"composition": report["composition"], "row": name, "policy": policy, "runs": s["runs"],
                   "gm": s["successes"], "fuse_of_40": fuse and fuse["of_40"],
                   "fisher_p": fuse["fisher_p"] if fuse and not args.interim else None,
                   "km_median": s["relaxations_to_gm"]["km_median"], "ci95": [low, high], "relax_s": s["relax_s"],
                   "logrank_p_vs_uniform": test and test["p"], "holm_p_vs_uniform": test and test["p_holm"],
                   "missing": sum(m.startswith(f"{policy} ") for m in report["missing"]),
                   "walking": sum(m.startswith(f"{policy} ") for m in report["walking"])}
            data.append(row)
            lines.append(f"| {row['composition']} | {name if experiment == 1 else policy} | {row['gm']}/"
                         f"{row['runs']} ({row['missing']} missing"
                         + (f", {row['walking']} walking" if args.interim else "") + ") | "
                         + ("–" if fuse is None else f"{fuse['of_40']}" + ("" if args.interim else
                                                                           f" ({fuse['fisher_p']:.2g})"))
                         + f" | {_num(row['km_median'])} [{_num(low)}, {_num(high)}] | {s['relax_s']:.0f} | "
                         + ("–" if test is None else f"{test['p']:.3f} ({test['p_holm']:.3f})") + " |")
    head = ["| composition | row | GM reached | FUSE of 40 (Fisher p) | KM median relaxations [95% CI] | relaxer s | "
            "log-rank p vs uniform (Holm) |", "|---|---|---|---|---|---|---|"]
    table = "\n".join(head + lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    tag = f"experiment{experiment}" + ("_interim" if args.interim else "")
    note = ", interim: walkers still walking are censored at their last stored relaxation" if args.interim else ""
    (RESULTS / f"{tag}.md").write_text(f"# Experiment {experiment} (store {args.db}, seeds {args.first_seed}-"
                                       f"{args.first_seed + args.seeds - 1}, budget {args.budget}{note})\n\n"
                                       f"{table}\n")
    (RESULTS / f"{tag}.json").write_text(json.dumps({"db": args.db, "interim": args.interim, "rows": data},
                                                    indent=1) + "\n")


def _num(x: float | None) -> str:
    return "∞" if x is None else f"{x:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["walk", "carry", "tables", "keep", "shelve", "restore"],
                        help="walk (on the device), carry a part's walkers there, keep a carry that came back, "
                             "shelve the committed slices into git history, restore the store from the slices, "
                             "tables")
    parser.add_argument("--carry", help="carry: the SQLite file to write; keep: the one that came back")
    parser.add_argument("--part", default="1/1", help="walk, carry: K/N, every N-th walker from the K-th")
    parser.add_argument("--experiment", type=int, nargs="+", choices=[1, 2], default=[1],
                        help="1, 2, or both: walking both fills one GPU batch with all their walkers")
    parser.add_argument("--composition", default="y2o3", help="experiment 2's composition (default y2o3)")
    parser.add_argument("--default-policy", default="uniform", help="experiment 1's rlcsp default row")
    parser.add_argument("--rows", help="experiment 1's rows whose name holds this ('FUSE', 'default'): the default "
                                       "row carries every structure, so it travels in a store of its own")
    parser.add_argument("--interim", action="store_true", help="tables: count the walkers still walking, censored "
                                                                   "at their last stored relaxation (no Fisher p: "
                                                                   "their GM counts are lower bounds)")
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--db", help="the campaign's store (a carry on the device); all but shelve need it")
    parser.add_argument("--out", default="runs/experiments", help="each cell's walkers and compare report")
    parser.add_argument("--device", help="walk: the relaxer's device (cuda on a GPU machine)")
    parser.add_argument("--processes", type=int, help="walk: walker processes around the relaxer's")
    parser.add_argument("--graphs", action="store_true", help="walk: the torch relaxer's steps as CUDA graphs (the "
                                                              "same arithmetic; each run's settings record it)")
    args = parser.parse_args()
    if args.db is None and args.what != "shelve":
        parser.error(f"{args.what} needs --db")
    {"walk": walk, "carry": carry, "tables": tables, "keep": keep, "shelve": shelve,
     "restore": restore}[args.what](args)


if __name__ == "__main__":
    main()
