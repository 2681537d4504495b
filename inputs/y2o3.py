"""Y2O3 with FUSE's lib2.lib Buckingham potentials (Zamaraeva et al. 2023): GM bixbyite, -27.394619 eV/atom."""

CONFIG = {
    "composition": {"Y": [2, +3], "O": [3, -2]},
    "library": "lib2.lib",
    "max_atoms": 80,
    "budget": 2000,
    "initial_population": 100,
    "target_energy": -27.394619,
}

if __name__ == "__main__":  # python inputs/y2o3.py [options] is rlcsp run inputs/y2o3.py [options]
    from rlcsp.cli import script_main

    raise SystemExit(script_main("run"))
