"""Periodic radius graph against pymatgen neighbour lists, and its invariances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from sc_inverse.generative.graph import (
    lattice_from_params,
    lattice_to_params,
    periodic_radius_graph,
)


def _edges(structure: Structure, cutoff: float, max_neighbors=None):
    frac = torch.tensor(structure.frac_coords % 1.0, dtype=torch.float64)
    lat = torch.tensor(structure.lattice.matrix, dtype=torch.float64)[None]
    g = periodic_radius_graph(frac, lat, torch.tensor([len(structure)]), cutoff, max_neighbors, max_images=10)
    return g


def _pymatgen_edges(structure: Structure, cutoff: float):
    s = structure.copy()
    s.translate_sites(list(range(len(s))), np.zeros(3), to_unit_cell=True)
    centers, points, images, dists = s.get_neighbor_list(cutoff)
    return {(int(c), int(p), *map(int, np.round(im))) for c, p, im in zip(centers, points, images, strict=True)}, dists


@pytest.mark.parametrize(
    "structure",
    [
        Structure(Lattice.cubic(3.0), ["Nb", "N"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(Lattice.from_parameters(2.9, 3.4, 6.1, 71, 102, 117), ["V", "N", "N"],
                  [[0.1, 0.2, 0.3], [0.6, 0.55, 0.9], [0.95, 0.05, 0.47]]),
        Structure(Lattice.hexagonal(2.5, 4.1), ["Mg"], [[0.0, 0.0, 0.0]]),
    ],
)
@pytest.mark.parametrize("cutoff", [3.0, 7.0])
def test_graph_matches_pymatgen(structure, cutoff):
    g = _edges(structure, cutoff)
    ours = {(int(d), int(s), *map(int, o)) for d, s, o in zip(g.dst, g.src, g.offset.round().long(), strict=True)}
    theirs, dists = _pymatgen_edges(structure, cutoff)
    assert ours == theirs
    np.testing.assert_allclose(np.sort(g.dist.numpy()), np.sort(dists), atol=1e-8)


def test_graph_on_real_jarvis_structures(jarvis_train):
    for _, s, _ in jarvis_train[:8]:
        g = _edges(s, 6.0)
        theirs, dists = _pymatgen_edges(s, 6.0)
        assert len(g.src) == len(theirs)
        np.testing.assert_allclose(np.sort(g.dist.numpy()), np.sort(dists), atol=1e-6)


def test_max_neighbors_keeps_nearest():
    s = Structure(Lattice.from_parameters(3.1, 3.3, 3.9, 80, 95, 100), ["Ti", "O"], [[0, 0, 0], [0.4, 0.45, 0.52]])
    full = _edges(s, 7.0)
    capped = _edges(s, 7.0, max_neighbors=5)
    for atom in range(len(s)):
        d_full = np.sort(full.dist[full.dst == atom].numpy())[:5]
        d_cap = np.sort(capped.dist[capped.dst == atom].numpy())
        np.testing.assert_allclose(d_cap, d_full)


def test_graph_invariant_to_cell_choice_and_translation():
    s = Structure(Lattice.from_parameters(3.0, 3.6, 4.4, 85, 97, 105), ["Al", "N", "N"],
                  [[0.1, 0.2, 0.3], [0.6, 0.55, 0.9], [0.95, 0.05, 0.47]])
    ref = np.sort(_edges(s, 5.5).dist.numpy())
    # unimodular change of basis: same crystal, different cell vectors
    M = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 1]])
    s2 = Structure(Lattice(M @ s.lattice.matrix), s.species, s.cart_coords, coords_are_cartesian=True)
    np.testing.assert_allclose(np.sort(_edges(s2, 5.5).dist.numpy()), ref, atol=1e-8)
    s3 = s.copy()
    s3.translate_sites(list(range(len(s))), [0.37, 0.81, 0.12])
    np.testing.assert_allclose(np.sort(_edges(s3, 5.5).dist.numpy()), ref, atol=1e-8)


def test_lattice_params_roundtrip():
    lengths = torch.tensor([[3.0, 4.0, 5.0], [2.5, 2.5, 7.0]], dtype=torch.float64)
    angles = torch.tensor([[80.0, 95.0, 110.0], [90.0, 90.0, 120.0]], dtype=torch.float64)
    L = lattice_from_params(lengths, angles)
    ref = Lattice.from_parameters(3.0, 4.0, 5.0, 80, 95, 110).matrix
    np.testing.assert_allclose(L[0].numpy(), ref, atol=1e-10)
    le, an = lattice_to_params(L)
    np.testing.assert_allclose(le.numpy(), lengths.numpy())
    np.testing.assert_allclose(an.numpy(), angles.numpy(), atol=1e-8)
