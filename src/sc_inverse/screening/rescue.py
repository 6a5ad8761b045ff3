"""Soft-mode rescue with the MLIP phonons of the screen (``mlip_dynamically_stable``).

The rescue loop and the geometry live in :mod:`sc_inverse.softmodes`; this module supplies its two
callables from :mod:`sc_inverse.screening.phonons`:

* ``check``: :func:`~sc_inverse.screening.phonons.mlip_phonons` (symmetrise, relax under symmetry,
  finite-displacement force constants, 20³-mesh verdict) plus the eigenvectors of the unstable
  modes at Γ and the zone-boundary points of the cell (every q with components 0 or ½: each fits
  a supercell of at most 2×2×2 cells, so a frozen-in mode never makes a big cell);
* ``relax``: positions and cell relaxed freely (no symmetry constraint: the symmetry must drop).

An instability found only between those q points is reported but not followed (a frozen-in
incommensurate mode needs a large supercell that neither the screen nor DFT can afford).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymatgen.core import Structure

from sc_inverse.records import CandidateRecord
from sc_inverse.screening.phonons import (
    DEFAULT_POTENTIAL,
    DEFAULT_TOLERANCE_THZ,
    N_ACOUSTIC,
    PhononResult,
    PhononSettings,
    mlip_phonons,
    phonon_calculator,
    relax_with_symmetry,
)
from sc_inverse.softmodes import (
    AMPLITUDES_A,
    MAX_ROUNDS,
    MIN_ENERGY_GAIN_EV_PER_ATOM,
    PhononMode,
    RescueResult,
    StabilityCheck,
    rescue,
)
from sc_inverse.units import THZ_TO_CM1

#: Γ and the zone-boundary points of the cell's reciprocal lattice (reduced coordinates)
ZONE_BOUNDARY_Q: tuple[tuple[float, float, float], ...] = tuple(itertools.product((0.0, 0.5), repeat=3))
#: free relaxation of a displaced cell: tighter than the screen's pre-relaxation (0.1 eV/Å) because
#: the energy gain of a soft mode can be a few meV/atom
RELAX_FMAX_EV_PER_A = 0.01
RELAX_MAX_STEPS = 500


def phonopy_modes(phonopy, qpoints=ZONE_BOUNDARY_Q, tolerance_THz: float = DEFAULT_TOLERANCE_THZ) -> list[PhononMode]:
    """The modes below ``-tolerance_THz`` at ``qpoints`` (acoustic modes at Γ excluded), as
    :class:`~sc_inverse.softmodes.PhononMode` in the lattice-vector phase convention.

    phonopy's eigenvectors e_j carry the phase of the full position; the pattern is
    d_j = e_j/√m_j · exp(i2π q·τ_j) (τ_j fractional, phonopy's primitive = the cell given).
    """
    q = np.asarray(qpoints, dtype=float)
    phonopy.run_qpoints(q, with_eigenvectors=True)
    freqs, vecs = phonopy.qpoints.frequencies, phonopy.qpoints.eigenvectors
    masses = np.asarray(phonopy.primitive.masses)
    tau = np.asarray(phonopy.primitive.scaled_positions)
    modes = []
    for iq, qv in enumerate(q):
        f = np.array(freqs[iq], dtype=float)
        if np.all(np.abs(qv) < 1e-8):
            f[np.argsort(np.abs(f))[:N_ACOUSTIC]] = np.inf
        phase = np.exp(2j * np.pi * tau @ qv)[:, None]
        for band in np.where(f < -abs(tolerance_THz))[0]:
            e = np.asarray(vecs[iq][:, band]).reshape(-1, 3)
            modes.append(PhononMode(tuple(qv), float(f[band]) * THZ_TO_CM1, e / np.sqrt(masses)[:, None] * phase))
    return modes


def energy_per_atom(structure: Structure, calculator) -> float:
    """The calculator's energy per atom (eV) of ``structure`` as given."""
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = calculator
    return float(atoms.get_potential_energy()) / len(atoms)


@dataclass
class MlipRescuer:
    """The rescue's ``check`` and ``relax`` on one MLIP (the screen's phonon potential and settings)."""

    calculator: Any = None
    potential: str = DEFAULT_POTENTIAL
    settings: PhononSettings = field(default_factory=PhononSettings)
    tolerance_THz: float = DEFAULT_TOLERANCE_THZ
    qpoints: tuple[tuple[float, float, float], ...] = ZONE_BOUNDARY_Q
    relax_fmax_eV_per_A: float = RELAX_FMAX_EV_PER_A
    relax_max_steps: int = RELAX_MAX_STEPS
    seconds: float = 0.0

    def __post_init__(self):
        if self.calculator is None:
            self.calculator = phonon_calculator(self.potential)

    def check(self, structure: Structure, result: PhononResult | None = None) -> StabilityCheck:
        """MLIP phonons of ``structure`` (or ``result``, already computed with ``keep_phonopy``)."""
        t0 = time.perf_counter()
        r = result or mlip_phonons(structure, self.calculator, self.settings, self.potential, keep_phonopy=True)
        verdict = r.verdict(self.tolerance_THz)
        cell = r.structure if r.structure is not None else structure
        check = StabilityCheck(stable=None if verdict == "not_evaluated" else verdict == "stable",
                               structure=cell, energy_per_atom_eV=None, error=r.error, info=r,
                               min_frequency_cm1=None if r.min_frequency_THz is None else r.min_frequency_THz * THZ_TO_CM1)
        if r.structure is not None:
            check.energy_per_atom_eV = energy_per_atom(cell, self.calculator)
        if check.stable is False and r.phonopy is not None:
            check.modes = phonopy_modes(r.phonopy, self.qpoints, self.tolerance_THz)
        r.phonopy = None  # force constants are big; the modes are what the loop needs
        self.seconds += time.perf_counter() - t0
        return check

    def relax(self, structure: Structure) -> tuple[Structure, float]:
        """Free relaxation (positions + cell) of a displaced cell; its energy per atom (eV)."""
        t0 = time.perf_counter()
        relaxed, _, _ = relax_with_symmetry(structure, self.calculator, self.relax_fmax_eV_per_A,
                                            self.relax_max_steps, keep_symmetry=False)
        e = energy_per_atom(relaxed, self.calculator)
        self.seconds += time.perf_counter() - t0
        if not math.isfinite(e):
            raise ValueError("non-finite energy after relaxation")
        return relaxed, e

    def rescue(self, structure: Structure, parent_id: str, initial: PhononResult | None = None,
               max_rounds: int = MAX_ROUNDS, amplitudes_A=AMPLITUDES_A,
               min_energy_gain_eV_per_atom: float = MIN_ENERGY_GAIN_EV_PER_ATOM) -> RescueResult:
        """:func:`sc_inverse.softmodes.rescue` on this MLIP; ``initial`` = the screen's phonon result."""
        first = self.check(structure, initial) if initial is not None else None
        return rescue(structure, self.check, self.relax, parent_id, max_rounds=max_rounds,
                      amplitudes_A=amplitudes_A, min_energy_gain_eV_per_atom=min_energy_gain_eV_per_atom,
                      initial=first)


def rescue_summary(result: RescueResult, seconds: float | None = None) -> dict[str, Any]:
    """JSON-ready account of one rescue: every attempt, why it stopped, the children's ids."""
    return {"steps": [s.as_dict() for s in result.steps], "reason": result.reason,
            "children": [c.id for c in result.children], "rescued": result.rescued,
            **({"seconds": round(seconds, 2)} if seconds is not None else {})}


def child_records(parent: CandidateRecord, result: RescueResult) -> list[CandidateRecord]:
    """One unscreened record per accepted child (``origin`` "rescue", ``parent_id`` its parent);
    the provenance keeps the parent's and the rescue step that made it."""
    out = []
    for child in result.children:
        step = next(s for s in result.steps if s.child_id == child.id)
        out.append(CandidateRecord.from_structure(
            child.structure, id=child.id, origin="rescue", parent_id=child.parent_id,
            provenance={**parent.provenance, "rescue": {**step.as_dict(), "root_id": parent.id,
                                                        "spacegroup": getattr(child.check.info, "spacegroup", None)}}))
    return out
