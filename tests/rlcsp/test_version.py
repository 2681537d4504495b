"""Every stored run names the code that ran it, and a resumed run adds the code that continued it."""
from __future__ import annotations

import subprocess

from rlcsp import __version__
from rlcsp.db import Store
from rlcsp.version import ROOT, code_version, commit


def test_the_commit_is_the_checkouts_or_the_one_a_bare_tree_was_given(monkeypatch):
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    commit.cache_clear()
    assert commit().removesuffix("-dirty") == head and code_version() == f"{__version__}+{commit()}"
    monkeypatch.setenv("RLCSP_COMMIT", "abc1234")  # a device machine's tree has no history
    commit.cache_clear()
    assert code_version() == f"{__version__}+abc1234"
    commit.cache_clear()


def test_a_resumed_run_adds_the_code_that_continued_it(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'v.db'}")
    run_id = store.create_run({"x": 1}, "r", "Y2O3", "uniform", 0, "lammps-buckingham", "0.1.0+aaaaaaa")

    def version() -> str:
        return store.db.query("SELECT code_version FROM runs WHERE id = ?", (run_id,))[0][0]

    store.add_code_version(run_id, "0.1.0+aaaaaaa")
    assert version() == "0.1.0+aaaaaaa"
    store.add_code_version(run_id, "0.1.0+bbbbbbb")
    assert version() == "0.1.0+aaaaaaa > 0.1.0+bbbbbbb"
    for k in range(30):
        store.add_code_version(run_id, f"0.1.0+{k:07d}")
    versions = version().split(" > ")
    assert len(version()) <= 191 and versions[:2] == ["0.1.0+aaaaaaa", "..."] and versions[-1] == "0.1.0+0000029"
