"""Running pw.x: its command line, one deadline per request, killing pw.x's whole session, and retries.

Every pw.x run gets a fresh temporary directory (kept on failure) and a session of its own, so that a
timeout or Ctrl-C kills the launcher and every MPI rank, not just the first process. :func:`run_dft` ties
it together: it answers from the cache when it can, retries the failures that have a known cure, records
every run in the cache, and returns a typed result instead of raising.
"""
from __future__ import annotations

import copy
import math
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.espresso import Espresso, EspressoProfile

from rlcsp.calculators.espresso.cache import DftCache
from rlcsp.calculators.espresso.inputs import DftSettings, MissingPseudopotential, PwInputs, resolve_inputs
from rlcsp.calculators.espresso.results import (HOW_TO_GET_PW, DftOutcome, DftResult, classify_output, read_output,
                                                scf_stalled)
from rlcsp.calculators.processes import die_with_parent, kill_process_group
from rlcsp.exceptions import CalculatorNotFound, InvalidStructure

LAUNCHERS = ("mpirun", "mpiexec", "srun")


class _PwTimeout(Exception):
    pass


def _session_members(sid: int) -> list[int]:
    """Every process of session ``sid`` (Linux /proc): mpirun's ranks may leave its process group."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[3]) == sid:
                pids.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return pids


def kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL pw.x, its launcher and every rank: the whole session that ``start_new_session`` made."""
    for pid in _session_members(proc.pid):
        if pid != proc.pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    kill_process_group(proc)


class _Profile(EspressoProfile):
    """ASE's profile with what its check_call lacks: a deadline, a session of its own, single-threaded BLAS."""

    def __init__(self, command: str, pseudo_dir: Path, timeout_s: float):
        super().__init__(command=command, pseudo_dir=pseudo_dir)
        self.timeout_s = timeout_s
        self.returncode: int | None = None

    def run(self, directory: Path, inputfile: str | None, outputfile: str, errorfile: str | None = None,
            append: bool = False) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with open(directory / outputfile, "wb") as out, open(directory / (errorfile or "pw.err"), "wb") as err:
            proc = subprocess.Popen(self.get_command(inputfile), cwd=directory, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, env=env, start_new_session=True,
                                    preexec_fn=die_with_parent)
            try:
                self.returncode = proc.wait(timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                kill_session(proc)
                raise _PwTimeout from None
            except BaseException:  # e.g. Ctrl-C: pw.x runs in its own session and would not see it
                kill_session(proc)
                raise


@dataclass
class PwRunner:
    """How pw.x runs; none of this is in the cache key.

    ``command`` is pw.x itself or a full launcher line; by default ``pw.x`` (or ASE's ``[espresso] command``),
    under ``mpirun -np nprocs`` when ``nprocs`` > 1 (with ``--allow-run-as-root`` for root). ``timeout_s``
    bounds a whole request, retries included. Temporary directories go under ``scratch`` (the system's
    temporary directory by default); a failed run's directory is kept when ``keep_failed``.
    ``launches`` counts pw.x starts, so callers can see what a cache saved.
    """

    command: str | None = None
    nprocs: int = 1
    timeout_s: float = 600.0
    scratch: str | None = None
    keep_failed: bool = True
    launches: int = 0

    def pw_command(self) -> str:
        """The command line to run pw.x; raises CalculatorNotFound (with how to fix it) when it cannot run."""
        import ase.config

        command = (self.command or ase.config.cfg.parser.get("espresso", "command", fallback=None)
                   or "pw.x").strip()
        try:
            words = shlex.split(command)
        except ValueError as err:
            raise CalculatorNotFound(f"cannot parse the pw.x command {command!r}: {err}. {HOW_TO_GET_PW}") from None
        if self.nprocs > 1 and os.path.basename(words[0]) not in LAUNCHERS:
            root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
            words = ["mpirun", *root, "-np", str(self.nprocs), *words]
        # The first word (pw.x or its launcher) and, behind a launcher, pw.x itself ("mpirun -np 2 pw.x -nk 2").
        for program in {words[0], *(w for w in words if os.path.basename(w).endswith("pw.x"))}:
            if shutil.which(program) is None:
                raise CalculatorNotFound(f"cannot run pw.x: {program!r} (in {shlex.join(words)!r}) is not an "
                                         f"executable or on PATH. {HOW_TO_GET_PW}")
        return shlex.join(words)


def _attempt(atoms: Atoms, inputs: PwInputs, runner: PwRunner, command: str, deadline: float,
             calculation: str) -> DftResult:
    """One pw.x run in a fresh directory, kept when it fails and the runner keeps failures."""
    started = time.perf_counter()
    timeout = f"pw.x exceeded the {runner.timeout_s} s timeout"
    if deadline <= started:  # a retry with no time left
        return DftResult(DftOutcome.TIMEOUT, timeout, key=inputs.key, inputs=inputs.description)
    if runner.scratch:
        Path(runner.scratch).mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="rlcsp-qe-", dir=runner.scratch))
    profile = _Profile(command, inputs.pseudo_dir, timeout_s=deadline - started)
    calc = Espresso(profile=profile, directory=workdir, **copy.deepcopy(inputs.espresso_kwargs))
    calc.write_inputfiles(atoms, ["energy", "forces", "stress"])
    try:
        runner.launches += 1
        calc.template.execute(workdir, profile)
    except _PwTimeout:
        result = DftResult(DftOutcome.TIMEOUT, f"{timeout} and was killed")
    except OSError as err:  # the program vanished between the check and the start
        result = DftResult(DftOutcome.PW_NOT_FOUND, f"cannot start pw.x: {err}. {HOW_TO_GET_PW}")
    else:
        output = workdir / "espresso.pwo"
        text = output.read_text(errors="replace") if output.is_file() else ""
        stderr = (workdir / "espresso.err").read_text(errors="replace")
        failure = classify_output(text, stderr, profile.returncode, calculation)
        try:
            if failure is None or failure[0] is DftOutcome.RELAX_NOT_CONVERGED:
                result = read_output(workdir, inputs, calculation, failure[0] if failure else DftOutcome.OK)
                result.message = failure[1] if failure else ""
            else:
                result = DftResult(*failure)
                result.scf_stalled = result.outcome is DftOutcome.SCF_NOT_CONVERGED and scf_stalled(text)
        except Exception as err:  # ASE's reader asserts on odd outputs; that is an engine failure
            result = DftResult(DftOutcome.ENGINE_ERROR, f"unreadable pw.x output: {type(err).__name__}: {err}")
    result.wall_s = time.perf_counter() - started
    result.key, result.inputs = inputs.key, inputs.description
    if result.ok or not runner.keep_failed:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        result.workdir = str(workdir)
        result.message += f" (pw.x files kept in {workdir})"
    return result


def _next_try(result: DftResult, settings: DftSettings, inputs: PwInputs, tried: list[DftOutcome]):
    """The settings of the retry for a curable failure, or None to give up."""
    outcome = result.outcome
    if outcome is DftOutcome.WRONG_CHARGE and outcome not in tried:
        return replace(settings, occupations="smearing", nspin=2, tot_magnetization=None)
    lower_mixing = replace(settings, mixing_beta=min(0.3, settings.mixing_beta / 2))
    if outcome is DftOutcome.SCF_NOT_CONVERGED and outcome not in tried:
        # a stalled SCF under fixed occupations is a metal's (scf_stalled): smeared at once, not after lower mixing
        stalled = result.scf_stalled and settings.occupations == "fixed"
        return replace(settings, occupations="smearing") if stalled else lower_mixing
    if outcome is DftOutcome.SCF_NOT_CONVERGED and tried.count(outcome) == 1:
        if settings.occupations == "fixed":
            # a metal, or a nearly degenerate gap edge, swaps states every cycle under fixed occupations
            return replace(settings, occupations="smearing")
        if settings.mixing_beta > lower_mixing.mixing_beta:  # smeared at once, and still not converged
            return lower_mixing
    if outcome is DftOutcome.TOO_FEW_BANDS and tried.count(outcome) < 2:
        return replace(settings, nbnd=math.ceil(1.5 * inputs.espresso_kwargs["input_data"]["nbnd"]) + 4)
    return None


def _check_structure(atoms: Atoms) -> None:
    if not len(atoms):
        raise InvalidStructure("empty structure")
    if not (np.isfinite(atoms.cell.array).all() and np.isfinite(atoms.positions).all()):
        raise InvalidStructure("non-finite cell or positions")
    if abs(atoms.cell.volume) < 1e-6:
        raise InvalidStructure("pw.x needs a 3D cell (a molecule goes in a box); this one has zero volume")


def run_dft(atoms: Atoms, settings: DftSettings | None = None, *, runner: PwRunner | None = None,
            cache: DftCache | None = None, calculation: str = "scf") -> DftResult:
    """Run pw.x (with retries for curable failures) and return a typed result; never raises for DFT failures.

    A cache hit with a reproducible outcome is returned without running pw.x (``from_cache`` True). Every
    pw.x run is put in the cache under its own inputs' key, and the final result under the request's key.
    Retries: wrong charge -> smearing + nspin 2 (gap marked approximate); SCF not converged -> lower
    mixing_beta, then smeared occupations as well (a metal, which fixed occupations cannot converge, then gets
    its gap of 0 and a gapped crystal its Kohn-Sham gap: a label like any other), or smeared at once when the
    SCF stalled (``scf_stalled``), then lower mixing; too few bands -> 1.5x bands, twice.
    """
    started = time.perf_counter()
    settings = settings or DftSettings()
    runner = runner or PwRunner()
    try:
        _check_structure(atoms)
        inputs = resolve_inputs(atoms, settings, calculation)
    except InvalidStructure as err:
        return DftResult(DftOutcome.INVALID_STRUCTURE, str(err), wall_s=time.perf_counter() - started)
    except MissingPseudopotential as err:
        return DftResult(DftOutcome.MISSING_PSEUDOPOTENTIAL, str(err), wall_s=time.perf_counter() - started)
    request_key = inputs.key
    if cache is not None and (hit := cache.get(request_key)) and DftOutcome(hit["outcome"]).cacheable:
        result = DftResult.from_record(hit)
        result.from_cache = True
        return result
    try:
        command = runner.pw_command()
    except CalculatorNotFound as err:
        return DftResult(DftOutcome.PW_NOT_FOUND, str(err), key=request_key, wall_s=time.perf_counter() - started)

    deadline = started + runner.timeout_s
    work, current, tried, records = atoms, settings, [], []
    while True:
        result = _attempt(work, inputs, runner, command, deadline, calculation)
        record = result.to_record()
        records.append(record)
        if cache is not None:
            cache.put(result.key, record)
        retry = _next_try(result, current, inputs, tried)
        tried.append(result.outcome)
        if retry is None:
            break
        if retry.nspin == 2 and current.nspin == 1 and not work.get_initial_magnetic_moments().any():
            # A fully polarised start: from 0.5 an H atom converged to a state 1 meV higher, gap 5.2 not 7.0 eV.
            work = atoms.copy()
            work.set_initial_magnetic_moments([1.0] * len(work))  # ASE writes it as starting_magnetization
        current = retry
        inputs = resolve_inputs(work, current, calculation)
    result.gap_approximate = DftOutcome.WRONG_CHARGE in tried and result.band_gap is not None
    result.retries, result.attempts = len(records) - 1, records
    result.key, result.wall_s = request_key, time.perf_counter() - started
    if cache is not None:
        cache.put(request_key, result.to_record())
    return result
