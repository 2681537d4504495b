"""Y2Ti2O7 with FUSE's lib2.lib Buckingham potentials (Zamaraeva et al. 2023): GM pyrochlore Fd-3m, -35.153743 eV/atom."""
from rlcsp.run import main_for_script

CONFIG = {
    "composition": {"Y": [2, +3], "Ti": [2, +4], "O": [7, -2]},
    "library": "lib2.lib",
    "max_atoms": 50,
    "budget": 2000,
    "initial_population": 100,
    "target_energy": -35.153743,
}

if __name__ == "__main__":
    raise SystemExit(main_for_script(CONFIG))
