"""Symmetry recovery and generator metrics on structures with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from sc_inverse.generative.metrics import (
    compositional_validity,
    coverage,
    novelty_flags,
    structural_validity,
    unique_groups,
)
from sc_inverse.generative.symmetry import recover_symmetry


def _rocksalt_p1(noise: float, seed: int = 0) -> Structure:
    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.4), ["Nb", "N"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    s = s.get_primitive_structure()
    rng = np.random.default_rng(seed)
    return Structure(s.lattice, s.species, s.cart_coords + rng.normal(0, noise, (len(s), 3)),
                     coords_are_cartesian=True)


def test_symmetry_recovered_within_displacement_limit():
    noisy = _rocksalt_p1(0.03, seed=1)
    noisy = noisy.copy()
    noisy.make_supercell([1, 1, 2])  # P1 cell of 4 atoms
    refined, info = recover_symmetry(noisy)
    assert info.spacegroup_before.startswith("P1 ") or "(1)" in info.spacegroup_before or info.spacegroup_before != info.spacegroup_after
    assert info.spacegroup_after == "Fm-3m (225)"
    assert info.rms_displacement_A <= 0.15
    assert len(refined) == 2


def test_symmetry_not_forced_beyond_limit():
    noisy = _rocksalt_p1(0.4, seed=2)
    _, info = recover_symmetry(noisy, max_rms_A=0.05)
    assert info.spacegroup_after != "Fm-3m (225)"


def test_validity_checks():
    nacl = Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert structural_validity(nacl) and compositional_validity(nacl)
    close = Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])
    assert not structural_validity(close)
    assert not compositional_validity(Structure(Lattice.cubic(5.6), ["Na", "F", "F"],
                                                [[0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]]))
    assert compositional_validity(Structure(Lattice.cubic(3.0), ["Nb", "Ti"], [[0, 0, 0], [0.5, 0.5, 0.5]]))


def test_uniqueness_and_novelty(jarvis_train):
    structs = [s for _, s, _ in jarvis_train[:6]]
    shifted = structs[0].copy()
    shifted.translate_sites(list(range(len(shifted))), [0.1, 0.2, 0.3])
    groups = unique_groups(structs + [shifted])
    assert len(groups) == 6
    assert novelty_flags(structs, structs) == [False] * 6
    assert novelty_flags([Structure(Lattice.cubic(3.3), ["Hf", "Ir"], [[0, 0, 0], [0.5, 0.5, 0.5]])], structs) == [True]


def test_coverage_definition():
    gen_site = [np.zeros(3), np.ones(3), None]
    gen_comp = np.array([[0.0], [5.0], [0.0]])
    ref_site = [np.zeros(3) + 0.1, np.ones(3) * 3]
    ref_comp = np.array([[0.0], [0.0]])
    cov = coverage(gen_site, gen_comp, [True, True, False], ref_site, ref_comp, (0.0, 1.0))
    assert cov["cov_recall"] == pytest.approx(0.5)  # second reference too far in structure
    assert cov["cov_precision"] == pytest.approx(1 / 3)  # only the first generated is close
