"""The nine moves (fuse.md §2): composition kept, seeded determinism, applicability, exact supercells."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from ase.geometry import get_distances
from ase.neighborlist import neighbor_list

from rlcsp import actions
from rlcsp.actions import MOVES, MoveContext, get_move
from rlcsp.actions.double import exact_double, fuse106_double, fuse_double
from rlcsp.composition import Composition
from rlcsp.exceptions import InvalidMove, NotApplicable, UnknownName
from rlcsp.csp.genome import VACANCY, Genome, Instructions, assemble, block_grid, random_genome

OX = {"Y": 3, "Ti": 4, "Sr": 2, "O": -2}
Y2O3 = Composition.from_formula("Y2O3", OX)
Y2TI2O7 = Composition.from_formula("Y2Ti2O7", OX)
CONTEXTS = {
    "default": MoveContext(Y2TI2O7, 50),
    "fuse": MoveContext(Y2TI2O7, 50, fuse_compatible=True),
    "exact-fu": MoveContext(Y2TI2O7, 50, exact_fu_count=True),
}


def genomes(comp: Composition, max_atoms: int, n: int = 12, seed: int = 0) -> list[Genome]:
    rng = np.random.default_rng(seed)
    return [random_genome(comp, max_atoms, rng) for _ in range(n)]


def attempt(move, genome, ctx, seed):
    """The proposal, or the exception class, for one seeded attempt."""
    try:
        return move.apply(genome, ctx, np.random.default_rng(seed))
    except (InvalidMove, NotApplicable) as exc:
        return type(exc)


def atom_counts(genome: Genome) -> Counter:
    return Counter(v for v in genome.string if v != VACANCY)


def test_registry():
    assert sorted(MOVES) == [1, 2, 3, 4, 5, 6, 7, 9, 10]
    assert actions.available_moves() == MOVES
    assert len({m.name for m in MOVES.values()}) == 9
    for number, move in MOVES.items():
        assert get_move(number) is move and get_move(str(number)) is move and get_move(move.name) is move
    with pytest.raises(UnknownName, match="swap2"):
        get_move("swap3")
    with pytest.raises(UnknownName):
        get_move(8)


@pytest.mark.parametrize("mode", sorted(CONTEXTS))
@pytest.mark.parametrize("number", sorted(MOVES))
def test_composition_kept_and_seeded(number, mode):
    move, ctx = MOVES[number], CONTEXTS[mode]
    comp, fu = ctx.composition, Counter(ctx.composition.fu)
    produced = 0
    for k, genome in enumerate(genomes(comp, 50)):
        for seed in range(4):
            new = attempt(move, genome, ctx, 100 * k + seed)
            assert new == attempt(move, genome, ctx, 100 * k + seed)  # same seed, same outcome
            if not isinstance(new, Genome):
                continue
            produced += 1
            counts = atom_counts(new)
            if number in (1, 2, 3, 4, 9, 10):
                assert counts == atom_counts(genome) and new.n_sub == genome.n_sub
            elif number == 5:
                assert counts == Counter({z: 2 * n for z, n in atom_counts(genome).items()})
            else:
                fus = new.n_atoms // comp.atoms_per_fu
                assert counts == Counter({z: n * fus for z, n in fu.items()})
                limit = genome.n_atoms // comp.atoms_per_fu if number == 6 else comp.max_fus(ctx.max_atoms)
                if mode != "fuse":
                    assert 1 <= fus <= limit
            if mode != "fuse":
                assert new != genome
    assert produced > 0


def test_not_applicable():
    rng = np.random.default_rng(0)
    ctx = MoveContext(Y2O3, 80)
    two_layers = Genome((39, 8, 8, 8) * 4, Instructions(4.741, 3, 2, 1, 2, (90, 90, 90), (0, 1)))
    with pytest.raises(NotApplicable):
        MOVES[4].apply(two_layers, ctx, rng)
    one_block = Genome((39, 8, 8, 120), Instructions(4.741, 4, 1, 1, 1, (90, 90, 120), (0,)))
    with pytest.raises(NotApplicable):
        MOVES[2].apply(one_block, ctx, rng)
    big = Genome((39, 8, 8, 8) * 42, Instructions(4.741, 3, 3, 7, 2, (90, 90, 90), (0, 1)))  # 168 atoms
    small = Genome((39, 8, 8, 8) * 10, Instructions(4.741, 3, 5, 1, 2, (90, 90, 90), (0, 1)))  # 40 atoms
    with pytest.raises(NotApplicable):
        MOVES[5].apply(big, ctx, rng)
    assert MOVES[5].apply(small, ctx, rng).n_atoms == 80
    same = Genome((39,) * 8, Instructions(4.741, 3, 1, 1, 2, (90, 90, 90), (0, 1)))
    for number in (1, 9, 10):
        with pytest.raises(NotApplicable):
            MOVES[number].apply(same, ctx, rng)


def test_swap_two_on_y2o3():
    """One cation species: a cations-only draw without vacancies has nothing to swap (InvalidMove, redraw)."""
    genome = genomes(Y2O3, 80, 1, seed=3)[0]
    outcomes = Counter()
    for seed in range(200):
        new = attempt(MOVES[1], genome, MoveContext(Y2O3, 80), seed)
        if isinstance(new, Genome):
            changed = np.flatnonzero(np.array(new.string) != np.array(genome.string))
            assert len(changed) == 2 and new.string[changed[0]] == genome.string[changed[1]]
            outcomes["swapped"] += 1
        else:
            outcomes[new.__name__] += 1
    assert outcomes["swapped"] > 100 and outcomes["InvalidMove"] > 10 and "NotApplicable" not in outcomes
    noops = sum(attempt(MOVES[1], genome, MoveContext(Y2O3, 80, fuse_compatible=True), s) == genome
                for s in range(200))
    assert noops > 0  # FUSE can swap two equal values


def test_swap_submodules_and_modules():
    ctx, fuse = MoveContext(Y2O3, 80), MoveContext(Y2O3, 80, fuse_compatible=True)
    genome = Genome(tuple(range(4 * 12)), Instructions(4.741, 2, 2, 2, 3, (90, 90, 120), (0, 1, 2)))
    rng = np.random.default_rng(1)
    blocks = np.array(genome.string).reshape(-1, 4)
    new = np.array(MOVES[2].apply(genome, ctx, rng).string).reshape(-1, 4)
    assert (new != blocks).any(axis=1).sum() == 2
    reflected = np.array(MOVES[2].apply(genome, fuse, rng).string).reshape(-1, 4)[::-1]
    assert (reflected != blocks).any(axis=1).sum() == 2  # a swap, then FUSE's point reflection
    grid = block_grid(genome)
    swapped = block_grid(MOVES[4].apply(genome, ctx, rng))
    moved = [x for x in range(3) if (swapped[x] != grid[x]).any()]
    assert len(moved) == 2 and (swapped[moved[0]] == grid[moved[1]]).all()


def test_new_instructions_keep_the_string():
    for genome in genomes(Y2O3, 80, 5):
        new = MOVES[3].apply(genome, MoveContext(Y2O3, 80), np.random.default_rng(4))
        assert new.string == genome.string and new.instructions.n_sub == genome.n_sub


def same_structure(a, b) -> bool:
    """Same cell, and a one-to-one match of atoms of equal species at equal (periodic) positions."""
    if len(a) != len(b) or not np.allclose(a.cell, b.cell, atol=1e-8):
        return False
    _, d = get_distances(a.positions, b.positions, cell=a.cell, pbc=True)
    match = (d < 1e-6) & (a.numbers[:, None] == b.numbers[None, :])
    return bool((match.sum(axis=1) == 1).all() and (match.sum(axis=0) == 1).all())


def distance_spectrum(atoms, cutoff=6.0) -> np.ndarray:
    _, _, d = neighbor_list("ijd", atoms, cutoff)
    return np.sort(np.round(d, 6))


@pytest.mark.parametrize("axis", ["a", "b", "c"])
def test_double_is_an_exact_supercell(axis):
    reps = {"a": (2, 1, 1), "b": (1, 2, 1), "c": (1, 1, 2)}[axis]
    lattices = set()
    for genome in genomes(Y2O3, 80, 30, seed=8):
        if np.isnan(assemble(genome).cell).any():
            continue
        lattices.add(genome.instructions.lattice)
        doubled = assemble(exact_double(genome, axis))
        supercell = assemble(genome).repeat(reps)
        assert same_structure(doubled, supercell)
    assert len(lattices) >= 4  # γ = 90 and γ = 120 cells among them


def test_fuse_double_quirk():
    """FUSE's a-doubling of a 1 x 2 cell transposes the rows instead of repeating them; along c it is exact."""
    string = (39, 8, 8, 8, 120, 8, 120, 120, 39, 8, 8, 120, 120, 8, 8, 8)
    genome = Genome(string, Instructions(4.741, 3, 1, 2, 2, (90, 90, 90), (0, 1)))
    atoms = assemble(genome)
    assert same_structure(assemble(fuse_double(genome, "c")), atoms.repeat((1, 1, 2)))
    quirky = assemble(fuse_double(genome, "a"))
    assert not np.array_equal(distance_spectrum(quirky), distance_spectrum(atoms.repeat((2, 1, 1))))
    assert np.array_equal(distance_spectrum(assemble(exact_double(genome, "a"))),
                          distance_spectrum(atoms.repeat((2, 1, 1))))


def block_genome(shape: tuple[int, int, int]) -> tuple[list[int], Genome]:
    """A random orthorhombic genome of na x nb x nc sub-modules, and its string."""
    na, nb, nc = shape
    string = [int(v) for v in np.random.default_rng(sum(shape)).choice([39, 8, 120], size=4 * na * nb * nc)]
    return string, Genome(string, Instructions(4.741, 3, na, nb, nc, (90, 90, 90), tuple(x % 2 for x in range(nc))))


def fuse_104_double(string: list[int], na: int, nb: int, nc: int, axis: str) -> list[int]:
    """FUSE 1.04's move 5 along a or b, step by step as fuse.md §2.2 and its loops describe it: blocks popped from
    the end of the string, each layer's nb groups of na blocks emitted twice (a) or each block twice (b), the
    result flattened in that order."""
    blocks = [string[4 * k:4 * k + 4] for k in range(len(string) // 4)][::-1]
    out, n = [], 0
    for _ in range(nc):
        for _ in range(nb):
            group = blocks[n:n + na]
            n += na
            out += group * 2 if axis == "a" else [b for block in group for b in (block, block)]
    return [v for block in out for v in block]


@pytest.mark.parametrize("shape", [(1, 2, 2), (2, 1, 2), (2, 2, 2), (3, 2, 2), (2, 3, 4), (1, 1, 2)])
def test_fuse_double_follows_fuse_104_and_is_no_supercell_for_na_equal_nb(shape):
    na, nb, nc = shape
    string, genome = block_genome(shape)
    for axis in ("a", "b"):
        assert list(fuse_double(genome, axis).string) == fuse_104_double(string, na, nb, nc, axis)
    if shape == (2, 2, 2):  # fuse.md §2.2 calls this case an exact supercell; it is not
        doubled = assemble(fuse_double(genome, "a"))
        assert not np.array_equal(distance_spectrum(doubled), distance_spectrum(assemble(genome).repeat((2, 1, 1))))


def fuse_106_double(string: list[int], na: int, nb: int, nc: int, axis: str) -> list[int]:
    """FUSE 1.06's move 5 along a or b, step by step: blocks popped from the end and put back in string order,
    each layer's na runs of nb blocks emitted twice (a) or each block twice (b)."""
    blocks = [string[4 * k:4 * k + 4] for k in range(len(string) // 4)]  # popped from the end, reversed back
    out, n = [], 0
    for _ in range(nc):
        for _ in range(na):
            run = blocks[n:n + nb]
            n += nb
            out += run * 2 if axis == "a" else [b for block in run for b in (block, block)]
    return [v for block in out for v in block]


@pytest.mark.parametrize("shape", [(1, 2, 2), (2, 1, 2), (2, 2, 2), (3, 2, 2), (2, 3, 4), (1, 1, 2)])
def test_fuse106_double_follows_fuse_106_and_is_a_supercell_along_an_axis_of_one_submodule(shape):
    na, nb, nc = shape
    string, genome = block_genome(shape)
    for axis, reps, ones in (("a", (2, 1, 1), na == 1), ("b", (1, 2, 1), nb == 1)):
        assert list(fuse106_double(genome, axis).string) == fuse_106_double(string, na, nb, nc, axis)
        if ones:
            assert same_structure(assemble(fuse106_double(genome, axis)), assemble(genome).repeat(reps))


def test_new_structure_sizes():
    genome = random_genome(Y2O3, 80, np.random.default_rng(5), target_fus=3)
    for ctx in (MoveContext(Y2O3, 80), MoveContext(Y2O3, 80, exact_fu_count=True)):
        sizes = {attempt(MOVES[6], genome, ctx, s).n_atoms for s in range(60)}
        assert sizes <= {5, 10, 15} and len(sizes) > 1
    fuse = {attempt(MOVES[6], genome, MoveContext(Y2O3, 80, fuse_compatible=["uncapped_fus"]), s).n_atoms
            for s in range(60)}
    assert max(fuse) > 15  # FUSE_RL's move 6 is not capped at the current size
    sizes = {attempt(MOVES[7], genome, MoveContext(Y2O3, 80), s).n_atoms for s in range(60)}
    assert max(sizes) > 15 and max(sizes) <= 80


@pytest.mark.parametrize("number", [6, 7])
def test_new_structure_keeps_its_size_until_a_candidate_passes(number):
    """FUSE 1.06: the drawn formula-unit count holds over failed builds, so hard sizes are not under-sampled."""
    seen: list[int] = []

    def every_fifth(candidate: Genome) -> bool:
        seen.append(candidate.n_atoms)
        return len(seen) % 5 == 0

    genome = random_genome(Y2O3, 80, np.random.default_rng(5), target_fus=6)
    ctx = MoveContext(Y2O3, 80, exact_fu_count=True, passes=every_fifth)
    sizes = set()
    for seed in range(8):
        seen.clear()
        new = MOVES[number].apply(genome, ctx, np.random.default_rng(seed))
        assert len(seen) == 5 and set(seen) == {new.n_atoms}
        sizes.add(new.n_atoms)
    assert len(sizes) > 2
    never = MoveContext(Y2O3, 80, exact_fu_count=True, passes=lambda candidate: False, size_attempts=20)
    with pytest.raises(InvalidMove, match="formula units passed the checks in 20 builds"):
        MOVES[number].apply(genome, never, np.random.default_rng(0))


def test_neutral_exchange_moves():
    comp = Composition({"Si": [1], "C": [1]})
    genome = random_genome(comp, 16, np.random.default_rng(1))
    ctx = MoveContext(comp, 16)
    for number in (1, 9, 10):
        for seed in range(10):
            new = attempt(MOVES[number], genome, ctx, seed)
            if isinstance(new, Genome):
                assert atom_counts(new) == atom_counts(genome) and new != genome
