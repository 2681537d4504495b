"""Y2Ti2O7 with FUSE's lib2.lib Buckingham potentials (Zamaraeva et al. 2023).

GM pyrochlore Fd-3m, -35.153743 eV/atom.
"""

CONFIG = {
    "composition": {"Y": [2, +3], "Ti": [2, +4], "O": [7, -2]},
    "library": "lib2.lib",
    "max_atoms": 50,
    "budget": 2000,
    "initial_population": 100,
    "target_energy": -35.153743,
}

if __name__ == "__main__":  # python inputs/y2ti2o7.py [options] is rlcsp run inputs/y2ti2o7.py [options]
    from rlcsp.cli import script_main

    raise SystemExit(script_main("run"))
