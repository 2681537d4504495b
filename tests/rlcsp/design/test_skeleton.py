"""Skeletons from any structure source, CrystalNN multigraphs and BFS orders that cover every site."""
from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from pymatgen.io.ase import AseAtomsAdaptor

from rlcsp.exceptions import ConfigError
from rlcsp.design.fill import load_fill_script
from rlcsp.design.skeleton import make_skeleton, read_csv_row

from ...conftest import ROOT


@pytest.fixture(scope="module")
def elpasolite():
    return make_skeleton(load_fill_script(ROOT / "inputs" / "elpasolite.py")["skeleton"])


def test_elpasolite_skeleton_has_paper_b_sites(elpasolite):
    assert elpasolite.n_sites == 10 and elpasolite.spacegroup == 225
    assert sorted(elpasolite.species) == sorted(["Rb"] * 3 + ["Sc"] + ["F"] * 6)
    a, b, c, alpha, beta, gamma = elpasolite.cellpar
    assert a == pytest.approx(9.386918 / np.sqrt(2), abs=1e-5) and alpha == pytest.approx(60.0)
    # Sc-F bonds of the octahedron: x_F * a_conventional
    assert elpasolite.edge_distances().min() == pytest.approx(0.216881 * 9.386918, abs=1e-4)


def test_multigraph_has_both_directions_and_images(elpasolite):
    edges = {tuple(e) for e in elpasolite.edges.tolist()}
    for s, t, *image in edges:
        assert (t, s, *(-i for i in image)) in edges
    assert any(any(e[2:]) for e in edges)  # bonds through periodic images are kept


@pytest.mark.parametrize("root", range(10))
def test_bfs_from_every_root_covers_every_site(elpasolite, root):
    order = elpasolite.bfs_order(root)
    assert order[0] == root and sorted(order) == list(range(10))
    neighbours = elpasolite.neighbours()
    for k, site in enumerate(order[1:], start=1):  # each site joins next to one already filled
        assert set(neighbours[site]) & set(order[:k])


def test_other_sources_perovskite_y2o3_atoms_and_structure(shared_data):
    perov = make_skeleton(load_fill_script(ROOT / "inputs" / "perovskite.py")["skeleton"])
    assert perov.n_sites == 5 and sorted(perov.bfs_order(2)) == list(range(5))
    y2o3 = make_skeleton(load_fill_script(ROOT / "inputs" / "y2o3_skeleton.py")["skeleton"])
    assert y2o3.n_sites == 40 and sorted(y2o3.bfs_order(7)) == list(range(40))
    row = read_csv_row(shared_data / "perov_5" / "val.csv", 3)
    assert make_skeleton(row).n_sites == 5
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    from_atoms, from_structure = make_skeleton(atoms), make_skeleton(AseAtomsAdaptor.get_structure(atoms))
    assert np.array_equal(from_atoms.edges, from_structure.edges) and from_atoms.spacegroup == 225


def test_disconnected_graph_still_covers_every_site():
    far_apart = bulk("Ar", "fcc", a=30.0)  # CrystalNN bonds nothing but its own images
    skeleton = make_skeleton(far_apart.repeat((2, 1, 1)))
    assert sorted(skeleton.bfs_order(1)) == [0, 1]


def test_unreadable_cif_and_partial_occupancy_are_clear_errors(tmp_path):
    broken = tmp_path / "broken.cif"
    broken.write_text("data_x\n_cell_length_a 4.0\nthis is not a cif\n")
    with pytest.raises(ConfigError, match="cannot read a crystal structure from .*broken.cif"):
        make_skeleton(broken)
    partial = tmp_path / "partial.cif"
    partial.write_text("""data_NaK
_cell_length_a 4.0
_cell_length_b 4.0
_cell_length_c 4.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Na1 Na 0 0 0 0.5
K1 K 0 0 0 0.5
Cl1 Cl 0.5 0.5 0.5 1
""")
    with pytest.raises(ConfigError, match="partially occupied"):
        make_skeleton(partial)
    with pytest.raises(ConfigError, match="cannot make a skeleton"):
        make_skeleton(42)
