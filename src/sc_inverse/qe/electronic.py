"""Band gap and density of states at the Fermi level from a pw.x run's eigenvalues.

The paper's screen keeps candidates with E_gap < 0.05 eV (metals). Its ML gap model is not
available offline, so the gap is evaluated from the scf every DFT candidate runs anyway
(:class:`ElectronicSummary`, filled by :meth:`~sc_inverse.qe.schemas.PwTaskDoc.from_directory`).

**Metal or gap: band filling, not the Fermi level.** In each spin channel the number of
filled bands is the channel's electron count per k point (Σ_k w_k Σ_n f_nk with weights
normalised to 1; nelec/2 without spin polarisation). A non-integer count (e.g. fcc Al: 1.5)
means a partly filled band: a metal, gap 0. An integer count m is gapped when the lowest
eigenvalue of band m+1 lies above the highest of band m over all k points (and over both
channels for lsda: gap = min CBM − max VBM, ≤ 0 means metal). Testing which bands cross E_F
instead fails at the project's smearing: diamond Si (LDA) with Methfessel–Paxton 0.05 Ry puts
E_F 0.08 eV *below* its valence-band maximum (measured, ``tests/qe/test_electronic.py``), so every
semiconductor run with that smearing would look metallic.

The gap is that of the scf k grid: the band extrema between grid points are missed, so it is an
upper bound of the Kohn–Sham gap (diamond Si on a 4³ grid: 0.62 eV vs ~0.5 eV).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from sc_inverse.errors import ParseError
from sc_inverse.qe.parsers import PwBands, parse_pw_xml, pw_xml_path
from sc_inverse.units import RY_TO_EV

logger = logging.getLogger(__name__)

#: Gaussian width of N(E_F) when the run has no smearing (fixed occupations, tetrahedra): 0.01 Ry
DEFAULT_DOS_BROADENING_EV = 0.01 * RY_TO_EV
#: a channel's filled-band count within this of an integer counts as integer (smearing tails)
FILLING_TOLERANCE = 0.02
#: what ElectronicSummary.source says
SOURCE = "pw.x scf eigenvalues"


class ElectronicSummary(BaseModel):
    """Gap, metallicity and N(E_F) of one pw.x run (eV; N(E_F) per cell, both spins).

    ``dos_at_fermi_states_per_eV`` is Σ_k w_k Σ_n g(E_F − ε_nk) with a *Gaussian* g of width
    ``dos_broadening_eV`` = the run's ``degauss`` (whatever its smearing kind: Methfessel–Paxton's
    own δ-approximation can go negative), or 0.01 Ry without smearing. ``fermi_energy_eV``:
    the run's Fermi energy; with fixed occupations the middle of the gap (QE prints the highest
    occupied level there instead).
    """

    band_gap_eV: float | None = Field(
        None, description="CBM − VBM on the scf k grid; 0.0 for a metal; None: undetermined.")
    is_metal: bool | None = None
    dos_at_fermi_states_per_eV: float | None = Field(
        None, description="N(E_F), states/eV per cell, both spins (Gaussian, see class doc).")
    fermi_energy_eV: float | None = None
    smearing_eV: float | None = Field(None, description="The run's degauss (eV); None: fixed.")
    smearing: str | None = Field(None, description="The run's smearing kind (gaussian, mv, …).")
    dos_broadening_eV: float | None = Field(None, description="Gaussian width used for N(E_F).")
    valence_band_max_eV: float | None = None
    conduction_band_min_eV: float | None = None
    filled_bands: list[float] = Field(
        default_factory=list, description="Electrons per k point in each spin channel "
        "(filled-band count; non-integer = metal).")
    spin_polarized: bool = False
    n_kpoints: int | None = None
    n_bands: int | None = None
    source: str = SOURCE
    reason: str | None = Field(None, description="Why the gap is undetermined (None when known).")

    def passes_gap(self, threshold_eV: float) -> bool | None:
        """The paper's ``gap_eV < threshold`` (None when the gap is unknown)."""
        return None if self.band_gap_eV is None else self.band_gap_eV < threshold_eV


def filled_bands(bands: PwBands) -> np.ndarray:
    """Electrons per (normalised) k point in each spin channel: nelec/2 without spin
    polarisation, N_up and N_down with lsda, nelec for noncollinear spins."""
    w = bands.kpoint_weights / bands.kpoint_weights.sum()
    return np.einsum("k,skn->s", w, bands.occupations)


def band_edges(bands: PwBands) -> tuple[float | None, float | None, str | None]:
    """(VBM, CBM, reason): the extrema of the last filled and first empty bands over every
    channel and k point; VBM ≥ CBM or a non-integer filling is a metal (reason "metal")."""
    vbm, cbm = [], []
    for channel, count in zip(bands.eigenvalues_eV, filled_bands(bands), strict=True):
        m = round(count)
        if abs(count - m) > FILLING_TOLERANCE:
            return None, None, "metal"
        if m >= channel.shape[1]:
            return None, None, f"no empty band computed ({channel.shape[1]} bands, {m} filled)"
        if m > 0:
            vbm.append(channel[:, m - 1].max())
        cbm.append(channel[:, m].min())
    if not vbm:
        return None, None, "no filled band"
    top, bottom = float(max(vbm)), float(min(cbm))
    return top, bottom, "metal" if bottom <= top else None


def gaussian_dos(bands: PwBands, energy_eV: float, sigma_eV: float) -> float:
    """Σ_k w_k Σ_n g_σ(E − ε_nk): states/eV per cell, both spins (weights normalised to 1 and
    times the spin degeneracy, so the count does not depend on QE's weight convention)."""
    w = bands.kpoint_weights / bands.kpoint_weights.sum() * bands.spin_degeneracy
    x = (energy_eV - bands.eigenvalues_eV) / sigma_eV
    g = np.exp(-0.5 * x * x) / (sigma_eV * math.sqrt(2.0 * math.pi))
    return float(np.einsum("k,skn->", w, g))


def electronic_summary(bands: PwBands) -> ElectronicSummary:
    """Gap (0 for a metal), metallicity and Gaussian N(E_F) of parsed pw.x bands."""
    vbm, cbm, reason = band_edges(bands)
    metal = reason == "metal"
    gap = 0.0 if metal else (None if reason else cbm - vbm)
    fermi = bands.fermi_energy_eV
    if bands.occupations_kind == "fixed" or fermi is None:
        fermi = (vbm + cbm) / 2 if gap is not None and not metal else bands.highest_occupied_eV
    if bands.fermi_energies_eV is not None and fermi is None:
        fermi = float(np.mean(bands.fermi_energies_eV))
    sigma = bands.degauss_eV or DEFAULT_DOS_BROADENING_EV
    return ElectronicSummary(
        band_gap_eV=gap,
        is_metal=None if gap is None else metal,
        dos_at_fermi_states_per_eV=None if fermi is None else gaussian_dos(bands, fermi, sigma),
        fermi_energy_eV=fermi,
        smearing_eV=bands.degauss_eV,
        smearing=bands.smearing,
        dos_broadening_eV=sigma,
        valence_band_max_eV=None if metal else vbm,
        conduction_band_min_eV=None if metal else cbm,
        filled_bands=[float(x) for x in filled_bands(bands)],
        spin_polarized=bands.lsda,
        n_kpoints=bands.eigenvalues_eV.shape[1],
        n_bands=bands.eigenvalues_eV.shape[2],
        reason=None if (metal or reason is None) else reason,
    )


def electronic_from_outdir(outdir: str | Path | None, prefix: str | None) -> ElectronicSummary | None:
    """:func:`electronic_summary` of the XML pw.x wrote in ``outdir``; None (and a logged
    reason) when there is none or it cannot be read: a task document must not fail for it."""
    if outdir is None or prefix is None:
        logger.info("no electronic summary: the run has no outdir/prefix")
        return None
    path = pw_xml_path(outdir, prefix)
    try:
        return electronic_summary(parse_pw_xml(path))
    except ParseError as exc:
        logger.warning("no electronic summary (band gap, N(E_F)): %s", exc)
        return None
