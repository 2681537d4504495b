"""The ``rlcsp`` command line."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from rlcsp.exceptions import RlcspError

ROOT = Path(__file__).resolve().parent.parent
BIXBYITE = ROOT / "inputs" / "structures" / "y2o3_bixbyite.cif"


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

    from calculators import get_calculator

    calc = get_calculator(args.calculator, **_options(args.option))
    for path in args.structures:
        atoms = read(path)
        atoms.calc = calc
        e = atoms.get_potential_energy()
        fmax = float(np.abs(atoms.get_forces()).max())
        print(f"{path}: {len(atoms)} atoms, E = {e / len(atoms):.6f} eV/atom, fmax = {fmax:.4f} eV/A")
    return 0


def cmd_relax(args: argparse.Namespace) -> int:
    from ase.io import read, write

    from calculators import get_relaxer

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


def cmd_demo(args: argparse.Namespace) -> int:
    """Evaluate bixbyite Y2O3, then perturb it and relax it back (the energy engine's end-to-end check)."""
    from ase.io import read

    from calculators import get_calculator, get_relaxer

    atoms = read(BIXBYITE)
    atoms.calc = get_calculator("lammps-buckingham")
    e_ref = atoms.get_potential_energy() / len(atoms)
    print(f"bixbyite Y2O3 ({len(atoms)} atoms): E = {e_ref:.6f} eV/atom (published GM -27.394619)")
    rng = np.random.default_rng(args.seed)
    trial = atoms.copy()
    trial.rattle(0.1, rng=rng)
    trial.set_cell(trial.cell @ (np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))), scale_atoms=True)
    t0 = time.perf_counter()
    result = get_relaxer("lammps-buckingham").relax([trial])[0]
    print(f"rattled 0.1 A + strained 3 %, relaxed with LAMMPS in {time.perf_counter() - t0:.2f} s "
          f"({result.steps} steps): E = {result.energy_per_atom:.6f} eV/atom, converged={result.converged}")
    return 0 if result.ok and abs(result.energy_per_atom - e_ref) < 1e-4 else 1


def cmd_calculators(args: argparse.Namespace) -> int:
    from calculators import available_calculators, get_engine

    for name in available_calculators():
        print(f"{name:20s} {get_engine(name).description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlcsp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="the main job on the embedded defaults")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=cmd_demo)

    for name, func, helptext in (("energy", cmd_energy, "single-point energies of structure files"),
                                 ("relax", cmd_relax, "relax structure files")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("structures", nargs="+")
        p.add_argument("--calculator", default="lammps-buckingham")
        p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                       help="calculator option, e.g. library=inputs/lib2.lib (repeatable)")
        if name == "relax":
            p.add_argument("--out", help="folder for relaxed CIFs")
        p.set_defaults(func=func)

    p = sub.add_parser("calculators", help="list the registered energy engines")
    p.set_defaults(func=cmd_calculators)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RlcspError as err:
        print(f"rlcsp: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
