"""Sr4Ti3O10 with FUSE's lib2.lib Buckingham potentials (Zamaraeva et al. 2023).

GM P4/mmm, 34 atoms, -29.984896 eV/atom.
"""

CONFIG = {
    "composition": {"Sr": [4, +2], "Ti": [3, +4], "O": [10, -2]},
    "library": "lib2.lib",
    "max_atoms": 50,
    "budget": 2000,
    "initial_population": 100,
    "target_energy": -29.984896,
}

if __name__ == "__main__":  # python inputs/sr4ti3o10.py [options] is rlcsp run inputs/sr4ti3o10.py [options]
    from rlcsp.cli import script_main

    raise SystemExit(script_main("run"))
