"""Each of FUSE's quirks can be reproduced on its own: it changes its own site exactly as the FUSE profile that has
it does, and nothing else; and what a search reports as its settings is what its loop uses."""
from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from rlcsp.actions import MOVES, MoveContext
from rlcsp.csp.checks import CheckSettings, check_structure
from rlcsp.composition import Composition
from rlcsp.csp.config import load_script, make_config
from rlcsp.exceptions import ConfigError, InvalidMove, NotApplicable, UnknownName
from rlcsp.csp.genome import OFFSET_STYLES, Genome, Instructions, assemble, random_genome
from rlcsp.csp.quirks import PROFILES, QUIRKS, quirk_set, resolve
from rlcsp.csp.search import Search

from ...conftest import ROOT

OX = {"Y": 3, "Ti": 4, "Sr": 2, "O": -2}
Y2O3 = Composition.from_formula("Y2O3", OX)
Y2TI2O7 = Composition.from_formula("Y2Ti2O7", OX)
SRO = Composition.from_formula("SrO", OX)


def others(name: str) -> frozenset[str]:
    return frozenset(QUIRKS) - {name}


def attempt(move, genome: Genome, fuse_compatible, seed: int, comp: Composition = Y2TI2O7):
    ctx = MoveContext(comp, 50, fuse_compatible=quirk_set(fuse_compatible))
    try:
        return move.apply(genome, ctx, np.random.default_rng(seed))
    except (InvalidMove, NotApplicable) as exc:
        return type(exc)


def test_quirk_settings():
    assert quirk_set(False) == quirk_set(None) == frozenset()
    assert quirk_set(True) == quirk_set("all") == quirk_set(["all"]) == frozenset(QUIRKS)
    assert quirk_set("noop_moves, block_reversal") == {"noop_moves", "block_reversal"}
    with pytest.raises(UnknownName, match="lattice_redraw"):
        quirk_set(["noop_move"])


def test_profiles_are_quirk_sets_that_ablations_change_one_name_at_a_time():
    assert resolve() == frozenset()
    assert resolve("1.06") == PROFILES["1.06"] and "redraw_after_100" in PROFILES["1.06"]
    assert resolve("1.06", without="metropolis_global") == PROFILES["1.06"] - {"metropolis_global"}
    assert resolve(None, quirks="metropolis_global,rattle_seed_42") == {"metropolis_global", "rattle_seed_42"}
    assert PROFILES["1.04"] - PROFILES["1.06"] == {"sub_capped_moves", "redraw_each_attempt", "string_sizes",
                                                   "string_double", "string_overflow_redraw"}
    assert PROFILES["1.06"] - PROFILES["1.04"] == {"redraw_after_100", "move6_global_cells", "string_double_106"}
    assert PROFILES["1.04"] - PROFILES["rl"] == {"redraw_each_attempt"} and PROFILES["rl"] < PROFILES["1.04"]
    with pytest.raises(UnknownName, match="1.04"):
        resolve("1.05")
    with pytest.raises(ConfigError, match="exclude each other"):
        resolve("1.04", quirks="redraw_after_100")


def test_a_config_keeps_its_mode_and_refuses_unknown_or_retired_names():
    base = load_script(ROOT / "inputs" / "y2ti2o7.py")
    config = make_config(base, fuse="1.06", without="metropolis_global", quirks="sub_capped_moves")
    assert (config.fuse, config.quirks, config.without) == ("1.06", ["sub_capped_moves"], ["metropolis_global"])
    assert config.quirk_set == PROFILES["1.06"] - {"metropolis_global"} | {"sub_capped_moves"}
    assert config.label == "FUSE 1.06 +sub_capped_moves -metropolis_global"
    assert make_config(base).label == "default" and make_config(base).quirk_set == frozenset()
    with pytest.raises(ConfigError, match="unknown FUSE quirk 'typo'"):
        make_config(base, quirks="typo")
    with pytest.raises(ConfigError, match="retired"):
        make_config(base, fuse_compatible=True)
    search = Search(make_config(base, quirks=["sub_capped_moves"]), relaxer=object())
    assert not search.ctx.exact_fu_count and search.ctx.quirk("sub_capped_moves") and not search.ctx.quirk("noop_moves")
    assert Search(make_config(base, quirks=["uncapped_fus"]), relaxer=object()).ctx.exact_fu_count
    assert Search(make_config(base, quirks=["noop_moves"]), relaxer=object()).ctx.exact_fu_count


def test_cartesian_offsets_alone_change_only_gamma_120_assembly():
    rng = np.random.default_rng(3)
    genomes = [random_genome(Y2TI2O7, 50, rng, styles=OFFSET_STYLES) for _ in range(40)]
    hexagonal = [g for g in genomes if g.instructions.angles[2] == 120.0 and g.instructions.nc > 1]
    assert hexagonal
    for genome in genomes:
        alone = assemble(genome, ["cartesian_offsets"]).positions
        assert np.allclose(alone, assemble(genome, True).positions, equal_nan=True)
        rest = assemble(genome, others("cartesian_offsets")).positions
        assert np.allclose(rest, assemble(genome).positions, equal_nan=True)
    assert any(not np.allclose(assemble(g, ["cartesian_offsets"]).positions, assemble(g).positions, equal_nan=True)
               for g in hexagonal)


def test_random_genome_quirks_match_fuse_mode_draw_for_draw():
    generation = ["lattice_redraw", "uncapped_fus", "cartesian_offsets"]
    for seed in range(20):
        assert (random_genome(Y2O3, 80, np.random.default_rng(seed), fuse_compatible=generation)
                == random_genome(Y2O3, 80, np.random.default_rng(seed), fuse_compatible=True))
        assert (random_genome(Y2O3, 80, np.random.default_rng(seed), fuse_compatible=others("lattice_redraw")
                              - set(generation))
                == random_genome(Y2O3, 80, np.random.default_rng(seed)))


def test_the_default_draws_fuse_offsets_and_the_lattice_style_is_an_opt_in_gene():
    def styles(genomes, gamma):
        return {g.instructions.offsets for g in genomes if g.instructions.angles[2] == gamma}

    quirk = [random_genome(Y2TI2O7, 50, np.random.default_rng(s), fuse_compatible=["cartesian_offsets"],
                           styles=OFFSET_STYLES) for s in range(60)]
    default = [random_genome(Y2TI2O7, 50, np.random.default_rng(s)) for s in range(60)]
    both = [random_genome(Y2TI2O7, 50, np.random.default_rng(s), styles=OFFSET_STYLES) for s in range(60)]
    assert styles(quirk, 120.0) == styles(default, 120.0) == {"cartesian"}
    assert styles(both, 120.0) == {"lattice", "cartesian"}
    assert styles(quirk, 90.0) == styles(default, 90.0) == {"lattice"}
    base = load_script(ROOT / "inputs" / "y2ti2o7.py")
    search = Search(make_config(base, offset_styles=["lattice", "cartesian"]), relaxer=object())
    assert search.ctx.offset_styles == ("lattice", "cartesian")
    assert search.effective_settings()["offset_styles"] == ["lattice", "cartesian"]
    with pytest.raises(ConfigError, match="offset_styles"):
        make_config(base, offset_styles=["diagonal"])


@pytest.mark.parametrize("number, name", [(2, "block_reversal"), (4, "block_reversal"), (5, "string_double"),
                                          (5, "string_double_106"), (1, "noop_moves"), (9, "noop_moves"),
                                          (10, "noop_moves")])
def test_a_move_quirk_alone_reproduces_fuse_mode_and_the_rest_leave_the_move_alone(number, name):
    rng = np.random.default_rng(1)
    genomes = [random_genome(Y2TI2O7, 24, rng) for _ in range(6)]
    profile = PROFILES["1.06" if name in PROFILES["1.06"] else "1.04"] - {"swap_first_uniform"}  # move 1's other
    differs = 0
    for genome in genomes:
        for seed in range(8):
            fuse = attempt(MOVES[number], genome, profile, seed)
            assert attempt(MOVES[number], genome, [name], seed) == fuse
            default = attempt(MOVES[number], genome, False, seed)
            # noop_moves lets any move's no-op through, so it stays off here for the block moves
            rest = others(name) if name == "noop_moves" else others(name) - {"noop_moves"}
            rest -= {"string_double", "string_double_106", "swap_first_uniform"}  # the others at the same site
            assert attempt(MOVES[number], genome, rest, seed) == default
            differs += fuse != default
    assert differs > 0


def test_plain_checks_alone_switch_to_fuse_coordination():
    """c = 2.2 A: the true count is 6 O around Sr; FUSE's minimum image in a 2x2x2 supercell sees fewer."""
    atoms = Atoms("SrO", positions=[[0, 0, 0], [2.3, 0, 0]], cell=[4.6, 4.6, 2.2], pbc=True)
    alone = CheckSettings(fuse_compatible=frozenset({"plain_checks"}))
    assert check_structure(atoms, SRO, 8, alone).startswith("bonds")
    assert check_structure(atoms, SRO, 8, CheckSettings(fuse_compatible=others("plain_checks"))) is None


# -- the loop quirks: each acts at its own site, and the search reports that it did -------------------------------

Y2TI2O7_SCRIPT = ROOT / "inputs" / "y2ti2o7.py"


class CountingPolicy:
    """Wraps a policy and counts its move draws."""

    def __init__(self, policy):
        self.policy, self.draws = policy, 0

    def __getattr__(self, name):
        return getattr(self.policy, name)

    def select(self, state, allowed, rng):
        self.draws += 1
        return self.policy.select(state, allowed, rng)


def walker_at(search: Search, genome: Genome, energy: float = -35.0, best: float = -35.1):
    from rlcsp.csp.walker import Walker

    atoms = assemble(genome, search.ctx.fuse_compatible)
    return Walker(genome, atoms, energy, genome, atoms, best, search.config.temperature)


def two_fu_structure(search: Search) -> Genome:
    while True:
        genome, atoms, _ = search.random_structure()
        if len(atoms) == 22:
            return genome


@pytest.mark.parametrize("quirks, after, draws", [([], 500, 1), (["redraw_after_100"], 100, 4),
                                                  (["redraw_each_attempt"], 1, 301)])
def test_redraw_rules_draw_a_new_move_after_their_number_of_failures(quirks, after, draws):
    """Move 4 on four identical layers only ever proposes the same genome, which the default mode refuses."""
    from rlcsp.policies.fixed import FixedPolicy
    from rlcsp.csp.search import SearchError

    config = make_config(load_script(Y2TI2O7_SCRIPT), quirks=quirks, max_build_attempts=300)
    policy = CountingPolicy(FixedPolicy({4: 1}))
    search = Search(config, relaxer=object(), policy=policy)
    layer = (39, 8, 8, 8, 22, 8, 8, 120, 39, 8, 8, 120, 22, 8, 8, 8)  # 2x2 blocks; four identical layers
    genome = Genome(layer * 4, Instructions(4.3213, 3, 2, 2, 4, (90.0, 90.0, 90.0), (0, 1, 0, 1)))
    with pytest.raises(SearchError, match="after 301 attempts"):
        search.build(walker_at(search, genome), search.state(walker_at(search, genome)))
    assert policy.draws == draws  # the 301st attempt raised
    assert search.effective_settings()["move_redraw_after"] == after
    assert search.quirk_uses == ({quirks[0]: draws - 1} if quirks else {})


def test_fuse_104_redraw_relaxes_moves_in_proportion_to_weight_times_pass_rate():
    """FUSE 1.04 checks outside the move, so from a two-formula-unit Y2Ti2O7 structure the Original policy's moves
    6 and 7 (8.6 % nominal, each build rarely passing) drop to a few per cent of the relaxed candidates."""
    from scipy.stats import fisher_exact

    base = load_script(Y2TI2O7_SCRIPT)
    shares = {}
    for label, without in (("1.04", None), ("no redraw", "redraw_each_attempt")):
        search = Search(make_config(base, policy="original", seed=4, fuse="1.04", without=without), relaxer=object())
        genome = two_fu_structure(search)
        walker = walker_at(search, genome)
        moves = [search.build(walker, search.state(walker))[0] for _ in range(300)]
        shares[label] = sum(m in (6, 7) for m in moves)
    assert shares["1.04"] < shares["no redraw"]
    table = [[shares["1.04"], 300 - shares["1.04"]], [shares["no redraw"], 300 - shares["no redraw"]]]
    assert fisher_exact(table)[1] < 0.01


def test_initial_sizes_are_uniform_over_formula_units_and_string_sizes_are_not():
    from scipy.stats import chisquare

    base = load_script(Y2TI2O7_SCRIPT)
    counts = {}
    for fuse, draws in (("1.06", 400), ("1.04", 150)):
        search = Search(make_config(base, seed=2, fuse=fuse), relaxer=object())
        sizes = [len(search.random_structure()[1]) // 11 for _ in range(draws)]
        counts[fuse] = [sizes.count(n) for n in (1, 2, 3, 4)]
    assert sum(counts["1.06"]) == 400 and chisquare(counts["1.06"]).pvalue > 0.01
    assert chisquare(counts["1.04"]).pvalue < 0.01 and counts["1.04"][0] == max(counts["1.04"])  # mostly 1 f.u.
    assert Search(make_config(base), relaxer=object()).effective_settings()["initial_sizes"] == "uniform formula units"


def test_move6_global_cells_draws_cells_beyond_the_current_size_but_no_more_formula_units():
    genome = random_genome(Y2TI2O7, 50, np.random.default_rng(1), target_fus=2)
    cap = Y2TI2O7.max_sub(22)
    results = {}
    for quirks in ([], ["move6_global_cells"]):
        ctx = MoveContext(Y2TI2O7, 50, fuse_compatible=quirks, exact_fu_count=True)
        made = [MOVES[6].apply(genome, ctx, np.random.default_rng(s)) for s in range(200)]
        assert all(g.n_atoms <= 22 for g in made)
        results[bool(quirks)] = max(g.n_sub for g in made)
    assert results[False] <= cap < results[True] <= Y2TI2O7.max_sub(50)


def test_rattle_seed_42_repeats_ases_fixed_displacements():
    base = load_script(Y2TI2O7_SCRIPT)
    fuse = Search(make_config(base, quirks=["rattle_seed_42"]), relaxer=object())
    default = Search(make_config(base), relaxer=object())
    atoms = default.random_structure()[1]
    reference = atoms.copy()
    reference.rattle(0.05)  # ASE's default seed, as FUSE calls it
    assert np.allclose(fuse._rattle(atoms).positions, reference.positions)
    assert np.allclose(fuse._rattle(atoms).positions, fuse._rattle(atoms).positions)
    assert not np.allclose(default._rattle(atoms).positions, default._rattle(atoms).positions)
    assert fuse.quirk_uses == {"rattle_seed_42": 3} and default.quirk_uses == {}


@pytest.mark.parametrize("e_new, fuse_ca, rlcsp_ca", [
    (-35.05, 1, 0),  # downhill, not a new global minimum: FUSE resets, then counts the step
    (-35.1, 8, 0),  # downhill onto the global minimum itself: FUSE keeps counting
    (-35.2, 0, 0),  # a new global minimum
    (-34.9, 8, 8),  # uphill
    (None, 8, 8),  # failed relaxation
])
def test_melt_bookkeeping_counts_ca_as_fuse_does(e_new, fuse_ca, rlcsp_ca):
    base = load_script(Y2TI2O7_SCRIPT)
    genome = random_genome(Y2TI2O7, 50, np.random.default_rng(0))
    outcome = "accepted" if e_new is not None and e_new < -35.0 else "rejected"
    for quirks, expected in ((["melt_bookkeeping"], fuse_ca), ([], rlcsp_ca)):
        search = Search(make_config(base, quirks=quirks), relaxer=object())
        assert search._melt_count(7, outcome, e_new, walker_at(search, genome, -35.0, -35.1)) == expected


def test_string_overflow_redraw_fails_about_half_of_fuse_104s_new_structures():
    """FUSE 1.04's create_random_string raises for SrY2O4 in 45-60 % of draws (measured with FUSE's own function)."""
    sry2o4 = Composition.from_formula("SrY2O4", OX)
    genome = random_genome(sry2o4, 50, np.random.default_rng(0), target_fus=2)
    failed = {}
    for quirks in (["uncapped_fus"], ["uncapped_fus", "string_overflow_redraw"]):
        ctx = MoveContext(sry2o4, 50, fuse_compatible=quirks)
        failed[len(quirks)] = sum(attempt_ctx(MOVES[7], genome, ctx, seed) is InvalidMove for seed in range(200))
    assert failed[1] == 0 and 60 < failed[2] < 140


def attempt_ctx(move, genome, ctx, seed):
    try:
        return move.apply(genome, ctx, np.random.default_rng(seed))
    except (InvalidMove, NotApplicable) as exc:
        return type(exc)


def test_swap_first_uniform_draws_vacancy_pairs_as_fuse_does():
    """With a 20-site SrY2O4 string FUSE swaps O with a vacancy more often (0.537) than a uniform pair does (0.487)."""
    sry2o4 = Composition.from_formula("SrY2O4", OX)
    string = np.array([38, 8, 8, 8, 39, 8, 120, 120, 39, 120, 120, 8, 120, 120, 120, 120, 120, 120, 120, 120])
    rates = {}
    for quirks in ([], ["swap_first_uniform"]):
        ctx = MoveContext(sry2o4, 50, fuse_compatible=quirks)
        swapped = [MOVES[1]._anywhere(string, ctx, np.random.default_rng(seed), False) for seed in range(3000)]
        rates[bool(quirks)] = np.mean([set(new[new != string]) == {8, 120} for new in swapped])
    assert rates[True] - rates[False] > 0.02


def test_the_melt_threshold_reaches_fuse_s_fixed_policies():
    base = load_script(Y2TI2O7_SCRIPT)
    assert Search(make_config(base, policy="uniform", melt_threshold=7), relaxer=object()).policy.melt_threshold == 7
    assert Search(make_config(base, policy="reinforce", melt_threshold=7), relaxer=object()).policy is not None


def test_fuse_rl_runs_1_04s_moves_under_fuse_rl_s_retry_rule():
    """FUSE_RL (the paper's RLCSP rows) keeps a move for its 500 failed builds, then excludes it (fuse.md §4.5):
    rlcsp's own rule, with everything else of 1.04."""
    base = load_script(Y2TI2O7_SCRIPT)
    rl = Search(make_config(base, fuse="rl", policy="reinforce-rlcsp"), relaxer=object()).effective_settings()
    own = Search(make_config(base, policy="reinforce-rlcsp"), relaxer=object()).effective_settings()
    v104 = Search(make_config(base, fuse="1.04", policy="reinforce-rlcsp"), relaxer=object()).effective_settings()
    assert (rl["move_redraw_after"], rl["move_exclusion"]) == (own["move_redraw_after"], own["move_exclusion"]) \
        == (500, True)
    assert (v104["move_redraw_after"], v104["move_exclusion"]) == (1, False)
    assert rl["metropolis"] == "global" and rl["uniqueness"] == "energy rounded to 1e-6" and rl["mode"] == "FUSE rl"
    assert rl["quirks"] == sorted(PROFILES["rl"])
