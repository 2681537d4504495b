"""The installed package: one namespace, a front door, no environment side effects, no CLI inside the library."""
from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from .conftest import ROOT

LIBRARY = ["rlcsp", "calculators", "actions", "policies", "db", "inputs"]


def python(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_one_namespace_outside_the_source_tree(tmp_path):
    ok = python("import rlcsp.calculators, rlcsp.actions, rlcsp.policies, rlcsp.db, rlcsp.inputs, rlcsp.csp, "
                "rlcsp.design; print(rlcsp.calculators.get_relaxer.__module__)", tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "rlcsp.calculators"
    for bare in ("calculators", "actions", "policies", "db"):
        gone = python(f"import {bare}", tmp_path)
        assert gone.returncode != 0 and "ModuleNotFoundError" in gone.stderr, bare


def test_import_rlcsp_changes_no_environment_variable_and_shows_where_to_start(tmp_path):
    proc = python("import os, json; before = dict(os.environ); import rlcsp; help(rlcsp); "
                  "print(json.dumps(dict(os.environ) == before))", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("true")
    for name in ("Start here", "rlcsp.search(", "rlcsp.csp", "rlcsp.design", "rlcsp.calculators"):
        assert name in proc.stdout


def test_the_library_never_imports_the_cli():
    offenders = []
    for folder in LIBRARY:
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "cli.py" and folder == "rlcsp":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) and
                         node.module else [])
                if any(n == "rlcsp.cli" or n.startswith("rlcsp.cli.") for n in names):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    # input scripts may hand over to the CLI when run as programs, inside their __main__ block only
    assert all(o.startswith("inputs/") for o in offenders), offenders
    for script in (ROOT / "inputs").glob("*.py"):
        text = script.read_text()
        if "rlcsp.cli" in text:
            assert text.index("rlcsp.cli") > text.index('if __name__ == "__main__":'), script


def test_no_module_is_much_longer_than_400_lines():
    long = {str(p.relative_to(ROOT)): n for folder in LIBRARY for p in (ROOT / folder).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 430}
    assert not long, long


def test_a_library_resolves_by_name_from_any_folder(tmp_path, monkeypatch):
    from rlcsp import get_calculator

    monkeypatch.chdir(tmp_path)
    calc = get_calculator("lammps-buckingham", library="lib2.lib")
    assert calc.library.path == str(ROOT / "inputs" / "lib2.lib")


def test_the_front_door_runs_a_search_and_returns_its_best_structure(tmp_path):
    import rlcsp

    result = rlcsp.search({"composition": {"Y": [2, 3], "O": [3, -2]}, "max_atoms": 20, "target_energy": -27.394619},
                          out=tmp_path / "run", progress=False, budget=16, initial_population=6, seed=3)
    assert result.relaxations == 16 and (tmp_path / "run" / "summary.json").exists()
    calc = rlcsp.get_calculator("lammps-buckingham")
    atoms = result.best_atoms.copy()
    atoms.calc = calc
    assert atoms.get_potential_energy() / len(atoms) == pytest.approx(result.best_energy, abs=1e-6)
    assert result.gm_relaxation is None or result.gm_relaxation <= 16


def test_the_wheel_holds_one_top_level_package_with_its_data(tmp_path):
    import zipfile

    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    names = zipfile.ZipFile(next(tmp_path.glob("rlcsp-*.whl"))).namelist()
    assert {n.split("/")[0] for n in names} == {"rlcsp", next(n.split("/")[0] for n in names if ".dist-info" in n)}
    for path in ("rlcsp/calculators/__init__.py", "rlcsp/actions/double.py", "rlcsp/policies/fixed.py",
                 "rlcsp/db/store.py", "rlcsp/csp/search.py", "rlcsp/design/fill.py", "rlcsp/inputs/lib2.lib",
                 "rlcsp/inputs/structures/srtio3_perovskite.cif", "rlcsp/calculators/espresso/runner.py"):
        assert path in names, path
