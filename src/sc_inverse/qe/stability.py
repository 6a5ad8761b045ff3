"""Dynamical stability from ASR-corrected phonons: the ``dynamically_stable`` verdict.

ph.x's dynamical matrices do not satisfy the acoustic sum rule (ASR) exactly: finite cutoffs
and the exchange-correlation grid leave the three acoustic modes at Γ at a few tens of cm⁻¹,
real or imaginary (bcc Nb: −23 cm⁻¹), which says nothing about stability. The verdict reads
matdyn.x's frequencies instead, computed from q2r.x's force constants with the ASR imposed
(:data:`~sc_inverse.qe.sets.MATDYN_ASR`):

* on ph.x's irreducible q points (``qgrid.freq``): on a grid point the Fourier interpolation
  returns ph.x's own matrix, so these are the DFPT phonons plus the ASR correction;
* on the irreducible points of matdyn's DOS mesh (``qe.freq``), which sees instabilities
  between the q-grid points (through the interpolation).

The three acoustic modes at Γ (zero by construction once the ASR holds) are left out. A crystal
is dynamically stable when every other mode is at or above ``threshold_cm1`` (imaginary
frequencies are written negative, as QE does); the default, −20 cm⁻¹
(:data:`~sc_inverse.qe.sets.DEFAULT_IMAGINARY_THRESHOLD_CM1`), tolerates the Fourier-interpolation
noise of the acoustic branches near Γ on a coarse q grid and catches the instabilities DFT
establishes: measured on real runs (``tests/test_data/qe/stability/README.md``) the stable
crystals' lowest modes lie within a few cm⁻¹ of zero and bcc Zr's N-point mode at −86 cm⁻¹.
ph.x's raw minimum is kept beside the verdict for comparison, never used by it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sc_inverse.qe.parsers import MatdynFrequencies

#: Number of acoustic modes at Γ, left out of the verdict.
N_ACOUSTIC = 3
#: |q| (2π/alat) below which a point is Γ.
GAMMA_TOL = 1e-6


@dataclass(frozen=True)
class SoftestMode:
    """The lowest mode of a set of q points (acoustic modes at Γ left out)."""

    frequency_cm1: float
    q_2pi_alat: list[float]
    n_qpoints: int  # q points looked at
    n_unstable_qpoints: int  # of which with a mode below the threshold


def is_gamma(q: Sequence[float]) -> bool:
    return float(np.linalg.norm(q)) < GAMMA_TOL


def softest_mode(freqs: MatdynFrequencies, threshold_cm1: float) -> SoftestMode | None:
    """Lowest mode over ``freqs``' q points, the acoustic modes at Γ left out; None when no
    mode is left (a one-atom cell whose only q point is Γ)."""
    best: tuple[float, list[float]] | None = None
    n_unstable = 0
    for q, modes in zip(freqs.qpoints_2pi_alat, freqs.frequencies_cm1, strict=True):
        modes = sorted(modes)[N_ACOUSTIC:] if is_gamma(q) else sorted(modes)
        if not modes:
            continue
        n_unstable += modes[0] < threshold_cm1
        if best is None or modes[0] < best[0]:
            best = (modes[0], list(q))
    if best is None:
        return None
    return SoftestMode(best[0], best[1], len(freqs.qpoints_2pi_alat), n_unstable)


@dataclass(frozen=True)
class StabilityVerdict:
    """The verdict and what it was judged on."""

    stable: bool | None  # None: no mode to judge
    threshold_cm1: float
    min_frequency_raw_cm1: float
    qgrid: SoftestMode | None
    mesh: SoftestMode | None
    reason: str

    @property
    def softest(self) -> tuple[str, SoftestMode] | None:
        """("q grid" | "mesh", its softest mode): the lower of the two."""
        return _lowest(self.qgrid, self.mesh)


def _lowest(qgrid: SoftestMode | None, mesh: SoftestMode | None) -> tuple[str, SoftestMode] | None:
    found = [(name, m) for name, m in (("q grid", qgrid), ("mesh", mesh)) if m is not None]
    return min(found, key=lambda t: t[1].frequency_cm1) if found else None


def _fmt_q(q: Sequence[float]) -> str:
    return "(" + ", ".join(f"{x:.4f}" for x in q) + ") 2π/alat"


def assess_stability(min_frequency_raw_cm1: float, qgrid: MatdynFrequencies,
                     mesh: MatdynFrequencies, threshold_cm1: float) -> StabilityVerdict:
    """Verdict on the ASR-corrected q-grid (``qgrid``) and mesh (``mesh``) frequencies."""
    on_grid, on_mesh = softest_mode(qgrid, threshold_cm1), softest_mode(mesh, threshold_cm1)
    raw = f"ph.x's raw minimum {min_frequency_raw_cm1:.1f} cm⁻¹ (before the acoustic sum rule)"
    lowest = _lowest(on_grid, on_mesh)
    if lowest is None:
        reason = ("no mode to judge: the q grid and the mesh hold only Γ, whose modes are the "
                  f"acoustic ones; {raw}")
        return StabilityVerdict(None, threshold_cm1, min_frequency_raw_cm1, None, None, reason)
    where, mode = lowest
    stable = mode.frequency_cm1 >= threshold_cm1
    counts = "; ".join(
        f"{m.n_unstable_qpoints} of {m.n_qpoints} {name} points below {threshold_cm1:g} cm⁻¹"
        for name, m in (("q-grid", on_grid), ("mesh", on_mesh)) if m is not None
    )
    reason = (
        f"{'stable' if stable else 'unstable'}: lowest ASR-corrected mode {mode.frequency_cm1:.1f} "
        f"cm⁻¹ at q = {_fmt_q(mode.q_2pi_alat)} on the {where} (threshold {threshold_cm1:g} cm⁻¹, "
        f"acoustic modes at Γ excluded); {counts}; {raw}"
    )
    return StabilityVerdict(stable, threshold_cm1, min_frequency_raw_cm1, on_grid, on_mesh, reason)
