"""Genome, solution tables, random genomes and assembly (fuse.md §1.2-1.6)."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from ase.geometry import cellpar_to_cell
from ase.neighborlist import neighbor_list

from rlcsp.composition import Composition
from rlcsp.exceptions import CompositionError, InvalidStructure
from rlcsp.csp.genome import (VACANCY, Genome, Instructions, assemble, block_grid, from_block_grid, lattice_solutions,
                          possible_lattices, random_genome, random_instructions, submodule_cell)

OX = {"Y": 3, "Ti": 4, "Sr": 2, "O": -2}
Y2O3 = Composition.from_formula("Y2O3", OX)
AP = 4.741


def full_genome(na: int, nb: int, nc: int, angles=(90.0, 90.0, 90.0), translations=None) -> Genome:
    """Every sub-module [Y, O, O, O]: no vacancies."""
    if translations is None:
        translations = tuple(x % 2 for x in range(nc)) if angles[2] == 90 else (0, 1, 2)[:nc]
    ins = Instructions(AP, 3, na, nb, nc, angles, translations)
    return Genome((39, 8, 8, 8) * (na * nb * nc), ins)


def test_solution_table_sizes_match_fuse():
    assert sorted(lattice_solutions(0))[:4] == [2, 16, 54, 128]
    assert [len(lattice_solutions(t)) for t in range(1, 6)] == [656, 1297, 2847, 3919, 3919]
    for lattice in range(6):
        for n, shapes in list(lattice_solutions(lattice).items())[:50]:
            assert all(na * nb * nc == n for na, nb, nc in shapes)
    assert possible_lattices(41) == []
    assert possible_lattices(2) == [0, 1, 2, 3, 4, 5]


def test_gamma_90_assembly_is_a_simple_cubic_grid():
    genome = full_genome(2, 3, 4)
    atoms = assemble(genome)
    assert len(atoms) == 4 * 2 * 3 * 4
    assert np.allclose(atoms.cell.cellpar(), [2 * AP, 3 * AP, 4 * AP / 2, 90, 90, 90])
    i, j, d = neighbor_list("ijd", atoms, 0.6 * AP)
    assert np.allclose(d, AP / 2)  # nearest neighbours only, all at ap/2 ...
    assert np.all(np.bincount(i) == 6)  # ... six of them: simple cubic
    a_to_b = d[(atoms.numbers[i] == 39) & (atoms.numbers[j] == 8)]
    assert a_to_b.size and np.allclose(a_to_b, AP / 2)
    cations = atoms[atoms.numbers == 39]
    _, d_aa = neighbor_list("id", cations, 0.9 * AP)
    assert np.allclose(d_aa, AP * np.sqrt(3) / 2)  # A sites: body-centred, cubic edge ap


def test_block_order_follows_fuse_reversal():
    """Block k sits in layer k // L at in-layer index n = L-1-(k mod L), n = i*nb + j."""
    ins = Instructions(AP, 3, 2, 3, 2, (90.0, 90.0, 90.0), (0, 1))
    for k in (0, 4, 7, 11):
        string = [VACANCY] * 48
        string[4 * k] = 39
        atoms = assemble(Genome(tuple(string), ins))
        x, n = divmod(k, 6)
        i, j = divmod(5 - n, 3)
        expected = np.array([i * AP, j * AP, x * AP / 2]) + [x % 2 * AP / 2, x % 2 * AP / 2, AP / 4]
        assert np.allclose(atoms.positions[0], expected)
    genome = Genome(tuple(range(48)), ins)
    assert from_block_grid(block_grid(genome), ins) == genome


def test_gamma_120_offsets_are_lattice_fractions_by_default():
    genome = full_genome(2, 2, 3, angles=(90.0, 90.0, 120.0))
    sub = submodule_cell(AP, (90.0, 90.0, 120.0))
    default, compat = assemble(genome), assemble(genome, fuse_compatible=True)
    first = 16  # atoms per layer
    shift_default = default.positions[first] - default.positions[0] - sub[2]
    shift_compat = compat.positions[first] - compat.positions[0] - sub[2]
    assert np.allclose(shift_default, sub[0] / 3 + 2 * sub[1] / 3)
    assert np.allclose(shift_compat, [AP / 3, 2 * AP / 3, 0])
    # default: every layer lies on the same triangular net, shifted to the hollow sites (ABC stacking)
    grid = default.get_scaled_positions(wrap=False)[:, :2] * 4  # in units of the net spacing ap/2
    layer = np.repeat([0, 1, 2], first)
    offsets = np.array([[0, 0], [2 / 3, 1 / 3], [1 / 3, 2 / 3]])
    assert np.allclose(np.mod(grid - offsets[layer] + 1e-9, 1.0), 0, atol=1e-6)
    _, d = neighbor_list("id", default, 0.55 * AP)
    assert np.isclose(d.min(), AP / 2)
    assert not np.allclose(default.positions, compat.positions)


def test_cartesian_offset_style_is_fuse_geometry_as_a_gene_and_gamma_90_has_one_style():
    lattice = full_genome(2, 2, 3, angles=(90.0, 90.0, 120.0))
    cartesian = Genome(lattice.string, replace(lattice.instructions, offsets="cartesian"))
    assert np.allclose(assemble(cartesian).positions, assemble(lattice, ["cartesian_offsets"]).positions)
    assert not np.allclose(assemble(cartesian).positions, assemble(lattice).positions)
    flat = full_genome(1, 2, 4, angles=(105.0, 75.0, 90.0))
    assert replace(flat.instructions, offsets="cartesian") == flat.instructions  # one structure, one genome
    with pytest.raises(InvalidStructure, match="offset style"):
        replace(lattice.instructions, offsets="polar")


def test_genomes_stored_before_the_offset_gene_load_with_lattice_offsets():
    stored = full_genome(2, 2, 3, angles=(90.0, 90.0, 120.0)).to_dict()
    del stored["instructions"]["offsets"]
    assert Genome.from_dict(stored).instructions.offsets == "lattice"


def test_gamma_90_is_the_same_in_both_modes():
    genome = full_genome(1, 2, 4, angles=(105.0, 75.0, 90.0))
    assert np.allclose(assemble(genome).positions, assemble(genome, fuse_compatible=True).positions)


def test_submodule_cell_matches_ase_and_flags_impossible_angles():
    for angles in [(90, 90, 90), (90, 90, 120), (60, 105, 90), (150, 75, 120)]:
        assert np.allclose(submodule_cell(AP, angles), cellpar_to_cell([AP, AP, AP / 2, *angles]))
    assert np.isnan(submodule_cell(AP, (150, 150, 120))).any()
    assert np.isnan(assemble(full_genome(1, 1, 2, angles=(150.0, 150.0, 120.0), translations=(0, 1))).cell).any()


def test_genome_validation_and_json_round_trip():
    genome = random_genome(Y2O3, 80, np.random.default_rng(3))
    assert Genome.from_dict(json.loads(json.dumps(genome.to_dict()))) == genome
    ins = genome.instructions
    with pytest.raises(InvalidStructure):
        Genome(genome.string[:-4], ins)
    with pytest.raises(InvalidStructure):
        Instructions(AP, 0, 1, 1, 2, (90.0, 90.0, 90.0), (0, 2))
    with pytest.raises(InvalidStructure):
        Instructions(AP, 0, 1, 1, 2, (90.0, 90.0, 100.0), (0, 1))


def test_random_instructions_follow_the_lattice_rules():
    rng = np.random.default_rng(7)
    for n_sub in (1, 2, 6, 12, 16, 30, 54):
        for _ in range(40):
            ins = random_instructions(n_sub, AP, rng)
            assert ins.lattice in possible_lattices(n_sub)
            assert (ins.na, ins.nb, ins.nc) in lattice_solutions(ins.lattice)[n_sub]
            t = ins.translations
            if ins.nc == 1:
                assert t == (0,)
            elif ins.angles[2] == 90:
                assert ins.nc % 2 == 0 and t == tuple(x % 2 for x in range(ins.nc))
            else:
                assert t[0] == 0 and all(t[x] != t[(x + 1) % ins.nc] for x in range(ins.nc))
            if ins.lattice in (0, 1, 3):
                assert ins.angles == (90, 90, 90)
            elif ins.lattice in (2, 4):
                assert ins.angles == (90, 90, 120)
            elif ins.nc % 2:
                assert ins.angles[2] == 120
    ins = random_instructions(16, AP, rng, lattice=0)
    assert (ins.na, ins.nb, ins.nc) == (2, 2, 4)
    with pytest.raises(ValueError):
        random_instructions(41, AP, rng)


@pytest.mark.parametrize("formula, max_atoms", [("Y2O3", 80), ("Y2Ti2O7", 50), ("Sr4Ti3O10", 50)])
def test_random_genomes_keep_the_composition(formula, max_atoms):
    comp = Composition.from_formula(formula, OX)
    rng = np.random.default_rng(11)
    fu = Counter(comp.fu)
    for _ in range(300):
        genome = random_genome(comp, max_atoms, rng)
        counts = Counter(v for v in genome.string if v != VACANCY)
        fus = genome.n_atoms // comp.atoms_per_fu
        assert genome.n_atoms == fus * comp.atoms_per_fu and 1 <= fus <= comp.max_fus(max_atoms)
        assert counts == Counter({z: n * fus for z, n in fu.items()})
        blocks = np.array(genome.string).reshape(-1, 4)
        assert np.isin(blocks[:, 0], comp.cations + [VACANCY]).all()  # [A, B, B, B]
        assert np.isin(blocks[:, 1:], comp.anions + [VACANCY]).all()
        assert genome.n_sub <= comp.max_sub(max_atoms)
        assert len(assemble(genome)) == genome.n_atoms


def test_default_mode_keeps_the_drawn_lattice_and_caps_fus():
    rng = np.random.default_rng(5)
    default = [random_genome(Y2O3, 80, rng) for _ in range(600)]
    compat = [random_genome(Y2O3, 80, rng, fuse_compatible=True) for _ in range(600)]
    share = Counter(g.instructions.lattice for g in default)
    assert all(share[t] > 50 for t in range(6))  # each type ~1/6 as drawn
    assert Counter(g.instructions.lattice for g in compat)[0] < share[0] / 2  # re-drawn among types for N
    assert max(g.n_atoms for g in default) <= 80
    assert max(g.n_atoms for g in compat) > 80  # FUSE's uncapped formula-unit count


def test_target_fus_and_determinism():
    for target in (1, 7, 16):
        genome = random_genome(Y2O3, 80, np.random.default_rng(target), target_fus=target)
        assert genome.n_atoms == 5 * target
    assert random_genome(Y2O3, 80, np.random.default_rng(9)) == random_genome(Y2O3, 80, np.random.default_rng(9))
    with pytest.raises(CompositionError):
        random_genome(Y2O3, 80, np.random.default_rng(0), target_fus=17)


def test_neutral_random_genome():
    comp = Composition({"Si": [1], "C": [1]})
    genome = random_genome(comp, 16, np.random.default_rng(2))
    counts = Counter(v for v in genome.string if v != VACANCY)
    assert counts[14] == counts[6] >= 1
