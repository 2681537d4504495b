from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from ase.calculators.calculator import Calculator

from rlcsp.calculators import available_calculators, get_calculator, get_relaxer
from rlcsp.calculators.relax import Relaxer
from rlcsp.exceptions import UnknownName


def test_builtins_are_registered_as_entry_points():
    names = {ep.name for ep in entry_points(group="rlcsp.calculators")}
    assert {"lammps-buckingham", "gulp", "chgnet"} <= names
    assert {"lammps-buckingham", "gulp", "chgnet"} <= set(available_calculators())


def test_default_engine_and_library_option(tmp_path):
    calc = get_calculator("lammps-buckingham", library="inputs/lib2.lib")
    assert isinstance(calc, Calculator)
    assert isinstance(get_relaxer(), Relaxer)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UnknownName, match="valid names: chgnet, espresso, gulp, lammps-buckingham"):
        get_calculator("vasp")
    with pytest.raises(UnknownName, match="valid names: ase, lammps"):
        get_relaxer("lammps-buckingham", relaxer="gulp")
    with pytest.raises(UnknownName, match="optimizer"):
        get_relaxer("lammps-buckingham", relaxer="ase", stages=[__import__("calculators").Stage("Newton")])
