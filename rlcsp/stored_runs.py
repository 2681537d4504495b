"""The commands on stored runs: ``runs`` lists them, ``show`` and ``export`` read one, ``copy`` moves runs between
stores. All but ``copy`` only read."""
from __future__ import annotations

import argparse
from pathlib import Path

RUN_HELP = "a run folder (runs/demo), or a run id with --db"
DB_HELP = "the store: a run folder, an SQLite file or a URL (sqlite:///path, mysql://user@host:3306/name)"


def open_store(url: str, write: bool = False):
    """A store that must exist: read-only, or with ``write`` its schema brought up to date once it is found."""
    from rlcsp.db import Store

    store = Store(url, create=False)
    if write:
        store.close()
        store = Store(url)
    return store


def open_run(args: argparse.Namespace, write: bool = False):
    """The store and run id a command names (a run folder, or an id with --db); read-only unless ``write``."""
    from rlcsp.db import locate_run

    url, run_id = locate_run(args.run, args.db)
    store = open_store(url, write)
    store.run_info(run_id)  # a clear error for an unknown id
    return store, run_id


def cmd_runs(args: argparse.Namespace) -> int:
    from rlcsp.db import Store, known_stores, store_url

    urls = [store_url(args.db)] if args.db else known_stores()
    if not urls:
        print("no rlcsp store here (./rlcsp.db) or under runs/; name one with --db FOLDER|FILE|URL")
        return 1
    for url in urls:
        store = Store(url, create=False)
        runs = store.list_runs()
        store.close()
        print(f"{url}: {len(runs)} run{'s' * (len(runs) != 1)}")
        if not runs:
            continue
        print(f"{'id':>4} {'composition':12} {'policy':16} {'seed':>5} {'status':11} {'best (eV/atom)':>15} "
              f"{'GM reached':>10} {'GM at':>6} {'relax.':>6}")
        for r in runs:
            best = "" if r["best_energy"] is None else f"{r['best_energy']:.6f}"
            gm = "" if r["gm_relaxation"] is None else str(r["gm_relaxation"])
            print(f"{r['id']:>4} {r['composition']:12} {r['policy']:16} {r['seed']:>5} {r['status']:11} {best:>15} "
                  f"{'yes' if gm else 'no':>10} {gm:>6} {r['relaxations']:>6}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from rlcsp.csp.plots import plot_action_probabilities
    from rlcsp.csp.report import plot_energy
    from rlcsp.csp.run import records_from_rows

    store, run_id = open_run(args)
    info = store.run_info(run_id)
    print(f"{'store':14s} {store.url}")
    for key in ("id", "name", "composition", "policy", "seed", "calculator", "status", "best_energy",
                "gm_relaxation", "relaxations"):
        print(f"{key:14s} {info[key]}")
    print(f"{'target':14s} {info['config'].get('target_energy')}")
    if args.top:
        print_minima(store.structures(run_id), args.top, info)
    if args.out is None:
        return 0  # read-only: plots only where asked for
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"run{run_id}_energy.png"
    plot_energy(records_from_rows(store.steps(run_id)), path, info["config"].get("target_energy"))
    print(f"{'plot':14s} {path}")
    path = out / f"run{run_id}_probabilities.png"
    if plot_action_probabilities(store, run_id, path, args.points):
        print(f"{'probabilities':14s} {path}")
    return 0


def print_minima(structures: list[dict], n: int, info: dict) -> None:
    """The ``n`` lowest distinct minima: energy per atom and per formula unit, space group, first relaxation."""
    from rlcsp.composition import Composition
    from rlcsp.csp.symmetry import distinct_minima, space_group

    per_fu = Composition(info["config"]["composition"]).atoms_per_fu
    print(f"\n{'rank':>4} {'E (eV/atom)':>12} {'E (eV/f.u.)':>12} {'dE (meV/atom)':>13} {'atoms':>5} "
          f"{'space group (0.1 / 0.001)':28} {'found at':>8}")
    minima = distinct_minima(structures, n)
    for rank, s in enumerate(minima, 1):
        groups = f"{space_group(s['atoms'], 0.1)} / {space_group(s['atoms'], 1e-3)}"
        print(f"{rank:>4} {s['energy']:>12.6f} {s['energy'] * per_fu:>12.5f} "
              f"{1000 * (s['energy'] - minima[0]['energy']):>13.1f} {len(s['atoms']):>5} {groups:28} "
              f"{s['relaxation']:>8}")


def cmd_export(args: argparse.Namespace) -> int:
    from ase.io import write

    store, run_id = open_run(args)
    out = Path(args.out or f"run{run_id}")
    out.mkdir(parents=True, exist_ok=True)
    if args.format == "csv":
        from rlcsp.csp.report import RunOutput
        from rlcsp.csp.run import records_from_rows

        records = records_from_rows(store.steps(run_id))
        RunOutput(out, records).close()  # the columns and formats of the run's own steps.csv
        print(f"{len(records)} steps -> {out / 'steps.csv'}")
        return 0
    structures = store.structures(run_id)
    if args.top:
        from rlcsp.csp.symmetry import distinct_minima

        structures = distinct_minima(structures, args.top)
    what = f"the {len(structures)} lowest distinct" if args.top else f"all {len(structures)} distinct"
    if args.format == "extxyz":
        for s in structures:
            s["atoms"].info.update(energy_per_atom=s["energy"], relaxation=s["relaxation"])
        write(out / "structures.extxyz", [s["atoms"] for s in structures], format="extxyz")
        print(f"{what} structures (energy per atom and first relaxation in info) -> {out / 'structures.extxyz'}")
    else:
        for s in structures:
            write(out / f"relaxation{s['relaxation']:05d}.cif", s["atoms"], format="cif")
        print(f"{what} structures -> {out}/relaxation*.cif")
    return 0


def cmd_copy(args: argparse.Namespace) -> int:
    from rlcsp.db import Store, store_url
    from rlcsp.db.transfer import copy_runs

    # written: its runs get their uid there, to be known by it wherever they are copied
    source = open_store(store_url(args.source), write=True)
    new_file = "://" not in args.dest and not Path(args.dest).exists()
    dest = Store(f"sqlite:///{Path(args.dest).resolve()}" if new_file else store_url(args.dest))
    after = open_store(store_url(args.after)) if args.after else None
    try:
        n = copy_runs(source, dest, lean=args.lean, progress=True, after=after, runs=args.runs)
    finally:
        for store in (source, dest, after):
            if store is not None:
                store.close()
    print(f"{source.url} -> {dest.url}: {n['new']} new runs, {n['forward']} brought forward ({n['steps']} steps, "
          f"{n['structures']} structures, {n['policy_params']} policy versions), {n['current']} already as far, "
          f"{n['skipped']} composition-design runs not copied"
          + (f", {n['partial']} runs without the steps they count (a lean copy's) not copied" if n["partial"] else "")
          + (f", {n['gap']} runs whose rows begin after the destination's last (copy the deltas in order)"
             if n["gap"] else ""))
    return 0


def add_store_commands(sub) -> None:
    p = sub.add_parser("runs", help="list stored runs (read-only)")
    p.add_argument("--db", help=DB_HELP + "; default: RLCSP_DB_URL, ./rlcsp.db and every runs/**/rlcsp.db")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("show", help="summary of one stored run, and its plots with --out (read-only)")
    p.add_argument("run", help=RUN_HELP)
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("--out", help="write the energy and policy plots into this folder")
    p.add_argument("--top", type=int, metavar="N", help="list the N lowest distinct minima (StructureMatcher) with "
                   "energy per atom and per formula unit, space group and the relaxation that first found each")
    p.add_argument("--points", type=int, default=3,
                   help="policy versions, spread over the run, at which a learning policy's move probabilities "
                        "are drawn against energy (default 3: first, middle, last)")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("export", help="export a stored run's structures or steps")
    p.add_argument("run", help=RUN_HELP)
    p.add_argument("--format", choices=["cif", "extxyz", "csv"], default="cif",
                   help="cif/extxyz: the run's distinct structures; csv: every step, as in steps.csv")
    p.add_argument("--top", type=int, metavar="N", help="only the N lowest distinct minima (StructureMatcher)")
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("--out", help="output folder (default: run<ID>)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("copy", help="copy runs into another store, or the steps it lacks of runs it holds: walkers "
                                    "travel to a machine without the shared database and back")
    p.add_argument("source", help=DB_HELP)
    p.add_argument("dest", help="the store to bring up to SOURCE: a URL, or an SQLite file (created if new)")
    p.add_argument("--lean", action="store_true",
                   help="only what the walkers need to go on: a finished run's row alone, no structures where "
                        "uniqueness needs none (FUSE's energy rule); a carry that comes back to SOURCE")
    p.add_argument("--after", metavar="OLDER", help="only what SOURCE added since OLDER, an earlier state of it: a "
                   "campaign's delta (copied in order into an empty store, the deltas make the whole store again)")
    p.add_argument("--runs", type=int, nargs="+", metavar="ID", help="only these runs of SOURCE (ids as `rlcsp "
                   "runs` lists them): walkers that travel in parts")
    p.set_defaults(func=cmd_copy)
