from __future__ import annotations

import numpy as np
import pytest

from rlcsp.calculators.library import DEFAULT_LIBRARY, GULP_COULOMB, load_library, parse_library
from rlcsp.exceptions import LibraryError


def test_lib2_parameters_match_fuse():
    lib = load_library()
    assert lib.charges[("Y", "core")] == 3.0 and lib.charges[("O", "core")] == -2.0
    assert lib.charge("Sr") == 2.0 and lib.charge("Ti") == 4.0
    osr = lib.pair("Sr", "O")
    assert (osr.A, osr.rho, osr.C, osr.rmin, osr.rmax) == (1952.39, 0.33685, 19.22, 1.2, 12.0)
    assert lib.pair("O", "O").C == 175.0
    assert lib.pair("Y", "O").A == 23000.0
    assert lib.pair("Y", "Y") is None  # no cation-cation short-range term
    assert lib.springs == {"Ba": 34.05}


def test_a_pairs_barrier_is_where_its_energy_peaks_before_the_buckingham_catastrophe():
    """lib2's O-O energy, A exp(-r/rho) - C/r^6 + k q q / r, has its derivative vanish at the barrier's top;
    closer in, -C/r^6 wins and the pair attracts. Y-O (no C) and Y-Y (Coulomb only) have no such peak."""
    lib = load_library()
    oo = lib.pair("O", "O")
    r = lib.barrier("O", "O")
    slope = lambda x: -oo.A / oo.rho * np.exp(-x / oo.rho) + 6 * oo.C / x**7 - GULP_COULOMB * 4.0 / x**2  # noqa: E731
    assert 1.35 < r < 1.38 and slope(r - 0.01) > 0 > slope(r + 0.01)
    assert lib.barrier("O", "Sr") == lib.barrier("Sr", "O") and 0.8 < lib.barrier("Sr", "O") < 0.9
    assert lib.barrier("Y", "O") == 0.0 and lib.barrier("Y", "Y") == 0.0


def test_recorded_fuse_library_parses_like_ours(shared_data):
    recorded = load_library(shared_data / "gulp_runs" / "fuse_srtio3_opt_dump" / "lib2.lib")
    ours = load_library(DEFAULT_LIBRARY)
    for a, b in (("O", "Sr"), ("O", "Ti"), ("O", "O"), ("Y", "O")):
        r, o = recorded.pair(a, b), ours.pair(a, b)
        assert (r.A, r.rho, r.C, r.rmin, r.rmax) == (o.A, o.rho, o.C, o.rmin, o.rmax)


def test_shell_model_species_is_rejected_with_its_line():
    lib = load_library()
    with pytest.raises(LibraryError, match=r"lib2.lib:\d+: Ba is a shell-model species"):
        lib.charge("Ba")


def test_missing_element_names_the_library():
    with pytest.raises(LibraryError, match="element Zr has no charge"):
        load_library().check_elements({"Zr", "O"})


def test_single_cutoff_means_rmax():
    lib = parse_library("species\nTi core 4\nO core -2\nbuck\nTi core O core 754.2 0.3879 0.0 10.0\n")
    term = lib.pair("Ti", "O")
    assert (term.rmin, term.rmax) == (0.0, 10.0)


@pytest.mark.parametrize(
    "text, where",
    [
        ("species\nO core -2\nbuk\nO core O core 1 0.3 0 12\n", ":3: unsupported or unknown library keyword 'buk'"),
        ("species\nO core -2\nbuck\nO core O core 1 0.3x 0 12\n", ":4: expected a number"),
        ("species\nO core -2\nbuck\nO core O core 1 0.3\n", ":4: buck line needs"),
        ("species\nQq core -2\n", ":2: 'Qq' is not an element symbol"),
        ("species\nO core -2\nlennard 12 6\nO core O core 1 2 0 12\n", ":3: unsupported"),
        ("buck\nO core O core 1 0.3 0 12\n", "no species block"),
    ],
)
def test_typos_and_unsupported_forms_name_the_line(text, where):
    with pytest.raises(LibraryError, match=where.replace("(", r"\(").replace(")", r"\)")):
        parse_library(text, "bad.lib")


def test_missing_file():
    with pytest.raises(LibraryError, match="not found"):
        load_library("/nonexistent/lib.lib")
