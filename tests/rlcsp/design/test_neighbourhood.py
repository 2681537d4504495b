"""Neighbours of labelled fillings: the moves by hand, and the env's pool on the elpasolite skeleton."""
from __future__ import annotations

import pytest

from rlcsp.design.fill import load_fill_script
from rlcsp.design.fill_env import SkeletonFillEnv
from rlcsp.design.neighbourhood import moves
from rlcsp.design.rewards import AnalyticEvaluator
from rlcsp.design.skeleton import make_skeleton

from ...conftest import ROOT


def test_moves_by_hand():
    # sites: cation, cation, anion; swaps only within a role, substitutions by the role's other elements
    out = moves(("Na", "K", "F"), [1, 1, -1], {1: ["Na", "K", "Li"], -1: ["F", "Cl"]})
    assert out == [("K", "Na", "F"), ("K", "K", "F"), ("Li", "K", "F"), ("Na", "Na", "F"), ("Na", "Li", "F"),
                   ("Na", "K", "Cl")]
    assert moves(("Na", "Na", "F"), [1, 1, -1], {1: ["Na"], -1: ["F"]}) == []  # no swap of equal elements


@pytest.fixture(scope="module")
def env():
    skeleton = make_skeleton(load_fill_script(ROOT / "inputs" / "elpasolite.py")["skeleton"])
    return SkeletonFillEnv(skeleton, AnalyticEvaluator(lambda s: 0.0))


def filled(env, seed: int = 0) -> tuple[str, ...]:
    """A filling the masks made: the last allowed element at every site."""
    _, info = env.reset(seed=seed)
    for _ in range(env.skeleton.n_sites):
        _, _, _, _, info = env.step(int(info["action_mask"].nonzero()[0][-1]))
    return tuple(env.species())


def test_valid_is_what_the_masks_allow(env):
    own = filled(env)
    assert env.valid(own)
    roles = env.roles.tolist()
    anion, cation = roles.index(-1), roles.index(1)
    assert not env.valid([*own[:anion], "Rb", *own[anion + 1:]])  # a cation on an anion site
    assert not env.valid([*own[:cation], "He", *own[cation + 1:]])  # a noble gas
    assert not env.valid([*own[:anion], "O", *own[anion + 1:]])  # O2- for F-: no longer charge-neutral
    assert not env.valid(own[:-1])


def test_the_pool_holds_valid_unlabelled_distinct_neighbours_of_the_hits_nearest_the_target(env):
    sk = env.skeleton
    own = filled(env, seed=1)
    hood = env.neighbourhood(seeds=1)
    labels = {sk.canonical(own): 1.0, ("far",) * sk.n_sites: 9.0, ("failed",) * sk.n_sites: None}
    pool = hood.pool(labels, 1.12)
    assert pool and all(env.valid(p) for p in pool)
    assert len(set(pool)) == len(pool) and all(sk.canonical(p) == p for p in pool)
    assert sk.canonical(own) not in pool
    one_move = {sk.canonical(m) for m in moves(own, env.roles.tolist(), hood.elements) if env.valid(m)}
    assert set(pool) == one_move - set(labels)  # every valid move of the one seed, once up to symmetry
    assert hood.pool({**labels, pool[0]: 2.0}, 1.12)[0] != pool[0]  # a labelled neighbour leaves the pool
    assert len(env.neighbourhood(seeds=1, limit=3).pool(labels, 1.12)) == 3
