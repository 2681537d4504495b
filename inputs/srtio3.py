"""SrTiO3 with FUSE's lib2.lib: the demo's search (``rlcsp demo``). GM the cubic perovskite Pm-3m, -31.716709 eV/atom.

Small cells (up to 20 atoms) and a short budget: measured by tests/rlcsp/csp/test_demo.py, the GM is found in at
least 9 of 10 seeds within the budget, in seconds on one core.
"""

CONFIG = {
    "composition": {"Sr": [1, +2], "Ti": [1, +4], "O": [3, -2]},
    "library": "lib2.lib",
    "max_atoms": 20,
    "budget": 200,
    "initial_population": 30,
    "target_energy": -31.716709,
    "reference": "structures/srtio3_perovskite.cif",
    "reference_name": "cubic perovskite",
}

if __name__ == "__main__":  # python inputs/srtio3.py [options] is rlcsp run inputs/srtio3.py [options]
    from rlcsp.cli import script_main

    raise SystemExit(script_main("run"))
