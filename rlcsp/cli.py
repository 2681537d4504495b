"""rlcsp's command line: crystal structure searches from input scripts, policy comparisons, stored runs, and
skeleton filling for composition design. Every command has --help."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from rlcsp.exceptions import RlcspError
from rlcsp.csp.config import KEEP_STRUCTURES
from rlcsp.csp.quirks import PROFILES, QUIRKS
from rlcsp.inputs import INPUTS
from rlcsp.stored_runs import DB_HELP, RUN_HELP, add_store_commands, open_run

ENGINES = ("energy engine: lammps-buckingham (default), torch-buckingham (the same model, batched on CPU or GPU), "
           "gulp, chgnet or espresso")


def _options(pairs: list[str]) -> dict:
    """Parse repeated ``--option key=value`` into calculator keyword arguments."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise RlcspError(f"--option expects key=value, got {pair!r}")
        try:
            out[key] = int(value)
        except ValueError:
            try:
                out[key] = float(value)
            except ValueError:
                out[key] = value
    return out


def cmd_energy(args: argparse.Namespace) -> int:
    from ase.io import read

    from rlcsp.calculators import get_calculator

    calc = get_calculator(args.calculator, **_options(args.option))
    for path in args.structures:
        atoms = read(path)
        atoms.calc = calc
        e = atoms.get_potential_energy()
        fmax = float(np.abs(atoms.get_forces()).max())
        gap = calc.results.get("band_gap")
        print(f"{path}: {len(atoms)} atoms, E = {e / len(atoms):.6f} eV/atom, fmax = {fmax:.4f} eV/A"
              + ("" if gap is None else f", band gap = {gap:.3f} eV"))
    return 0


def cmd_relax(args: argparse.Namespace) -> int:
    from ase.io import read, write

    from rlcsp.calculators import get_relaxer

    relaxer = get_relaxer(args.calculator, **_options(args.option))
    structures = [read(p) for p in args.structures]
    for path, result in zip(args.structures, relaxer.relax(structures)):
        state = "converged" if result.converged else f"FAILED ({result.failure.value}: {result.message})"
        energy = "n/a" if result.energy_per_atom is None else f"{result.energy_per_atom:.6f} eV/atom"
        print(f"{path}: {energy}, {result.steps} steps, {result.wall_s:.2f} s, {state}")
        if args.out and result.ok:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            write(Path(args.out) / (Path(path).stem + "_relaxed.cif"), result.atoms)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from rlcsp.csp.config import load_script, make_config
    from rlcsp.csp.run import execute

    base = load_script(args.script)
    config = make_config(base, policy=args.policy, seed=args.seed, budget=args.budget,
                         calculator=args.calculator, initial_population=args.initial_population,
                         target_energy=args.target, fuse=args.fuse, quirks=args.quirks, without=args.without,
                         keep_structures=args.keep_structures)
    out = args.out or str(Path("runs") / f"{config.name}-{config.policy}-seed{config.seed}")
    command = " ".join(["rlcsp", "run", *sys.argv[2:]]) if sys.argv[1:2] == ["run"] else None
    summary = execute(config, out, progress=not args.quiet, command=command, db_url=args.db, resume=args.resume,
                      max_outage_s=args.max_outage, shared_policy=args.shared_policy, new_run=args.new_run)
    return 0 if summary["relaxations"] > 0 else 1


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the embedded defaults: SrTiO3 (inputs/srtio3.py) with the LAMMPS Buckingham engine, which
    finds the cubic perovskite GM in seconds; rerunning it shows the finished run."""
    return main(["run", str(INPUTS / "srtio3.py"), "--seed", str(args.seed), "--policy", args.policy,
                 "--out", args.out])


def cmd_compare(args: argparse.Namespace) -> int:
    from rlcsp.csp.compare import compare

    report = compare(args.script, args.policies, args.seeds, args.budget, out=args.out, db_url=args.db,
                     scheduler=args.scheduler, workers=args.workers,
                     mode={"fuse": args.fuse, "quirks": args.quirks, "without": args.without,
                           "keep_structures": args.keep_structures},
                     lockstep=args.lockstep, device=args.device, processes=args.walker_processes,
                     first_seed=args.first_seed)
    return 1 if report["missing"] else 0


# One PBE SCF of the 10-atom Y2O3 cell at 2x2x2 took 172 s on one core of this machine kind (bench/dft_cost.py);
# pw.x scales about as atoms^3 x k-points, which gives the up-front estimate below.
_DFT_COST = (172.0, 10, 8)


def cmd_dft(args: argparse.Namespace) -> int:
    """DFT-validate a run's lowest-energy structures; results are cached in the run's database."""
    from tqdm import tqdm

    from rlcsp.calculators.espresso import DftSettings, PwRunner, kpoint_mesh, run_dft

    store, run_id = open_run(args, write=True)
    best = sorted(store.structures(run_id), key=lambda s: s["energy"])[:args.top]
    runner = PwRunner(nprocs=args.nprocs, timeout_s=args.timeout)
    settings = DftSettings(kppa=args.kppa)
    seconds, atoms0, k0 = _DFT_COST
    for s in best:
        mesh = kpoint_mesh(s["atoms"], args.kppa)
        estimate = seconds * (len(s["atoms"]) / atoms0) ** 3 * (int(np.prod(mesh)) / k0)
        note = "" if estimate < args.timeout else f"; over --timeout {args.timeout:.0f} s: lower --kppa or raise it"
        print(f"relaxation {s['relaxation']}: {len(s['atoms'])} atoms, k-mesh {'x'.join(map(str, mesh))}, "
              f"about {estimate / 60:.0f} min on one core{note}")
    rows = []
    for s in tqdm(best, unit="structure", desc="pw.x"):
        rows.append((s, run_dft(s["atoms"], settings, runner=runner, cache=store)))
    print(f"{'relaxation':>10} {'formula':12} {'E model':>12} {'E DFT (eV/atom)':>16} {'gap (eV)':>9}  outcome")
    for s, result in rows:
        e = "" if result.energy is None else f"{result.energy / len(s['atoms']):.4f}"
        gap = "" if result.band_gap is None else f"{result.band_gap:.3f}"
        print(f"{s['relaxation']:>10} {s['atoms'].get_chemical_formula():12} {s['energy']:>12.6f} {e:>16} "
              f"{gap:>9}  {result.outcome.value}{' (cached)' if result.from_cache else ''} {result.message}")
    return 0


def cmd_calculators(args: argparse.Namespace) -> int:
    from rlcsp.calculators import available_calculators, get_engine

    for name in available_calculators():
        print(f"{name:20s} {get_engine(name).description}")
    return 0


def cmd_fill(args: argparse.Namespace) -> int:
    from rlcsp.design.fill import run_from_args

    return run_from_args(args.script, args)


def cmd_fill_eval(args: argparse.Namespace) -> int:
    from rlcsp.design.fill_eval_cli import run_from_args

    return run_from_args(args)


def add_mode_options(p: argparse.ArgumentParser) -> None:
    """--fuse VERSION, --quirks and --without: FUSE's loop, whole or one behaviour at a time (rlcsp.csp.quirks)."""
    p.add_argument("--fuse", choices=sorted(PROFILES),
                   help="run FUSE's own loop: 1.04 (the paper's Original runs), 1.06 (Uniform) or rl (FUSE_RL, its "
                        "RLCSP runs); default: "
                        "rlcsp's search")
    p.add_argument("--quirks", metavar="A,B",
                   help=f"switch on single FUSE behaviours by name: {', '.join(QUIRKS)}")
    p.add_argument("--without", metavar="A,B", help="switch off quirks of the --fuse profile, for ablations")
    p.add_argument("--keep-structures", choices=KEEP_STRUCTURES,
                   help="store every new relaxed structure (new, the default) or only each new best of the walker "
                        "(best: FUSE's energy uniqueness only; a campaign's small carry, bench/store_size.py)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlcsp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a search from an input script (inputs/y2o3.py, ...)")
    p.add_argument("script", help="input script with a CONFIG dict (inputs/y2o3.py, ...)")
    p.add_argument("--policy", help="move policy (original, uniform, random, ...)")
    p.add_argument("--seed", type=int, help="random seed: the same seed and inputs give the same trajectory")
    p.add_argument("--budget", type=int, help="relaxations, counting the initial population")
    p.add_argument("--initial-population", type=int,
                   help="random structures relaxed before the first move (counted in the budget)")
    p.add_argument("--calculator", help=ENGINES)
    p.add_argument("--target", type=float, help="target (GM) energy in eV/atom")
    add_mode_options(p)
    p.add_argument("--out", help="output folder (default runs/<name>-<policy>-seed<seed>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--db", help="database URL (default: RLCSP_DB_URL, else sqlite in the output folder)")
    p.add_argument("--resume", type=int, metavar="RUN_ID", help="continue a stored run from its last step")
    p.add_argument("--new-run", action="store_true",
                   help="start a new run in an --out folder that holds another search (its files move to run<ID>/)")
    p.add_argument("--shared-policy", metavar="ID",
                   help="share the learning policy with every walker naming this id in the same database")
    p.add_argument("--max-outage", type=float, default=600.0, metavar="SECONDS",
                   help="stop cleanly (steps kept locally) if the database stays unreachable this long")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="the main job on the embedded defaults: an SrTiO3 search that finds the cubic "
                                    "perovskite GM in seconds (inputs/srtio3.py)")
    p.add_argument("--seed", type=int, default=1, help="random seed of the search (default 1)")
    p.add_argument("--policy", default="uniform", help="move policy (default uniform)")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.set_defaults(func=cmd_demo)

    for name, func, helptext in (("energy", cmd_energy, "single-point energies of structure files"),
                                 ("relax", cmd_relax, "relax structure files")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("structures", nargs="+", help="structure files ASE can read (CIF, POSCAR, extxyz, ...)")
        p.add_argument("--calculator", default="lammps-buckingham",
                       help=ENGINES)
        p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                       help="calculator option, e.g. library=inputs/lib2.lib (repeatable)")
        if name == "relax":
            p.add_argument("--out", help="folder for relaxed CIFs")
        p.set_defaults(func=func)

    add_store_commands(sub)

    p = sub.add_parser("compare", help="run many seeds of several policies on Dask and compare time-to-GM")
    p.add_argument("script", help="input script with a CONFIG dict (inputs/y2o3.py, ...)")
    p.add_argument("--policies", nargs="+", required=True, metavar="POLICY",
                   help="policy names, a learning one optionally with ':baseline' (e.g. original ppo:value)")
    p.add_argument("--seeds", type=int, default=20, help="how many seeds per policy (default 20)")
    p.add_argument("--first-seed", type=int, default=0,
                   help="the first seed: --first-seed 1 --seeds 40 runs seeds 1..40 (default 0)")
    p.add_argument("--budget", type=int, default=2000, help="relaxations per walker, initial population included")
    p.add_argument("--db", help="database URL shared by all walkers (default: RLCSP_DB_URL, else sqlite in --out)")
    p.add_argument("--out", help="output folder (default runs/compare-<name>)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="existing Dask scheduler, e.g. tcp://host:8786 "
                                                         "(default: a local cluster)")
    p.add_argument("--workers", type=int, help="local worker processes (default: one per core; with --lockstep, "
                                               "1: every walker in this process, N: N shares of the walkers)")
    p.add_argument("--lockstep", action="store_true",
                   help="advance the walkers together in one process, their candidates relaxing side by side "
                        "(the relaxer's stream); with LAMMPS every walker's trajectory stays the one it has alone")
    p.add_argument("--device", help="relax the lockstep batches on this device, e.g. cuda (implies --lockstep; "
                                    "cpu: the script's engine as it is)")
    p.add_argument("--walker-processes", type=int, metavar="N",
                   help="run the lockstep walkers in N processes (building, settling and storing their candidates) "
                        "around this one's relaxer, so a GPU's batch stays full (implies --lockstep; default: all "
                        "in this process)")
    add_mode_options(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("dft", help="Quantum ESPRESSO energies and band gaps of a run's best structures")
    p.add_argument("run", help=RUN_HELP)
    p.add_argument("--top", type=int, default=3, help="how many of the lowest-energy distinct structures")
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("--kppa", type=float, default=100.0,
                   help="k-points per reciprocal atom (default 100: a 2x2x2 mesh for a 10-atom oxide, about 3 min)")
    p.add_argument("--nprocs", type=int, default=1, help="MPI ranks for pw.x")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per structure")
    p.set_defaults(func=cmd_dft)

    p = sub.add_parser("calculators", help="list the registered energy engines")
    p.set_defaults(func=cmd_calculators)

    from rlcsp.design.fill import add_arguments

    p = sub.add_parser("fill", help="an agent fills a crystal skeleton towards a target band gap "
                                    "(inputs/elpasolite.py, ...)")
    p.add_argument("script", help="skeleton script with a FILL dict (inputs/elpasolite.py, ...)")
    add_arguments(p)
    p.set_defaults(func=cmd_fill)

    from rlcsp.design.fill_eval_cli import add_arguments as add_fill_eval_arguments

    p = sub.add_parser("fill-eval", help="offline agents (random, BC, CQL, c-CQL) trained on one CSV split and "
                                         "evaluated on held-out skeletons (paper a's Table 1)")
    add_fill_eval_arguments(p)
    p.set_defaults(func=cmd_fill_eval)
    return parser


def script_main(command: str) -> int:
    """An input script run as a program: ``python inputs/y2o3.py --seed 3`` is ``rlcsp run inputs/y2o3.py --seed 3``
    (``command`` "run"), a skeleton script's is ``rlcsp fill ...`` ("fill")."""
    return main([command, sys.argv[0], *sys.argv[1:]])


def main(argv: list[str] | None = None) -> int:
    from rlcsp.threads import limit_blas_threads

    args = build_parser().parse_args(argv)
    limit_blas_threads()
    try:
        return args.func(args)
    except RlcspError as err:
        print(f"rlcsp: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
