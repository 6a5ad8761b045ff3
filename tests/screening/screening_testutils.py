"""Helpers of the screening tests: constructed structures and a fake predictor."""

from __future__ import annotations

import numpy as np
from pymatgen.core import Lattice, Structure

TINY_MODEL = {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 16,
              "edge_input_features": 16, "triplet_input_features": 8}


def fcc(el: str = "Cu", a: float = 3.6) -> Structure:
    return Structure(Lattice.cubic(a), [el] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def cu3al(a: float = 3.7) -> Structure:
    return Structure(Lattice.cubic(a), ["Al", "Cu", "Cu", "Cu"],
                     [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def b2(a: float = 2.95, els=("Cu", "Al")) -> Structure:
    return Structure(Lattice.cubic(a), list(els), [[0, 0, 0], [0.5, 0.5, 0.5]])


def isolated_atom() -> Structure:
    """One atom in a 20 A box: no neighbour within the 8 A cutoff -> the graph builder rejects it."""
    return Structure(Lattice.cubic(20.0), ["Cu"], [[0, 0, 0]])


class FakeTcPredictor:
    """Deterministic stand-in for ALIGNN in fast screen tests (the real model is tested too).

    T_c = 10 K x (Cu fraction); NaN (with an error) for structures containing Ag.
    """

    key = "tc_K"
    source = "fake"

    def __init__(self):
        self.calls = 0

    def predict_with_errors(self, structures, batch_size=64, device=None, progress=False):
        self.calls += 1
        vals, errs = [], []
        for s in structures:
            if "Ag" in {e.symbol for e in s.composition}:
                vals.append(float("nan"))
                errs.append("model returned a non-finite value (NaN/inf)")
            else:
                vals.append(10.0 * s.composition.get_atomic_fraction("Cu"))
                errs.append(None)
        return np.array(vals), errs

    def predict(self, structures, batch_size=64, device=None):
        return self.predict_with_errors(structures)[0]
