"""Y2TiO5 with FUSE's lib2.lib Buckingham potentials (Zamaraeva et al. 2023): GM Pnma, 32 atoms, -32.682202 eV/atom."""

CONFIG = {
    "composition": {"Y": [2, +3], "Ti": [1, +4], "O": [5, -2]},
    "library": "lib2.lib",
    "max_atoms": 50,
    "budget": 2000,
    "initial_population": 100,
    "target_energy": -32.682202,
}

if __name__ == "__main__":  # python inputs/y2tio5.py [options] is rlcsp run inputs/y2tio5.py [options]
    from rlcsp.cli import script_main

    raise SystemExit(script_main("run"))
