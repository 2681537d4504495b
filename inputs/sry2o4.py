"""SrY2O4 with FUSE's lib2.lib Buckingham potentials (Zamaraeva et al. 2023).

GM spinel-type Fd-3m, -24.428313 eV/atom.
"""

CONFIG = {
    "composition": {"Sr": [1, +2], "Y": [2, +3], "O": [4, -2]},
    "library": "lib2.lib",
    "max_atoms": 50,
    "budget": 2000,
    "initial_population": 100,
    "target_energy": -24.428313,
}

if __name__ == "__main__":  # python inputs/sry2o4.py [options] is rlcsp run inputs/sry2o4.py [options]
    from rlcsp.cli import script_main

    raise SystemExit(script_main("run"))
