"""Running GULP: finding it as ASE does, ASE's calculator for single points, and FUSE's staged relaxer.

GULP is found the way ASE finds it (``ASE_GULP_COMMAND="gulp < PREFIX.gin > PREFIX.got"``, ASE's config
file, or ``gulp`` on PATH), so one setting serves ASE and rlcsp. Unlike FUSE, every relaxation runs in its
own temporary directory under one wall-clock timeout, never mutates the caller's option lists, and reports
failures as typed :class:`RelaxResult` values rather than 1e20 energies.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ase import Atoms

from rlcsp.calculators.processes import die_with_parent, kill_process_group
from rlcsp.calculators.gulp.files import PREFIX, GulpOutput, check_periodic, parse_dump, parse_gout, write_gin
from rlcsp.calculators.library import DEFAULT_LIBRARY, load_library
from rlcsp.calculators.relax import FailureReason, Relaxer, RelaxResult, failed, min_distance
from rlcsp.exceptions import CalculatorFailed, CalculatorNotFound, ConfigError, InvalidStructure, LibraryError

# FUSE's staged relaxation (fuse.md 3.4): a short conjugate-gradient stage, then a long L-BFGS one. FUSE's
# `time` lines (one misspelt "minuets") are dropped: the driver's timeout_s is the only time limit.
FUSE_KEYWORDS = ("opti conj conp c6", "opti lbfgs conp c6")
FUSE_OPTIONS = (("maxcyc 50", "stepmax 0.1"), ("maxcyc 1500", "lbfgs_order 5000"))

_TEMPLATE = "{} < PREFIX.gin > PREFIX.got"

HOW_TO_POINT_AT_GULP = (
    "Install GULP (https://gulp.curtin.edu.au), then do one of: put the `gulp` executable on PATH; "
    'set ASE_GULP_COMMAND="/path/to/gulp < PREFIX.gin > PREFIX.got" (ASE\'s convention, also read from the '
    "[environment] section of ASE's config file); add `[gulp]` with `command = /path/to/gulp` to ASE's config "
    "(~/.config/ase/config.ini or $ASE_CONFIG_PATH); or pass command=... to GulpRelaxer. GULP_LIB is not needed "
    "for rlcsp's library (rlcsp hands GULP the library file itself); set it only for libraries named without a path."
)


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
            check_periodic(atoms)
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
                                start_new_session=True, preexec_fn=die_with_parent, text=True)
        try:
            console, _ = proc.communicate(timeout=remaining)
        except subprocess.TimeoutExpired:
            kill_process_group(proc)
            raise _StageFailed(FailureReason.TIMEOUT,
                               f"GULP exceeded the {self.timeout_s} s timeout in {stage.name}") from None
        except BaseException:  # e.g. Ctrl-C: GULP runs in its own session, so it would not see the signal
            kill_process_group(proc)
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
