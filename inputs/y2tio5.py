"""Y2TiO5 with FUSE's lib2.lib Buckingham potentials (Zamaraeva et al. 2023): GM Pnma, 32 atoms, -32.682202 eV/atom."""
from rlcsp.run import main_for_script

CONFIG = {
    "composition": {"Y": [2, +3], "Ti": [1, +4], "O": [5, -2]},
    "library": "lib2.lib",
    "max_atoms": 50,
    "budget": 2000,
    "initial_population": 100,
    "target_energy": -32.682202,
}

if __name__ == "__main__":
    raise SystemExit(main_for_script(CONFIG))
