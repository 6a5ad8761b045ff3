"""Symmetry recovery for generated crystals (the reference study's outputs were all P1).

spglib (through pymatgen's SpacegroupAnalyzer) is run at a ladder of tolerances; at each
tolerance the symmetrised (idealised) cell is compared with the input by StructureMatcher and
kept only if the RMS displacement of the atoms stays within ``max_rms_A`` (default 0.15 Å,
about the positional noise left by the last Langevin levels and well below a bond length).
Among the accepted ones the cell with the largest point group (then space-group number) wins,
returned in its primitive standard setting.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator

from pymatgen.core import Structure

from sc_inverse.records import SymmetryInfo

# StructureMatcher and SpacegroupAnalyzer (~0.7 s each to import) are imported where used:
# generation imports this module whether or not it symmetrises

log = logging.getLogger(__name__)

DEFAULT_TOLERANCES_A = (0.01, 0.03, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)
DEFAULT_MAX_RMS_A = 0.15


def _label(sga) -> str:
    return f"{sga.get_space_group_symbol()} ({sga.get_space_group_number()})"


def _rms_displacement_A(original: Structure, candidate: Structure) -> float | None:
    """Absolute RMS displacement (Å) after optimal superposition, or None if no match."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    sm = StructureMatcher(ltol=0.2, stol=0.6, angle_tol=5, primitive_cell=True, scale=False,
                          attempt_supercell=True)
    res = sm.get_rms_dist(original, candidate)
    if res is None:
        return None
    # StructureMatcher normalises by (volume per site)^(1/3)
    return float(res[0]) * (original.volume / len(original)) ** (1 / 3)


@contextlib.contextmanager
def quiet_spglib() -> Iterator[None]:
    """Silence spglib's C-level messages ("spglib: ssm_get_exact_positions failed." ...,
    hundreds per generated batch at loose tolerances) through its own switch, which spglib
    >= 2 reads on every call; a value the user set is left alone."""
    if "SPGLIB_WARNING" in os.environ:
        yield
        return
    os.environ["SPGLIB_WARNING"] = "OFF"
    try:
        yield
    finally:
        os.environ.pop("SPGLIB_WARNING", None)


def recover_symmetry(
    structure: Structure,
    tolerances: tuple[float, ...] = DEFAULT_TOLERANCES_A,
    max_rms_A: float = DEFAULT_MAX_RMS_A,
    angle_tolerance: float = 5.0,
) -> tuple[Structure, SymmetryInfo]:
    """Highest-symmetry cell within ``max_rms_A`` of ``structure``; never raises on bad cells."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    with warnings.catch_warnings(), quiet_spglib():
        warnings.simplefilter("ignore")
        try:
            before = _label(SpacegroupAnalyzer(structure, symprec=min(tolerances)))
        except Exception as exc:  # noqa: BLE001 - spglib fails on overlapping atoms etc.
            log.info("spglib failed on %s: %s", structure.composition.reduced_formula, exc)
            return structure, SymmetryInfo(spacegroup_before=None, spacegroup_after=None)
        best, best_key, best_info = structure, (0, 0), SymmetryInfo(
            spacegroup_before=before, spacegroup_after=before, rms_displacement_A=0.0, tolerance_A=None
        )
        for tol in tolerances:
            try:
                sga = SpacegroupAnalyzer(structure, symprec=tol, angle_tolerance=angle_tolerance)
                key = (len(sga.get_point_group_operations()), sga.get_space_group_number())
                if key <= best_key:
                    continue
                refined = sga.get_primitive_standard_structure()
                rms = _rms_displacement_A(structure, refined)
            except Exception as exc:  # noqa: BLE001 - skip tolerances spglib cannot handle
                log.debug("tolerance %.3f failed: %s", tol, exc)
                continue
            if rms is None or rms > max_rms_A:
                continue
            best, best_key = refined, key
            best_info = SymmetryInfo(spacegroup_before=before, spacegroup_after=_label(sga),
                                     rms_displacement_A=round(rms, 4), tolerance_A=tol)
    return best, best_info
