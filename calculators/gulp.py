"""Real GULP: write ``.gin`` inputs, parse ``.got`` outputs and ``dump`` files, and relax in FUSE's two stages.

GULP is found the way ASE finds it (``ASE_GULP_COMMAND="gulp < PREFIX.gin > PREFIX.got"``, ASE's config
file, or ``gulp`` on PATH), so one setting serves ASE and rlcsp. Unlike FUSE, every call runs in its own
temporary directory under one wall-clock timeout, never mutates the caller's option lists, and reports
failures as typed :class:`RelaxResult` values rather than 1e20 energies.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from calculators.library import DEFAULT_LIBRARY, load_library
from calculators.relax import FailureReason, Relaxer, RelaxResult, failed, min_distance
from rlcsp.exceptions import CalculatorFailed, CalculatorNotFound, ConfigError, InvalidStructure, LibraryError

# FUSE's staged relaxation (fuse.md 3.4): a short conjugate-gradient stage, then a long L-BFGS one. FUSE's
# `time` lines (one misspelt "minuets") are dropped: the driver's timeout_s is the only time limit.
FUSE_KEYWORDS = ("opti conj conp c6", "opti lbfgs conp c6")
FUSE_OPTIONS = (("maxcyc 50", "stepmax 0.1"), ("maxcyc 1500", "lbfgs_order 5000"))
PREFIX = "gulp"  # file stem substituted for PREFIX in the command; also works with a fixed "gulp.gin" command
_TEMPLATE = "{} < PREFIX.gin > PREFIX.got"

HOW_TO_POINT_AT_GULP = (
    "Install GULP (https://gulp.curtin.edu.au), then do one of: put the `gulp` executable on PATH; "
    'set ASE_GULP_COMMAND="/path/to/gulp < PREFIX.gin > PREFIX.got" (ASE\'s convention, also read from the '
    "[environment] section of ASE's config file); add `[gulp]` with `command = /path/to/gulp` to ASE's config "
    "(~/.config/ase/config.ini or $ASE_CONFIG_PATH); or pass command=... to GulpRelaxer. GULP_LIB is not needed "
    "for rlcsp's library (rlcsp hands GULP the library file itself); set it only for libraries named without a path."
)


# ----------------------------------------------------------------------------------------------- input


def _check_periodic(atoms: Atoms) -> None:
    """GULP bulk runs need a non-empty 3D periodic cell; anything else cannot be written as a .gin."""
    if not len(atoms):
        raise InvalidStructure("empty structure")
    if not all(atoms.pbc):
        raise InvalidStructure("GULP bulk runs need a structure periodic in all three directions")
    if not (np.isfinite(atoms.cell.array).all() and np.isfinite(atoms.positions).all()):
        raise InvalidStructure("non-finite cell or positions")
    if abs(atoms.cell.volume) < 1e-6:
        raise InvalidStructure("singular cell (zero volume)")


def write_gin(atoms: Atoms, keywords: str, options: Sequence[str], library: str | None, title: str = "rlcsp",
              *, dump: str | None = f"{PREFIX}.res", shells: Iterable[str] = ()) -> str:
    """A GULP input in ASE's layout: charges come from the library's ``species``, so coordinate lines carry none.

    ``shells`` names elements that are core-shell species in the library: each gets a ``shel`` line on its core.
    ``options`` is read, never changed; ``dump`` is added unless an option already asks for one.
    """
    _check_periodic(atoms)
    if "\n" in keywords.strip():
        raise ConfigError(f"GULP keywords must be one line, got {keywords!r}")
    shells = set(shells)
    lines = [keywords.strip(), "title", title, "end", "cell",
             " ".join(f"{v:.6f}" for v in atoms.cell.cellpar()), "fractional"]
    for symbol, xyz in zip(atoms.get_chemical_symbols(), atoms.get_scaled_positions()):
        coords = " ".join(f"{v:.9f}" for v in xyz)
        lines.append(f"{symbol:<2} core {coords}")
        if symbol in shells:
            lines.append(f"{symbol:<2} shel {coords}")
    if library:
        lines.append(f"library {library}")
    lines.extend(options)
    if dump and not any(opt.split()[:1] == ["dump"] for opt in options):
        lines.append(f"dump {dump}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- output

_FINAL = re.compile(r"^\s*Final energy\s*=\s*(\S+)\s*eV")
# Without symmetry GULP prints "Total lattice energy = X eV"; with it, "Primitive unit cell = X eV" in a
# "Total lattice energy :" block (the kJ/mol block below it has other units, so the eV anchor skips it).
_TOTAL = re.compile(r"^\s*(?:Total lattice energy|Primitive unit cell)\s*=\s*(\S+)\s*eV")
_GNORM = re.compile(r"^\s*Final Gnorm\s*=\s*(\S+)")
_CYCLE = re.compile(r"^\s*Cycle:\s*(\d+)")
_BANNER = re.compile(r"^\s*\*{4}\s+(.*?)\s*\*{4}\s*$")  # "  **** Optimisation achieved ****"
_ERROR = re.compile(r"^\s*!!\s*ERROR\s*:?\s*(.*?)\s*$")
_OPT_HEADER = re.compile(r"^\*\s+optimise\s+-")  # GULP's echo of the opti keyword
_OPT_START = re.compile(r"Start of \w+ optimisation")
_LABEL = re.compile(r"([A-Z][a-z]?)\d*$")
_ACHIEVED = "Optimisation achieved"


def _number(token: str) -> float | None:
    """A GULP number, or None for a Fortran overflow field (``****``) or anything unreadable."""
    try:
        return float(token)
    except ValueError:
        return None


def _element(label: str) -> str | None:
    m = _LABEL.match(label)
    return m.group(1) if m and m.group(1) in chemical_symbols[1:] else None


@dataclass
class GulpOutput:
    """What one GULP run reported. Energies are eV per cell (the primitive cell for symmetry runs).

    ``converged`` means the run gave what it was asked for: an optimisation that printed "Optimisation
    achieved", or a single point (``is_optimisation`` False, nothing to converge) that printed an energy.
    Coordinates are cores only. For symmetry runs they are GULP's asymmetric unit (``asymmetric_unit``),
    which rlcsp does not expand, so :meth:`atoms` is None there.
    """

    energy: float | None = None
    initial_energy: float | None = None
    energy_overflow: bool = False
    is_optimisation: bool = False
    converged: bool = False
    termination: str = ""
    cycles: int = 0
    gnorm: float | None = None
    cellpar: np.ndarray | None = None
    lattice: np.ndarray | None = None
    symbols: list[str] = field(default_factory=list)
    scaled_positions: np.ndarray | None = None
    asymmetric_unit: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def error(self) -> str | None:
        return "; ".join(self.errors) or None

    def atoms(self) -> Atoms | None:
        """The final full cell, when GULP printed one (P1 runs); None otherwise."""
        if self.scaled_positions is None or self.asymmetric_unit or (self.lattice is None and self.cellpar is None):
            return None
        cell = self.lattice if self.lattice is not None else self.cellpar
        return Atoms(self.symbols, cell=cell, scaled_positions=self.scaled_positions, pbc=True)


def _table_rows(lines: list[str], start: int, header: bool) -> list[list[str]]:
    """Rows of the dashed table after lines[start]: past the rule below its header, if it has one."""
    body = 2 if header else 1
    rules, rows = 0, []
    for line in lines[start + 1:]:
        if line.strip().startswith("-----"):
            rules += 1
            if rules > body:
                break
        elif rules == body and line.strip():
            rows.append(line.split())
    return rows


def parse_gout(text: str) -> GulpOutput:
    """Parse a GULP standard output (``.got``/``.gout``) of one configuration."""
    out = GulpOutput()
    lines = text.splitlines()
    final_energy: str | None = None
    totals: list[str] = []
    banner: list[str] = []
    started = False  # GULP's "**** ... ****" verdict follows the optimisation cycles
    i = 0
    try:
        for i, line in enumerate(lines):
            if m := _FINAL.match(line):
                final_energy = m.group(1)
            elif m := _TOTAL.match(line):
                totals.append(m.group(1))
            elif m := _GNORM.match(line):
                out.gnorm = _number(m.group(1))
            elif m := _CYCLE.match(line):
                out.cycles = int(m.group(1))
            elif m := _ERROR.match(line):
                out.errors.append(m.group(1))
            elif _OPT_HEADER.match(line):
                out.is_optimisation = True
            elif _OPT_START.search(line):
                started = True
            elif (m := _BANNER.match(line)) and started and not out.termination:
                banner.append(m.group(1))
                if i + 1 >= len(lines) or not _BANNER.match(lines[i + 1]):
                    out.termination = " ".join(banner)
            elif "Cartesian lattice vectors (Angstroms)" in line:
                rows = [r.split() for r in lines[i + 1:i + 6] if r.strip()][:3]
                out.lattice = np.array([[float(v) for v in r[:3]] for r in rows])
            elif line.strip().startswith("Final cell parameters"):
                par = {r[0]: float(r[1]) for r in _table_rows(lines, i, header=False)}
                out.cellpar = np.array([par[k] for k in ("a", "b", "c", "alpha", "beta", "gamma")])
            elif "Final fractional coordinates of atoms" in line or "Final asymmetric unit coordinates" in line:
                out.asymmetric_unit = "asymmetric" in line
                cores = [r for r in _table_rows(lines, i, header=True) if r[2] == "c"]
                out.symbols = [_element(r[1]) or r[1] for r in cores]
                out.scaled_positions = np.array([[float(v) for v in r[3:6]] for r in cores])
    except (ValueError, KeyError, IndexError) as err:
        raise CalculatorFailed(f"unreadable GULP output at line {i + 1}: {lines[i].strip()!r} ({err})") from None
    # "Final energy" is the optimised energy; an overflowed one means no energy, not the last total line.
    chosen = final_energy if final_energy is not None else (totals[-1] if totals else None)
    if chosen is not None:
        out.energy = _number(chosen)
        out.energy_overflow = out.energy is None
    if totals:
        out.initial_energy = _number(totals[0])
    if out.errors:
        out.converged = False
    elif out.is_optimisation:
        out.converged = out.termination == _ACHIEVED and out.energy is not None
    else:
        out.converged = out.energy is not None
    return out


@dataclass
class GulpDump:
    """A GULP input or ``dump`` restart file (a dump is an input): first keyword line, structure, energy."""

    keywords: str
    atoms: Atoms
    energy: float | None  # the dump's ``totalenergy`` (eV per cell), None in a plain input


_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_FRAC_ROW = re.compile(rf"^\s*([A-Z][a-z]?\d*)\s+(?:(core|cor|c|shel|she|s|bcor|bshe)\s+)?{_NUM}\s+{_NUM}\s+{_NUM}\b")


def parse_dump(text: str) -> GulpDump:
    """Read the cell, the ``fractional`` cores and ``totalenergy`` of a GULP dump (or any P1 bulk input).

    Only P1 bulk files are read: a ``space`` group would leave just the asymmetric unit, so it is refused.
    """
    lines = text.splitlines()
    keywords, cellpar, symbols, frac, energy = "", None, [], [], None
    i = 0
    while i < len(lines):
        words = lines[i].split()
        head = words[0].lower() if words else ""
        if not words or head.startswith("#"):
            pass
        elif not keywords:
            keywords = " ".join(words)
        elif head == "space":
            raise CalculatorFailed("GULP file uses a space group; rlcsp reads only P1 (fractional, no space)")
        elif head == "cell":
            i += 1
            cellpar = [_number(v) for v in lines[i].split()[:6]] if i < len(lines) else []
            if len(cellpar) != 6 or None in cellpar:
                raise CalculatorFailed(f"unreadable cell in GULP file: {lines[i - 1:i + 1]!r}")
        elif head.startswith("frac"):
            while i + 1 < len(lines) and (m := _FRAC_ROW.match(lines[i + 1])):
                i += 1
                element = _element(m.group(1))
                if element is None:
                    raise CalculatorFailed(f"unknown element in GULP coordinate line {lines[i]!r}")
                if (m.group(2) or "core").lstrip("b").startswith("c"):  # cores only, as in parse_gout
                    symbols.append(element)
                    frac.append([float(v) for v in m.group(3, 4, 5)])
        elif head == "totalenergy":
            energy = _number(words[1])
        i += 1
    if cellpar is None or not symbols:
        raise CalculatorFailed("GULP file has no cell and fractional coordinates")
    return GulpDump(keywords, Atoms(symbols, cell=cellpar, scaled_positions=frac, pbc=True), energy)


# ------------------------------------------------------------------------------------------- the binary


def _as_template(command: str) -> str:
    """ASE's shell template; a bare program (e.g. from ``[gulp] command``) gets ASE's redirections."""
    return command if ("<" in command or "PREFIX" in command) else _TEMPLATE.format(command)


def find_gulp_command(command: str | None = None) -> str:
    """The shell command that runs GULP, with PREFIX for the file stem, found as ASE would find it.

    Order: ``command``; ``ASE_GULP_COMMAND`` in ASE's config ``[environment]``, then in the environment; the
    ``[gulp] command`` of ASE's config; ``gulp`` on PATH. Raises :class:`CalculatorNotFound` saying how to fix it.
    """
    import ase.config

    parser = ase.config.cfg.parser
    sources = [
        ("command=", command),
        ("ASE config [environment] ASE_GULP_COMMAND", parser.get("environment", "ASE_GULP_COMMAND", fallback=None)),
        ("ASE_GULP_COMMAND", os.environ.get("ASE_GULP_COMMAND")),
        ("ASE config [gulp] command", parser.get("gulp", "command", fallback=None)),
        ("PATH", shutil.which("gulp")),
    ]
    where, found = next(((w, c.strip()) for w, c in sources if c and c.strip()), (None, None))
    if found is None:
        raise CalculatorNotFound(f"GULP not found: no `gulp` on PATH and ASE_GULP_COMMAND is not set. "
                                 f"{HOW_TO_POINT_AT_GULP}")
    template = _as_template(shlex.quote(found) if where == "PATH" else found)
    try:
        program = shlex.split(template)[0]
    except (ValueError, IndexError):
        raise CalculatorNotFound(f"cannot parse the GULP command {found!r} (from {where}). "
                                 f"{HOW_TO_POINT_AT_GULP}") from None
    if shutil.which(program) is None:
        raise CalculatorNotFound(f"the GULP command {found!r} (from {where}) runs {program!r}, which is not an "
                                 f"executable file or on PATH. {HOW_TO_POINT_AT_GULP}")
    return template


def gulp_calculator(keywords: str = "conp gradients", options: Sequence[str] = (), library: str | None = None,
                    command: str | None = None, **kwargs):
    """ASE's own GULP calculator for single points, using our library and the same GULP lookup.

    The library goes in as an absolute ``library`` option, so ASE's GULP_LIB check is not triggered.
    """
    from ase.calculators.gulp import GULP

    lib = Path(library or DEFAULT_LIBRARY).resolve()
    load_library(lib)
    return GULP(keywords=keywords, options=[f"library {lib}", *options], library=None,
                command=find_gulp_command(command), **kwargs)


# ------------------------------------------------------------------------------------------- relaxation


class _StageFailed(Exception):
    def __init__(self, reason: FailureReason, message: str):
        super().__init__(message)
        self.reason = reason


def _kill(proc: subprocess.Popen) -> None:
    """Kill the whole process group: the shell of the command template, GULP, and any mpirun children."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


class GulpRelaxer(Relaxer):
    """FUSE's staged GULP relaxation: each stage starts from the previous stage's ``dump`` structure.

    Convergence is decided by the last stage (as in FUSE). ``timeout_s`` bounds the whole call; on expiry the
    GULP process group is killed. Each call works in a fresh temporary directory, kept only for failures
    when ``keep_failed`` (its path is then in ``result.extra['workdir']``).
    """

    name = "gulp"

    def __init__(self, kwds: Sequence[str] = FUSE_KEYWORDS, gulp_opts: Sequence[Sequence[str]] = FUSE_OPTIONS,
                 library: str | Path | None = None, *, command: str | None = None, timeout_s: float = 600.0,
                 keep_failed: bool = False, min_distance: float = 0.5, max_energy_drop: float = 50.0):
        if isinstance(kwds, str) or not kwds or len(kwds) != len(gulp_opts):
            raise ConfigError(f"need one options list per GULP stage: {len(kwds)} keyword lines, "
                              f"{len(gulp_opts)} option lists")
        if not any(word.startswith("opti") for word in kwds[-1].split()):
            raise ConfigError(f"the last GULP stage must optimise ('opti ...'), got {kwds[-1]!r}")
        self.stages = tuple((k.strip(), tuple(opts)) for k, opts in zip(kwds, gulp_opts))
        self.library_path = Path(library or DEFAULT_LIBRARY).resolve()
        self.library = load_library(self.library_path)
        self.command = find_gulp_command(command)
        self.timeout_s = timeout_s
        self.keep_failed = keep_failed
        self.min_distance = min_distance
        self.max_energy_drop = max_energy_drop

    def relax_one(self, atoms: Atoms) -> RelaxResult:
        started = time.perf_counter()
        unknown = sorted(set(atoms.get_chemical_symbols()) - self.library.elements)
        if unknown:
            raise LibraryError(f"{self.library_path} has no species for {', '.join(unknown)}; "
                               f"it defines {', '.join(sorted(self.library.elements))}")
        try:
            _check_periodic(atoms)
        except InvalidStructure as err:
            return failed(atoms, FailureReason.INVALID_STRUCTURE, str(err), started)
        if min_distance(atoms) < self.min_distance:
            return failed(atoms, FailureReason.TOO_CLOSE,
                          f"atoms closer than {self.min_distance} A; refusing to relax", started)
        workdir = Path(tempfile.mkdtemp(prefix="rlcsp-gulp-"))
        result = None
        try:
            result = self._relax_in(atoms, workdir, started)
        finally:
            if result is not None and result.failure is not None and self.keep_failed:
                result.extra["workdir"] = str(workdir)
                result.message += f" (GULP files kept in {workdir})"
            else:
                shutil.rmtree(workdir, ignore_errors=True)
        return result

    def _relax_in(self, atoms: Atoms, workdir: Path, started: float) -> RelaxResult:
        shutil.copyfile(self.library_path, workdir / self.library_path.name)
        shells = {el for el in atoms.get_chemical_symbols() if (el, "shel") in self.library.charges}
        n = len(atoms)
        current, steps, first, out = atoms, 0, None, None
        try:
            for i, (keywords, options) in enumerate(self.stages, start=1):
                stage = workdir / f"stage{i}"
                stage.mkdir()
                # The library copy sits one level up: a short relative path, since GULP truncates long lines.
                gin = write_gin(current, keywords, options, f"../{self.library_path.name}", shells=shells)
                (stage / f"{PREFIX}.gin").write_text(gin)
                out = self._run(stage, started)
                if first is None:
                    first = out
                steps += out.cycles
                current = self._structure(out, stage, atoms)
        except _StageFailed as err:
            return failed(atoms, err.reason, str(err), started, steps)
        energy = out.energy / n
        start = first.initial_energy / n if first.initial_energy is not None else None
        if start is not None and energy < start - self.max_energy_drop:
            return failed(current, FailureReason.EXPLODED,
                          f"energy ran away from {start:.3f} to {energy:.3f} eV/atom", started, steps)
        if min_distance(current) < self.min_distance:
            return failed(current, FailureReason.EXPLODED,
                          f"GULP moved atoms closer than {self.min_distance} A (collapse)", started, steps)
        return RelaxResult(
            atoms=current, energy_per_atom=energy, converged=out.converged, steps=steps,
            wall_s=time.perf_counter() - started,
            failure=None if out.converged else FailureReason.NOT_CONVERGED,
            message="" if out.converged else f"GULP did not converge: {out.termination or 'no termination message'}",
            extra={"gnorm": out.gnorm, "termination": out.termination},
        )

    def _run(self, stage: Path, started: float) -> GulpOutput:
        """Run GULP in ``stage`` within what is left of the timeout; parse and vet its output."""
        remaining = self.timeout_s - (time.perf_counter() - started)
        if remaining <= 0:
            raise _StageFailed(FailureReason.TIMEOUT, f"GULP exceeded the {self.timeout_s} s timeout")
        proc = subprocess.Popen(self.command.replace("PREFIX", PREFIX), shell=True, cwd=stage,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, text=True)
        try:
            console, _ = proc.communicate(timeout=remaining)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise _StageFailed(FailureReason.TIMEOUT,
                               f"GULP exceeded the {self.timeout_s} s timeout in {stage.name}") from None
        except BaseException:  # e.g. Ctrl-C: GULP runs in its own session, so it would not see the signal
            _kill(proc)
            raise
        got = stage / f"{PREFIX}.got"
        try:
            out = parse_gout(got.read_text(errors="replace") if got.is_file() else "")
        except CalculatorFailed as err:
            raise _StageFailed(FailureReason.ENGINE_ERROR, f"{err} in {stage.name}") from None
        if out.errors:
            raise _StageFailed(FailureReason.ENGINE_ERROR, f"GULP error in {stage.name}: {out.error}")
        if proc.returncode != 0:
            raise _StageFailed(FailureReason.ENGINE_ERROR,
                               f"GULP exited with status {proc.returncode} in {stage.name}: {console[-500:].strip()}")
        if out.energy_overflow:
            raise _StageFailed(FailureReason.EXPLODED, f"GULP energy overflowed (****) in {stage.name}")
        if out.energy is None:
            raise _StageFailed(FailureReason.ENGINE_ERROR, f"no energy in GULP output of {stage.name}")
        return out

    @staticmethod
    def _structure(out: GulpOutput, stage: Path, original: Atoms) -> Atoms:
        """The stage's final structure (dump file, else the output's final cell), in the caller's atom order."""
        dump = stage / f"{PREFIX}.res"
        try:
            final = parse_dump(dump.read_text()).atoms if dump.is_file() else out.atoms()
        except CalculatorFailed as err:
            raise _StageFailed(FailureReason.ENGINE_ERROR, f"{err} in {stage.name}") from None
        if final is None:
            raise _StageFailed(FailureReason.ENGINE_ERROR, f"GULP wrote no final structure in {stage.name}")
        if final.get_chemical_symbols() != original.get_chemical_symbols():
            raise _StageFailed(FailureReason.ENGINE_ERROR,
                               f"GULP returned {len(final)} atoms ({final.get_chemical_formula()}) for "
                               f"{len(original)} ({original.get_chemical_formula()}) in {stage.name}")
        result = original.copy()
        result.calc = None
        result.set_cell(final.cell, scale_atoms=False)
        result.set_scaled_positions(final.get_scaled_positions(wrap=False))
        return result
