"""GULP support, tested on real GULP outputs recorded elsewhere (shared/data/gulp_runs, see its SOURCES.md).

No GULP binary exists here. The relaxer's plumbing (stages, temp dirs, timeout) is driven by small scripts
set as ASE_GULP_COMMAND that replay those recorded outputs; they never compute anything themselves.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import ase.config
import numpy as np
import pytest
from ase import Atoms
from ase.config import Config

from rlcsp.calculators.gulp import (FUSE_KEYWORDS, FUSE_OPTIONS, GulpRelaxer, find_gulp_command, gulp_calculator,
                              parse_dump, parse_gout, write_gin)
from rlcsp.calculators.library import DEFAULT_LIBRARY
from rlcsp.calculators.relax import FailureReason
from rlcsp.exceptions import CalculatorFailed, CalculatorNotFound, ConfigError, InvalidStructure, LibraryError

FUSE_FINAL = -158.58354625
FUSE_CELL = [3.955151, 3.955121, 3.955194, 90.000021, 90.000010, 90.000440]


@pytest.fixture
def runs(shared_data: Path) -> Path:
    return shared_data / "gulp_runs"


@pytest.fixture
def fuse_start(runs: Path) -> Atoms:
    """The unrelaxed SrTiO3 cell of FUSE's recorded run, read from its gulp.gin."""
    return parse_dump((runs / "fuse_srtio3_opt_dump" / "gulp.gin").read_text()).atoms


@pytest.fixture
def no_ase_config(monkeypatch):
    """Ignore any ASE config file on this machine."""
    monkeypatch.setattr(ase.config, "cfg", Config())


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def _replay(tmp_path: Path, got: Path, res: Path | None) -> tuple[Path, Path]:
    """A stand-in for gulp that records its input, prints a recorded .got and writes a recorded dump."""
    log = tmp_path / "stdin.log"
    copy_dump = f'cp "{res}" "$(printf "%s\\n" "$gin" | awk \'$1=="dump"{{print $2}}\')"\n' if res else ""
    script = _script(tmp_path / "replay", f'gin=$(cat)\nprintf "%s\\n=====\\n" "$gin" >> "{log}"\n'
                                          f'{copy_dump}cat "{got}"\n')
    return script, log


# ------------------------------------------------------------------------------------------------- parsers


def test_parse_fuse_converged_run(runs):
    out = parse_gout((runs / "fuse_srtio3_opt_dump" / "gulp.got").read_text())
    assert out.energy == FUSE_FINAL
    assert out.initial_energy == -155.26373855
    assert out.is_optimisation and out.converged and out.termination == "Optimisation achieved"
    assert out.cycles == 23 and out.gnorm == 0.00013348 and out.errors == []
    np.testing.assert_allclose(out.cellpar, FUSE_CELL)
    atoms = out.atoms()
    assert atoms.get_chemical_symbols() == ["Sr", "O", "O", "Ti", "O"]
    np.testing.assert_allclose(atoms.cell.cellpar(), FUSE_CELL, atol=2e-6)
    np.testing.assert_allclose(atoms.get_scaled_positions()[1], [0.505370, 0.998500, 0.757001])


def test_parse_dump_restart_file(runs):
    dump = parse_dump((runs / "fuse_srtio3_opt_dump" / "temp.res").read_text())
    assert dump.keywords == "opti conp c6"
    assert dump.energy == -158.5835462535
    assert dump.atoms.get_chemical_symbols() == ["Sr", "O", "O", "Ti", "O"]
    np.testing.assert_allclose(dump.atoms.cell.cellpar(), FUSE_CELL, atol=1e-9)
    np.testing.assert_allclose(dump.atoms.get_scaled_positions()[4], [0.0053715, 0.4984971, 0.7569992])


def test_parse_single_point(runs):
    out = parse_gout((runs / "gulp_example23_tio2_single" / "example23.got").read_text())
    assert out.energy == -223.29876259
    assert not out.is_optimisation and out.converged  # a single point has nothing to converge
    assert out.cycles == 0 and out.gnorm is None and out.atoms() is None


def test_parse_symmetry_run(runs):
    text = (runs / "gulp_example1_alumina_opt" / "example1.got").read_text()
    out = parse_gout(text)
    assert out.energy == -315.17328096 and out.converged and out.cycles == 3
    assert out.initial_energy == -314.69811894  # only on a "Primitive unit cell = ... eV" line
    assert out.asymmetric_unit and out.symbols == ["Al", "O"]  # shells skipped
    assert out.atoms() is None  # asymmetric unit: not expanded
    without_final = "\n".join(line for line in text.splitlines() if "Final energy" not in line)
    assert parse_gout(without_final).energy == -315.17328096  # from the last Primitive unit cell line


def test_parse_failed_optimisation(runs):
    out = parse_gout((runs / "aiida_gulp_failed" / "opt_step_limit.gout").read_text())
    assert out.is_optimisation and not out.converged
    assert out.termination == "Too many failed attempts to optimise"
    assert out.energy == -23.26168512 and out.cycles == 17


def test_parse_input_error(runs):
    out = parse_gout((runs / "aiida_gulp_failed" / "empty_error.gout").read_text())
    assert out.errors == ["input file is empty"] and out.error == "input file is empty"
    assert out.energy is None and not out.converged


CONDITIONS = ("  **** Conditions for a minimum have not been satisfied. However ****\n"
              "  **** no lower point can be found - treat results with caution  ****\n"
              "  **** unless gradient norm is small (less than 0.1)             ****\n")


@pytest.mark.parametrize("old, new, energy, converged, termination", [
    ("Final energy =    -158.58354625 eV", "Final energy =    ************** eV", None, False, "Optimisation achieved"),
    ("Final energy =    -158.58354625 eV", "Final energy =     158.58354625 eV", 158.58354625, True,
     "Optimisation achieved"),
    ("  **** Optimisation achieved ****\n", CONDITIONS, FUSE_FINAL, False,
     "Conditions for a minimum have not been satisfied. However no lower point"),
])
def test_parse_edited_fuse_run(runs, old, new, energy, converged, termination):
    """GULP texts not in the recordings (overflow, positive energy, a 3-line verdict) spliced into a real run."""
    text = (runs / "fuse_srtio3_opt_dump" / "gulp.got").read_text()
    assert old in text
    out = parse_gout(text.replace(old, new))
    assert out.energy == energy and out.energy_overflow == (energy is None)
    assert out.converged == converged and out.termination.startswith(termination)


def test_parse_truncated_optimisation(runs):
    """GULP killed mid-run: the initial energy alone must not pass for a converged result."""
    text = (runs / "fuse_srtio3_opt_dump" / "gulp.got").read_text()
    out = parse_gout(text[:text.index("  Cycle:      5 ")])
    assert out.is_optimisation and not out.converged and out.termination == ""
    assert out.energy == -155.26373855 and out.cycles == 4


# -------------------------------------------------------------------------------------------------- writer


@pytest.mark.parametrize("stage", [0, 1])
def test_write_gin_for_fuse_stages(runs, fuse_start, stage):
    options = list(FUSE_OPTIONS[stage])
    gin = write_gin(fuse_start, FUSE_KEYWORDS[stage], options, "/abs/lib2.lib")
    write_gin(fuse_start, FUSE_KEYWORDS[stage], options, "/abs/lib2.lib")
    assert options == list(FUSE_OPTIONS[stage])  # FUSE appended a dump line to the shared list on every call
    lines = gin.splitlines()
    assert lines[0] == FUSE_KEYWORDS[stage]
    assert lines[-4:] == ["library /abs/lib2.lib", *FUSE_OPTIONS[stage], "dump gulp.res"]
    assert not any("time" in line for line in lines)
    back = parse_dump(gin)
    assert back.keywords == FUSE_KEYWORDS[stage]
    np.testing.assert_allclose(back.atoms.cell.cellpar(), fuse_start.cell.cellpar(), atol=1e-6)
    np.testing.assert_allclose(back.atoms.get_scaled_positions(), fuse_start.get_scaled_positions(), atol=1e-9)
    # Same coordinate rows as the gin FUSE wrote through ASE: "El core x y z", in the same order.
    recorded = (runs / "fuse_srtio3_opt_dump" / "gulp.gin").read_text().splitlines()
    rec_rows = [r.split() for r in recorded[recorded.index("fractional  1   ") + 1:][:5]]
    rows = [r.split() for r in lines[lines.index("fractional") + 1:][:5]]
    assert [r[:2] for r in rows] == [r[:2] for r in rec_rows]
    np.testing.assert_allclose([[float(v) for v in r[2:5]] for r in rows],
                               [[float(v) for v in r[2:5]] for r in rec_rows], atol=1e-7)


def test_write_gin_dump_once_and_shells(fuse_start):
    gin = write_gin(fuse_start, "opti conp", ["dump every 5 mine.res"], None, shells={"O"})
    assert "dump gulp.res" not in gin and "library" not in gin
    assert gin.count(" shel ") == 3 and "O  core 0.497601500 0.234482100 0.994697900\n" \
                                          "O  shel 0.497601500 0.234482100 0.994697900" in gin


def test_write_gin_refuses_molecules():
    with pytest.raises(InvalidStructure):
        write_gin(Atoms("O2", positions=[[0, 0, 0], [0, 0, 1.2]]), "opti", [], None)


def test_parse_dump_refuses_space_groups(runs):
    with pytest.raises(CalculatorFailed, match="space group"):
        parse_dump((runs / "gulp_example1_alumina_opt" / "example1.gin").read_text())


# ---------------------------------------------------------------------------------------- finding GULP


def test_no_gulp_says_how_to_configure(monkeypatch, tmp_path, no_ase_config):
    monkeypatch.delenv("ASE_GULP_COMMAND", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CalculatorNotFound, match="ASE_GULP_COMMAND") as err:
        GulpRelaxer()
    assert "PATH" in str(err.value) and "GULP_LIB" in str(err.value)
    with pytest.raises(CalculatorNotFound):
        gulp_calculator()


def test_command_that_names_a_missing_program(monkeypatch, no_ase_config):
    monkeypatch.setenv("ASE_GULP_COMMAND", "/nowhere/gulp < PREFIX.gin > PREFIX.got")
    with pytest.raises(CalculatorNotFound, match="/nowhere/gulp"):
        find_gulp_command()


def test_command_lookup_order(monkeypatch, tmp_path, no_ase_config):
    gulp = _script(tmp_path / "gulp", "")
    other = _script(tmp_path / "other", "")
    monkeypatch.delenv("ASE_GULP_COMMAND", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_gulp_command() == f"{gulp} < PREFIX.gin > PREFIX.got"
    ini = tmp_path / "config.ini"
    ini.write_text(f"[gulp]\ncommand = {other}\n")
    monkeypatch.setenv("ASE_CONFIG_PATH", str(ini))
    monkeypatch.setattr(ase.config, "cfg", Config.read())
    assert find_gulp_command() == f"{other} < PREFIX.gin > PREFIX.got"
    monkeypatch.setenv("ASE_GULP_COMMAND", f"{gulp} < PREFIX.gin > PREFIX.got")
    assert find_gulp_command() == f"{gulp} < PREFIX.gin > PREFIX.got"
    assert find_gulp_command(str(other)) == f"{other} < PREFIX.gin > PREFIX.got"


# ------------------------------------------------------------------------------------------------ relaxer


def test_relax_replays_recorded_fuse_run(monkeypatch, tmp_path, runs, fuse_start, no_ase_config):
    src = runs / "fuse_srtio3_opt_dump"
    script, log = _replay(tmp_path, src / "gulp.got", src / "temp.res")
    monkeypatch.setenv("ASE_GULP_COMMAND", f"{script} < PREFIX.gin > PREFIX.got")
    result = GulpRelaxer().relax_one(fuse_start)
    assert result.ok and result.failure is None
    assert result.energy_per_atom == pytest.approx(FUSE_FINAL / 5, abs=1e-12)
    assert result.steps == 2 * 23
    np.testing.assert_allclose(result.atoms.cell.cellpar(), FUSE_CELL, atol=1e-6)
    assert result.atoms.get_chemical_symbols() == fuse_start.get_chemical_symbols()
    first, second = log.read_text().split("=====\n")[:2]
    assert first.startswith("opti conj conp c6\n") and "maxcyc 50\nstepmax 0.1\n" in first
    assert "4.143587 5.735504 3.504932" in first and "library ../lib2.lib" in first
    assert second.startswith("opti lbfgs conp c6\n") and "maxcyc 1500\nlbfgs_order 5000\n" in second
    assert "3.955151 3.955121 3.955194" in second  # stage 2 starts from stage 1's dump


@pytest.mark.parametrize("got, reason, words", [
    ("aiida_gulp_failed/opt_step_limit.gout", FailureReason.NOT_CONVERGED, "Too many failed attempts"),
    ("aiida_gulp_failed/empty_error.gout", FailureReason.ENGINE_ERROR, "input file is empty"),
])
def test_relax_reports_gulp_failures(monkeypatch, tmp_path, runs, fuse_start, no_ase_config, got, reason, words):
    script, _ = _replay(tmp_path, runs / got, runs / "fuse_srtio3_opt_dump" / "temp.res")
    monkeypatch.setenv("ASE_GULP_COMMAND", f"{script} < PREFIX.gin > PREFIX.got")
    result = GulpRelaxer().relax_one(fuse_start)
    assert not result.ok and result.failure is reason and words in result.message


def test_parse_unreadable_output(runs):
    text = (runs / "fuse_srtio3_opt_dump" / "gulp.got").read_text()
    with pytest.raises(CalculatorFailed, match="unreadable GULP output"):
        parse_gout(text.replace("     2  O     c     0.505370", "     2  O     c     ********"))


@pytest.mark.parametrize("old, new, reason, words", [
    ("     2  O     c     0.505370", "     2  O     c     ********", FailureReason.ENGINE_ERROR, "unreadable"),
    ("Final energy =    -158.58354625 eV", "Final energy =    ************** eV", FailureReason.EXPLODED, "overflow"),
    ("Final energy =    -158.58354625 eV", "Final energy =   -1000.00000000 eV", FailureReason.EXPLODED, "ran away"),
])
def test_relax_rejects_bad_outputs(monkeypatch, tmp_path, runs, fuse_start, no_ase_config, old, new, reason, words):
    """The recorded run with one line edited: a garbled table, an overflowed or a runaway final energy."""
    src = runs / "fuse_srtio3_opt_dump"
    edited = tmp_path / "edited.got"
    edited.write_text(src.joinpath("gulp.got").read_text().replace(old, new))
    script, _ = _replay(tmp_path, edited, src / "temp.res")
    monkeypatch.setenv("ASE_GULP_COMMAND", f"{script} < PREFIX.gin > PREFIX.got")
    result = GulpRelaxer().relax_one(fuse_start)
    assert result.failure is reason and words in result.message and result.energy_per_atom is None


def test_relax_refuses_changed_atom_count(monkeypatch, tmp_path, runs, fuse_start, no_ase_config):
    src = runs / "fuse_srtio3_opt_dump"
    script, _ = _replay(tmp_path, src / "gulp.got", src / "temp.res")
    monkeypatch.setenv("ASE_GULP_COMMAND", f"{script} < PREFIX.gin > PREFIX.got")
    result = GulpRelaxer().relax_one(fuse_start.repeat((2, 1, 1)))
    assert result.failure is FailureReason.ENGINE_ERROR and "5 atoms" in result.message


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("keep", [False, True])
def test_relax_timeout_kills_gulp(monkeypatch, tmp_path, fuse_start, no_ase_config, keep):
    log = tmp_path / "sleep.log"
    script = _script(tmp_path / "sleepy", f'pwd > "{log}"\necho $$ >> "{log}"\nexec sleep 30\n')
    monkeypatch.setenv("ASE_GULP_COMMAND", f"{script} < PREFIX.gin > PREFIX.got")
    started = time.perf_counter()
    result = GulpRelaxer(timeout_s=0.5, keep_failed=keep).relax_one(fuse_start)
    assert time.perf_counter() - started < 1.5
    assert result.failure is FailureReason.TIMEOUT and result.energy_per_atom is None
    stage_dir, pid = log.read_text().split()
    for _ in range(50):
        if not _alive(int(pid)):
            break
        time.sleep(0.02)
    assert not _alive(int(pid))
    assert Path(stage_dir).exists() == keep
    if keep:
        assert Path(result.extra["workdir"]) == Path(stage_dir).parent
        assert (Path(stage_dir) / "gulp.gin").read_text().startswith("opti conj conp c6")
        shutil.rmtree(result.extra["workdir"])


def test_relax_refuses_before_running(monkeypatch, tmp_path, fuse_start, no_ase_config):
    script, log = _replay(tmp_path, tmp_path / "none.got", None)
    monkeypatch.setenv("ASE_GULP_COMMAND", f"{script} < PREFIX.gin > PREFIX.got")
    relaxer = GulpRelaxer()
    close = fuse_start.copy()
    close.positions[1] = close.positions[0] + [0.3, 0, 0]
    assert relaxer.relax_one(close).failure is FailureReason.TOO_CLOSE
    with pytest.raises(LibraryError, match="Fe"):
        relaxer.relax_one(Atoms("FeO", cell=[4, 4, 4], scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], pbc=True))
    assert not log.exists()
    with pytest.raises(ConfigError):
        GulpRelaxer(kwds=["opti conp", "single conp"], gulp_opts=[[], []])
    with pytest.raises(ConfigError):
        GulpRelaxer(kwds=["opti conp"], gulp_opts=FUSE_OPTIONS)


def test_gulp_calculator_single_point(monkeypatch, tmp_path, runs, fuse_start, no_ase_config):
    script, log = _replay(tmp_path, runs / "fuse_srtio3_opt_dump" / "gulp.got", None)
    monkeypatch.setenv("ASE_GULP_COMMAND", f"{script} < PREFIX.gin > PREFIX.got")
    atoms = fuse_start.copy()
    atoms.calc = gulp_calculator(directory=str(tmp_path / "calc"))
    assert atoms.get_potential_energy() == FUSE_FINAL  # ASE reads the last "Total lattice energy"
    assert f"library {DEFAULT_LIBRARY.resolve()}" in log.read_text()
    assert os.path.isfile(tmp_path / "calc" / "gulp.gin")
