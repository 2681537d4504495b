"""Each of FUSE's quirks can be reproduced on its own: it changes its own site exactly as fuse_compatible=True does,
and nothing else."""
from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from actions import MOVES, MoveContext
from rlcsp.checks import CheckSettings, check_structure
from rlcsp.composition import Composition
from rlcsp.config import load_script, make_config
from rlcsp.exceptions import ConfigError, InvalidMove, NotApplicable, UnknownName
from rlcsp.genome import Genome, assemble, random_genome
from rlcsp.quirks import QUIRKS, quirk_set, setting
from rlcsp.search import Search

from ..conftest import ROOT

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
    assert setting(list(QUIRKS)) is True and setting([]) is False and setting("noop_moves") == ["noop_moves"]
    with pytest.raises(UnknownName, match="lattice_redraw"):
        quirk_set(["noop_move"])


def test_a_config_keeps_quirk_names_and_refuses_unknown_ones():
    base = load_script(ROOT / "inputs" / "y2ti2o7.py")
    assert make_config(base, fuse_compatible="uncapped_fus,noop_moves").fuse_compatible == ["noop_moves",
                                                                                              "uncapped_fus"]
    assert make_config(base, fuse_compatible="all").fuse_compatible is True
    with pytest.raises(ConfigError, match="unknown FUSE quirk 'typo'"):
        make_config(base, fuse_compatible="typo")
    search = Search(make_config(base, fuse_compatible=["uncapped_fus"]))
    assert not search.ctx.exact_fu_count and search.ctx.quirk("uncapped_fus") and not search.ctx.quirk("noop_moves")
    assert Search(make_config(base, fuse_compatible=["noop_moves"])).ctx.exact_fu_count


def test_cartesian_offsets_alone_change_only_gamma_120_assembly():
    rng = np.random.default_rng(3)
    genomes = [random_genome(Y2TI2O7, 50, rng) for _ in range(40)]
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


def test_cartesian_offsets_quirk_draws_only_fuse_offsets_and_the_default_draws_both():
    quirk = [random_genome(Y2TI2O7, 50, np.random.default_rng(s), fuse_compatible=["cartesian_offsets"])
             for s in range(60)]
    default = [random_genome(Y2TI2O7, 50, np.random.default_rng(s)) for s in range(60)]
    def styles(genomes, gamma):
        return {g.instructions.offsets for g in genomes if g.instructions.angles[2] == gamma}

    assert styles(quirk, 120.0) == {"cartesian"}
    assert styles(default, 120.0) == {"lattice", "cartesian"}
    assert styles(quirk, 90.0) == styles(default, 90.0) == {"lattice"}


@pytest.mark.parametrize("number, name", [(2, "block_reversal"), (4, "block_reversal"), (5, "string_double"),
                                          (1, "noop_moves"), (9, "noop_moves"), (10, "noop_moves")])
def test_a_move_quirk_alone_reproduces_fuse_mode_and_the_rest_leave_the_move_alone(number, name):
    rng = np.random.default_rng(1)
    genomes = [random_genome(Y2TI2O7, 24, rng) for _ in range(6)]
    differs = 0
    for genome in genomes:
        for seed in range(8):
            fuse = attempt(MOVES[number], genome, True, seed)
            assert attempt(MOVES[number], genome, [name], seed) == fuse
            default = attempt(MOVES[number], genome, False, seed)
            # noop_moves lets any move's no-op through, so it stays off here for the block moves
            rest = others(name) if name == "noop_moves" else others(name) - {"noop_moves"}
            assert attempt(MOVES[number], genome, rest, seed) == default
            differs += fuse != default
    assert differs > 0


def test_plain_checks_alone_switch_to_fuse_coordination():
    """c = 2.2 A: the true count is 6 O around Sr; FUSE's minimum image in a 2x2x2 supercell sees fewer."""
    atoms = Atoms("SrO", positions=[[0, 0, 0], [2.3, 0, 0]], cell=[4.6, 4.6, 2.2], pbc=True)
    alone = CheckSettings(fuse_compatible=frozenset({"plain_checks"}))
    assert check_structure(atoms, SRO, 8, alone).startswith("bonds")
    assert check_structure(atoms, SRO, 8, CheckSettings(fuse_compatible=others("plain_checks"))) is None
