"""The Y2O3 bixbyite skeleton (Ia-3, 40-site primitive cell) from the FUSE reference set, for filling.

``structures/y2o3_bixbyite.cif`` is FUSE's Y2O3 global minimum under lib2.lib (Y2O3 / RLCSP / run 21 of
``shared/data/fuse_reference``; see structures/README.md). Forty sites make a long episode and a costly DFT
call, so this skeleton suits the gap-model reward.

    rlcsp fill inputs/y2o3_skeleton.py --agent dqn --reward gap-model --target 1.12 --episodes 500
"""
from __future__ import annotations

from pathlib import Path

FILL = {
    "skeleton": str(Path(__file__).resolve().parent / "structures" / "y2o3_bixbyite.cif"),
    "target": 1.12,
    "max_elements": 5,
    "dft": {"kpts": "gamma"},  # at the engine's 60 Ry, where ONCV gaps settle (bench/results/dft_cutoff.md)
}

if __name__ == "__main__":  # python inputs/y2o3_skeleton.py [options] is rlcsp fill inputs/y2o3_skeleton.py [options]
    from rlcsp.cli import script_main

    raise SystemExit(script_main("fill"))
