"""Offline trajectories: real perov_5 rows become expert episodes with paper a's reward; cache; store; bad input."""
from __future__ import annotations

import csv
import io
import json
import math
import sys
import warnings

import numpy as np
import pytest
from ase.build import bulk
from pymatgen.io.cif import CifParser

from rlcsp.design.rewards import AnalyticEvaluator
from rlcsp.db import Store
from rlcsp.policies.dqn import DQNConfig, train
from rlcsp.exceptions import DatasetError, EmptyDataset, VocabularyMismatch
from rlcsp.design.fill_dataset import FillDataset, SkippedRows
from rlcsp.design.fill_env import PAPER_A_VOCABULARY, PAPER_B_VOCABULARY, SkeletonFillEnv

csv.field_size_limit(sys.maxsize)


def perov5_rows(shared_data, n: int) -> tuple[list[str], list[list[str]]]:
    with open(shared_data / "perov_5" / "val.csv", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, [row for _, row in zip(range(n), reader)]


def write_csv(path, header, rows):
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    return path


@pytest.fixture(scope="module")
def twenty(shared_data, tmp_path_factory):
    header, rows = perov5_rows(shared_data, 20)
    path = write_csv(tmp_path_factory.mktemp("perov") / "val20.csv", header, rows)
    return path, [dict(zip(header, r)) for r in rows], FillDataset.from_csv(path, cache=path.parent / "cache")


def test_twenty_perov5_rows_become_expert_episodes_with_paper_a_rewards(twenty):
    _, rows, dataset = twenty
    assert dataset.n_crystals == 20 and dataset.n_episodes == 100  # 5 sites each: five BFS roots 0..4
    transitions = dataset.transitions()
    assert len(transitions["action"]) == 500
    for e in range(dataset.n_episodes):
        g = dataset.episode_graph[e]
        row = rows[g]
        structure = CifParser(io.StringIO(row["cif"])).parse_structures(primitive=False)[0]
        true = [site.specie.symbol for site in structure]
        order = dataset.episode_order[e, :5].tolist()
        assert order == dataset.skeleton(g).bfs_order(e % 5) and order[0] == e % 5
        assert [PAPER_A_VOCABULARY[dataset.episode_types[e, s]] for s in order] == [true[s] for s in order]
        expected = 1.0 * math.exp(-float(row["heat_ref"]) / 5.0) \
            + 10.0 * math.exp(-(float(row["ind_gap"]) - 1.12) ** 2 / 3.0)
        assert dataset.episode_reward[e] == pytest.approx(expected, rel=1e-12)
    # each transition's action is the true element at its focus; only the last step is rewarded
    for i in range(0, 500, 37):
        g, focus = transitions["graph"][i], transitions["focus"][i]
        assert transitions["action"][i] == dataset.species[g, focus]
        assert (transitions["reward"][i] != 0) == bool(transitions["done"][i])
    assert transitions["done"].sum() == 100 and np.all(transitions["target"] == np.float32(1.12))


def test_episodes_replay_in_the_env_action_space(twenty):
    """Walking the env with an episode's actions reproduces its states: the data speaks the env's language."""
    _, _, dataset = twenty
    transitions = dataset.transitions()
    e = 7  # crystal 1, BFS root 2
    g = dataset.episode_graph[e]
    env = SkeletonFillEnv(dataset.skeleton(g), AnalyticEvaluator(lambda s: 0.0), vocabulary=PAPER_A_VOCABULARY,
                          root=2, chemistry=False)  # paper a's masks, which its data was drawn under
    dataset.check_env(env)
    obs, info = env.reset(seed=0)
    steps = np.flatnonzero(transitions["episode"] == e)
    assert len(steps) == 5 and info["order"] == dataset.episode_order[e].tolist()
    for i in steps:
        assert np.array_equal(obs["node_types"], transitions["types"][i]) and obs["focus"] == transitions["focus"][i]
        assert info["action_mask"][transitions["action"][i]]
        obs, reward, done, _, info = env.step(transitions["action"][i])
        assert np.array_equal(obs["node_types"], transitions["next_types"][i])
        assert obs["focus"] == transitions["next_focus"][i] and done == bool(transitions["done"][i])
    assert done and env.species() == dataset.symbols(g)


def test_cache_is_reused_and_targets_are_one_value_or_drawn_per_episode(twenty, monkeypatch):
    path, rows, dataset = twenty
    manifests = list((path.parent / "cache").glob("*.json"))
    assert len(manifests) == 1
    manifest = json.loads(manifests[0].read_text())
    assert manifest["format"] == "rlcsp-fill-dataset" and manifest["key"] in manifests[0].name
    assert manifest["arrays"]["episode_order"]["shape"] == [100, 5]
    monkeypatch.setattr("rlcsp.design.fill_dataset.make_skeleton", lambda *a, **k: pytest.fail("rebuilt from the CSV"))
    drawn = FillDataset.from_csv(path, cache=path.parent / "cache", targets=(0.5, 3.0), seed=4)
    assert np.array_equal(drawn.edges, dataset.edges) and np.array_equal(drawn.episode_types, dataset.episode_types)
    assert np.all((drawn.episode_target >= 0.5) & (drawn.episode_target <= 3.0))
    assert len(np.unique(drawn.episode_target)) == 100
    again = FillDataset.from_csv(path, cache=path.parent / "cache", targets=(0.5, 3.0), seed=4)
    assert np.array_equal(again.episode_target, drawn.episode_target)  # seeded
    e = 13
    row = rows[drawn.episode_graph[e]]
    p_hat = drawn.episode_target[e]
    assert drawn.episode_reward[e] == pytest.approx(math.exp(-float(row["heat_ref"]) / 5)
                                                    + 10 * math.exp(-(float(row["ind_gap"]) - p_hat) ** 2 / 3))
    transitions = drawn.transitions()
    assert np.array_equal(transitions["target"], drawn.episode_target[transitions["episode"]].astype(np.float32))


def test_unreadable_cifs_are_skipped_and_counted(shared_data, tmp_path):
    header, rows = perov5_rows(shared_data, 5)
    cif = header.index("cif")
    rows[1][cif] = "data_broken\n_cell_length_a 4.0\n"
    rows[3][cif] = "not a cif at all"
    with pytest.warns(SkippedRows, match=r"skipped 2 of 5 crystals: 2 unreadable structure"):
        dataset = FillDataset.from_csv(write_csv(tmp_path / "bad.csv", header, rows))
    assert dataset.n_crystals == 3 and list(dataset.ids) == [rows[i][header.index("material_id")] for i in (0, 2, 4)]


def test_an_empty_dataset_is_a_typed_error(shared_data, tmp_path):
    header, rows = perov5_rows(shared_data, 2)
    with pytest.raises(EmptyDataset, match="no crystal became a trajectory"):
        FillDataset.from_csv(write_csv(tmp_path / "empty.csv", header, []))
    for row in rows:
        row[header.index("cif")] = "garbage"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedRows)
        with pytest.raises(EmptyDataset, match="unreadable structure"):
            FillDataset.from_csv(write_csv(tmp_path / "garbage.csv", header, rows))


def test_an_env_or_vocabulary_that_does_not_match_is_a_typed_error(twenty, tmp_path):
    path, _, dataset = twenty
    env = SkeletonFillEnv(dataset.skeleton(0), AnalyticEvaluator(lambda s: 0.0), vocabulary=PAPER_B_VOCABULARY)
    with pytest.raises(VocabularyMismatch, match="dataset only: .*'Cd'"):
        dataset.check_env(env)
    reordered = tuple(reversed(PAPER_A_VOCABULARY))
    with pytest.raises(VocabularyMismatch, match="same elements in another order"):
        dataset.check_vocabulary(reordered, "checkpoint")
    with pytest.warns(SkippedRows, match="20 element outside the vocabulary"):
        with pytest.raises(EmptyDataset):
            FillDataset.from_csv(path, vocabulary=PAPER_B_VOCABULARY)


SCRIPT = '''
from ase.build import bulk

FILL = {"skeleton": bulk("NaCl", "rocksalt", a=5.6, cubic=True), "target": 0.7, "vocabulary": ["Li", "Na", "F", "Cl"]}
'''


def test_episodes_logged_by_an_online_agent_become_trajectories(tmp_path):
    script = tmp_path / "rocksalt.py"
    script.write_text(SCRIPT)
    store = Store(f"sqlite:///{tmp_path / 'rlcsp.db'}")
    run_id = store.create_run({"kind": "fill", "script": str(script), "target": 0.7}, "fill-rocksalt", "rocksalt",
                              "random", 0, "analytic", "test")
    env = SkeletonFillEnv(bulk("NaCl", "rocksalt", a=5.6, cubic=True),
                          AnalyticEvaluator(lambda s: s.count("Li") / 8), vocabulary=("Li", "Na", "F", "Cl"))
    train(env, DQNConfig(seed=0, agent="random"), 6, tmp_path / "online", store=store, run_id=run_id)
    logged = store.episodes(run_id)
    dataset = FillDataset.from_store(store, [run_id], orderings=2)
    assert dataset.vocabulary == ("Li", "Na", "F", "Cl") and dataset.n_episodes == 12
    for e in range(12):
        episode = logged[e // 2]
        assert dataset.symbols(0, dataset.episode_types[e]) == episode["species"]
        assert dataset.episode_reward[e] == episode["reward"] == episode["species"].count("Li") / 8
        assert dataset.episode_target[e] == 0.7
    assert dataset.transitions()["reward"].sum() == pytest.approx(2 * sum(e["reward"] for e in logged), rel=1e-6)
    with pytest.raises(VocabularyMismatch, match="lacks"):
        FillDataset.from_store(store, [run_id], vocabulary=("Li", "Na", "F"))
    with pytest.warns(SkippedRows, match="6 episodes"):  # no gap or E_form logged: paper a's reward cannot be made
        with pytest.raises(EmptyDataset):
            FillDataset.from_store(store, [run_id], targets=1.12)
    other = store.create_run({"kind": "search"}, "y2o3", "Y2O3", "uniform", 0, "gulp", "test")
    with pytest.raises(DatasetError, match="not a fill run"):
        FillDataset.from_store(store, [other])
    store.close()
