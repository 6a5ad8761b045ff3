"""Duplicates within a batch and novelty against the training set, on constructed cases."""

from __future__ import annotations

import numpy as np
from pymatgen.core import Lattice, Structure
from screening_testutils import b2, cu3al

from sc_inverse.data import load_jarvis_sc
from sc_inverse.screening.triage import TrainingIndex, find_duplicates, novelty, rank_order


def test_duplicates_supercell_perturbed_translated_are_found():
    base = cu3al()
    sup = base.copy()
    sup.make_supercell([2, 1, 1])
    rng = np.random.default_rng(0)
    pert = base.copy()
    pert.perturb(0.02, min_distance=0.0)
    shifted = base.copy()
    shifted.translate_sites(list(range(len(shifted))), rng.random(3))
    strained = Structure(Lattice.cubic(3.75), base.species, base.frac_coords)  # 1.4 % larger
    other = b2()  # different composition
    polymorph = Structure(Lattice.tetragonal(3.6, 7.4), ["Al", "Cu", "Cu", "Cu"],
                          [[0, 0, 0], [0.5, 0.5, 0.25], [0, 0, 0.5], [0.5, 0.5, 0.75]])  # D0_22-like
    dup = find_duplicates([base, sup, pert, shifted, strained, other, polymorph, None])
    assert dup == [None, 0, 0, 0, 0, None, None, None]


def test_novelty_against_training_structures():
    train = load_jarvis_sc("train")
    ref = train[0]["structure"]
    index = TrainingIndex.from_pairs([(r["jid"], r["structure"]) for r in train])
    same = ref.copy()  # the same crystal as a rattled supercell
    same.make_supercell([1, 1, 2])
    same.perturb(0.01)
    novel = Structure(Lattice.cubic(3.3), ["Xe", "Cs"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert "CsXe" not in index.by_formula
    flags = novelty([same, novel, None], index=index)
    assert flags[0].known_structure == train[0]["jid"] and flags[0].known_composition
    assert (flags[1].known_structure, flags[1].known_composition) == (None, False)
    assert flags[2] is None


def test_known_composition_but_new_structure():
    index = TrainingIndex.from_pairs([("ref-1", cu3al())])
    polymorph = Structure(Lattice.tetragonal(3.6, 7.4), ["Al", "Cu", "Cu", "Cu"],
                          [[0, 0, 0], [0.5, 0.5, 0.25], [0, 0, 0.5], [0.5, 0.5, 0.75]])
    nv = novelty([polymorph, cu3al(3.8), b2()], index=index)
    assert (nv[0].known_structure, nv[0].known_composition) == (None, True)
    assert (nv[1].known_structure, nv[1].known_composition) == ("ref-1", True)
    assert (nv[2].known_structure, nv[2].known_composition) == (None, False)


def test_rank_order():
    assert rank_order([(1.0, None), (None, 0.0), (7.0, -0.1), (7.0, -0.5)]) == [3, 2, 0, 1]
