"""Sr4Ti3O10 with FUSE's lib2.lib Buckingham potentials (Zamaraeva et al. 2023): GM P4/mmm, 34 atoms, -29.984896 eV/atom."""
from rlcsp.run import main_for_script

CONFIG = {
    "composition": {"Sr": [4, +2], "Ti": [3, +4], "O": [10, -2]},
    "library": "lib2.lib",
    "max_atoms": 50,
    "budget": 2000,
    "initial_population": 100,
    "target_energy": -29.984896,
}

if __name__ == "__main__":
    raise SystemExit(main_for_script(CONFIG))
