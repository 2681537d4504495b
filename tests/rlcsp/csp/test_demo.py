"""The demo succeeds: a newcomer's first run finds a known GM and says which it is."""
from __future__ import annotations

import subprocess
import sys

from rlcsp.calculators import get_relaxer
from rlcsp.csp.config import load_script, make_config
from rlcsp.csp.search import Search

from ...conftest import ROOT


def test_the_demo_search_finds_the_perovskite_gm_in_at_least_9_of_10_seeds():
    relaxer = get_relaxer("lammps-buckingham")
    base = load_script(ROOT / "inputs" / "srtio3.py")
    found = [Search(make_config(base, seed=seed, policy="uniform"), relaxer=relaxer).run().walker.gm_relaxation
             for seed in range(1, 11)]
    assert sum(r is not None for r in found) >= 9, found


def test_rlcsp_demo_says_which_gm_it_found_and_a_rerun_changes_nothing(tmp_path):
    def demo():
        return subprocess.run([sys.executable, "-m", "rlcsp.cli", "demo", "--out", str(tmp_path / "demo")],
                              capture_output=True, text=True, timeout=600)

    first = demo()
    assert first.returncode == 0, first.stderr
    assert "found the GM (cubic perovskite, Pm-3m) at relaxation" in first.stdout
    summary = (tmp_path / "demo" / "summary.json").read_bytes()
    again = demo()
    assert again.returncode == 0 and "finished earlier" in again.stdout
    assert (tmp_path / "demo" / "summary.json").read_bytes() == summary
