"""Triage: duplicates within a batch, novelty against the training set, ranking of survivors.

Both comparisons use pymatgen's :class:`StructureMatcher` and only ever compare structures of
the same reduced formula, so a batch of thousands costs seconds, not hours.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from sc_inverse.data import load_jarvis_sc


def default_matcher() -> StructureMatcher:
    """pymatgen defaults (ltol 0.2, stol 0.3, 5 deg), primitive reduction and volume scaling on."""
    return StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5, primitive_cell=True, scale=True,
                            attempt_supercell=True)


def find_duplicates(
    structures: Sequence[Structure | None], matcher: StructureMatcher | None = None
) -> list[int | None]:
    """For each structure the index of the earlier structure it duplicates, else None."""
    matcher = matcher or default_matcher()
    out: list[int | None] = [None] * len(structures)
    by_formula: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(structures):
        if s is not None:
            by_formula[s.composition.reduced_formula].append(i)
    for idx in by_formula.values():
        reps: list[int] = []
        for i in idx:
            for r in reps:
                if matcher.fit(structures[r], structures[i]):
                    out[i] = r
                    break
            else:
                reps.append(i)
    return out


@dataclass
class TrainingIndex:
    """Training structures grouped by reduced formula (default: packaged JARVIS-SC, all splits)."""

    by_formula: dict[str, list[tuple[str, Structure]]] = field(default_factory=dict)

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[str, Structure]]) -> TrainingIndex:
        d: dict[str, list[tuple[str, Structure]]] = defaultdict(list)
        for jid, s in pairs:
            d[s.composition.reduced_formula].append((jid, s))
        return cls(dict(d))

    def has_composition(self, structure: Structure) -> bool:
        return structure.composition.reduced_formula in self.by_formula

    def matching_structure(self, structure: Structure, matcher: StructureMatcher | None = None) -> str | None:
        """id of a training structure that ``structure`` matches, else None."""
        matcher = matcher or default_matcher()
        for jid, ref in self.by_formula.get(structure.composition.reduced_formula, []):
            if matcher.fit(ref, structure):
                return jid
        return None


@lru_cache(maxsize=1)
def jarvis_sc_index() -> TrainingIndex:
    """Index of the packaged JARVIS-SC structures (the generator's and predictor's training data)."""
    return TrainingIndex.from_pairs([(r["jid"], r["structure"]) for r in load_jarvis_sc()])


@dataclass
class Novelty:
    known_structure: str | None  # id of the matching training structure
    known_composition: bool


def novelty(
    structures: Sequence[Structure | None],
    index: TrainingIndex | None = None,
    matcher: StructureMatcher | None = None,
) -> list[Novelty | None]:
    """Novelty flags for each structure (None where the structure is missing)."""
    index = index or jarvis_sc_index()
    matcher = matcher or default_matcher()
    out: list[Novelty | None] = []
    for s in structures:
        if s is None:
            out.append(None)
            continue
        out.append(Novelty(index.matching_structure(s, matcher), index.has_composition(s)))
    return out


def rank_order(scores: Sequence[tuple[float | None, float | None]]) -> list[int]:
    """Indices sorted best first: primary score descending, then secondary ascending.

    Missing primary scores go last.
    """
    def key(i: int):
        p, s = scores[i]
        return (p is None, -(p or 0.0), s if s is not None else float("inf"))

    return sorted(range(len(scores)), key=key)
