"""MLIP phonon pre-screen: is a relaxed candidate dynamically stable under a universal potential?

Every candidate sent to DFT costs a full ph.x electron–phonon run, thrown away when DFT finds
imaginary modes. A universal interatomic potential gives harmonic phonons in seconds: the cell is
symmetrised (spglib), re-relaxed with the phonon potential under its own symmetry (ASE
``FixSymmetry``: an MLIP's noise must not lower the symmetry DFT will see), and phonopy's finite
displacements give force constants, symmetrised (translational invariance + index permutation)
before the frequencies are sampled on a Γ-centred mesh. The three acoustic modes at Γ are excluded
(zero by translational invariance; what is left there is noise), everything else counts.

Potentials (all ship their weights in their wheels, so this works offline): CHGNet (the screen's
relaxation potential) and SevenNet-0, SevenNet-MF-0 and SevenNet-l3i5 from the ``sevenn`` wheel.
Defaults and the tolerance that separates noise from real instabilities were chosen by
``benchmarks/bench_mlip_phonons.py`` (numbers in ``docs/criteria.md``).

phonopy is used directly rather than atomate2's force-field phonon flow: that flow is one jobflow
job per displacement plus store round trips, while the screen needs a few seconds per candidate
inside one job.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import numpy as np
from pymatgen.core import Structure

from sc_inverse.errors import ModelLoadError
from sc_inverse.screening.relax import make_calculator

# phonopy, spglib (via pymatgen's analyzer) and the ASE optimisers are imported inside the
# functions: the screen imports this module even when the phonon criterion is absent

log = logging.getLogger(__name__)

StabilityVerdict = Literal["stable", "unstable", "not_evaluated"]

#: potential name -> (atomate2 MLFF name, calculator keyword arguments); weights ship in the wheels
POTENTIALS: dict[str, tuple[str, dict[str, Any]]] = {
    "CHGNet": ("CHGNet", {}),
    "SevenNet-0": ("SevenNet", {"model": "7net-0"}),
    "SevenNet-MF-0": ("SevenNet", {"model": "7net-mf-0", "modal": "PBE"}),
    "SevenNet-l3i5": ("SevenNet", {"model": "7net-l3i5"}),
}
#: lowest false-alarm rate measured (0/15 textbook crystals, 21/38 JARVIS-SC cells vs 28/38 for
#: CHGNet at the same settings; docs/criteria.md), and the only one to agree with DFT on all 5
#: recorded ph.x runs (at 0.1 THz)
DEFAULT_POTENTIAL = "SevenNet-MF-0"
#: frequencies above −tolerance count as stable (THz). Measured (docs/criteria.md): with
#: SevenNet-MF-0 no textbook-stable crystal goes below −0.07 THz, while the one DFT-unstable case
#: (bcc Zr, C' < 0) shows only −0.15 THz near Γ; 0.5 THz would miss it and flags 2 fewer of 38
#: JARVIS-SC cells
DEFAULT_TOLERANCE_THZ = 0.1
#: number of acoustic branches excluded at Γ
N_ACOUSTIC = 3


@dataclass(frozen=True)
class PhononSettings:
    """How the phonons are computed (recorded with every result).

    ``relax_fmax_eV_per_A`` None = take the cell as given (e.g. the DFT geometry); otherwise
    re-relax positions and cell, symmetry kept, to that force threshold.
    ``plus_minus`` True displaces each atom both ways; "auto" only where symmetry does not give
    the opposite displacement. With ``subtract_residual_forces`` (forces of the undisplaced
    supercell subtracted) both gave the same frequencies to 1e-4 THz on 6 JARVIS-SC cells with
    CHGNet, and "auto" needs half the force calls on symmetric cells.
    """

    displacement_A: float = 0.03  # 0.01 Å: CHGNet's float32 noise makes Al, TiC, MgB2, ZrN unstable
    min_supercell_length_A: float = 9.0
    mesh: int = 20
    plus_minus: bool | Literal["auto"] = "auto"
    symmetrize_force_constants: bool = True
    subtract_residual_forces: bool = True
    relax_fmax_eV_per_A: float | None = 0.005
    relax_max_steps: int = 400
    symprec_A: float = 0.01


@dataclass
class PhononResult:
    """One structure's MLIP phonons; ``min_frequency_THz`` excludes the acoustic modes at Γ."""

    potential: str
    settings: PhononSettings
    min_frequency_THz: float | None = None
    softest_q: tuple[float, float, float] | None = None
    min_optical_gamma_THz: float | None = None
    supercell: tuple[int, int, int] | None = None
    n_atoms_supercell: int | None = None
    n_displacements: int | None = None
    spacegroup: str | None = None
    relax_converged: bool | None = None
    relax_steps: int = 0
    relax_seconds: float = 0.0
    seconds: float = 0.0
    error: str | None = None
    structure: Structure | None = field(default=None, repr=False)
    phonopy: Any = field(default=None, repr=False, compare=False)  # kept only on request (rescue)

    def verdict(self, tolerance_THz: float = DEFAULT_TOLERANCE_THZ) -> StabilityVerdict:
        return stability_verdict(self.min_frequency_THz, tolerance_THz)

    def summary(self) -> dict[str, Any]:
        """JSON-ready dict without the structure; settings flattened under their own names."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("structure", "phonopy", "settings")}
        d.update(asdict(self.settings))
        return d


def stability_verdict(min_frequency_THz: float | None, tolerance_THz: float) -> StabilityVerdict:
    """stable when no mode (acoustic Γ modes excluded) is below ``-tolerance_THz``."""
    if min_frequency_THz is None or not math.isfinite(min_frequency_THz):
        return "not_evaluated"
    return "stable" if min_frequency_THz >= -abs(tolerance_THz) else "unstable"


def phonon_calculator(potential: str = DEFAULT_POTENTIAL, device: str | None = None):
    """The ASE calculator of a named potential (:data:`POTENTIALS`), or an atomate2 MLFF name."""
    name, kwargs = POTENTIALS.get(potential, (potential, {}))
    kwargs = dict(kwargs)
    if name == "SevenNet":
        kwargs.setdefault("device", device or "cpu")
    elif name == "CHGNet" and device:
        kwargs.setdefault("use_device", device)
    with warnings.catch_warnings():  # sevenn's hint about GPU tensor-product kernels
        warnings.filterwarnings("ignore", message="No tensor product accelerator")
        return make_calculator(name, **kwargs)


def supercell_dims(structure: Structure, min_length_A: float) -> tuple[int, int, int]:
    """Smallest diagonal supercell whose three lattice vectors are each >= ``min_length_A``."""
    return tuple(max(1, math.ceil(min_length_A / x - 1e-9)) for x in structure.lattice.abc)


def symmetrized_primitive(structure: Structure, symprec_A: float) -> tuple[Structure, str]:
    """spglib's standard primitive cell with idealised positions, and its space group symbol."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    sga = SpacegroupAnalyzer(structure, symprec=symprec_A)
    return sga.get_primitive_standard_structure(), sga.get_space_group_symbol()


def relax_with_symmetry(structure: Structure, calculator, fmax: float, steps: int,
                        keep_symmetry: bool = True) -> tuple[Structure, bool, int]:
    """Positions and cell relaxed under the cell's own symmetry (ASE FixSymmetry + FrechetCellFilter).

    ``keep_symmetry`` False relaxes freely (the soft-mode rescue: the symmetry must be allowed to drop).
    """
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = calculator
    if keep_symmetry:
        atoms.set_constraint(FixSymmetry(atoms, symprec=1e-3))
    opt = BFGS(FrechetCellFilter(atoms), logfile=None)
    with warnings.catch_warnings():  # CHGNet converts atoms to pymatgen at every step and warns
        warnings.filterwarnings("ignore", message="Only FixAtoms and FixCartesian")  # about FixSymmetry
        converged = bool(opt.run(fmax=fmax, steps=steps))
    atoms.set_constraint()
    return AseAtomsAdaptor.get_structure(atoms), converged, int(opt.nsteps)


def _forces(calculator, cells: list) -> np.ndarray:
    """Forces (eV/Å) of phonopy supercells, one calculator call each."""
    from ase import Atoms

    out = []
    for c in cells:
        atoms = Atoms(symbols=c.symbols, cell=c.cell, scaled_positions=c.scaled_positions, pbc=True)
        atoms.calc = calculator
        out.append(np.asarray(atoms.get_forces(), dtype=float))
    return np.array(out)


def _softest(qpoints: np.ndarray, frequencies: np.ndarray) -> tuple[float, tuple[float, float, float], float | None]:
    """Lowest frequency over the mesh with the acoustic modes at Γ removed, its q, Γ's lowest optical."""
    freqs = np.array(frequencies, dtype=float, copy=True)
    gamma = np.where(np.all(np.abs(qpoints) < 1e-8, axis=1))[0]
    min_opt_gamma = None
    for g in gamma:
        acoustic = np.argsort(np.abs(freqs[g]))[:N_ACOUSTIC]
        freqs[g, acoustic] = np.inf
        rest = freqs[g][np.isfinite(freqs[g])]
        min_opt_gamma = float(rest.min()) if rest.size else None
    if not np.isfinite(freqs).any():  # one atom: only acoustic modes at Γ, the mesh has others
        return math.inf, (0.0, 0.0, 0.0), None
    iq, _ = np.unravel_index(np.argmin(freqs), freqs.shape)
    q = tuple(float(x) for x in qpoints[iq])
    return float(freqs[iq].min()), q, min_opt_gamma


def force_constants(structure: Structure, calculator, settings: PhononSettings):
    """phonopy finite displacements on ``structure`` as given: a Phonopy object with force constants."""
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    unit = PhonopyAtoms(symbols=[s.specie.symbol for s in structure], cell=structure.lattice.matrix,
                        scaled_positions=structure.frac_coords)
    dims = supercell_dims(structure, settings.min_supercell_length_A)
    ph = Phonopy(unit, supercell_matrix=np.diag(dims), primitive_matrix="P", symprec=1e-4)  # cell is primitive
    ph.generate_displacements(distance=settings.displacement_A, is_plusminus=settings.plus_minus)
    forces = _forces(calculator, ph.supercells_with_displacements)
    if settings.subtract_residual_forces:
        forces = forces - _forces(calculator, [ph.supercell])[0]
    ph.forces = forces
    ph.produce_force_constants(show_drift=False)
    if settings.symmetrize_force_constants:
        ph.symmetrize_force_constants(show_drift=False)
    return ph


def phonon_frequencies(structure: Structure, calculator, settings: PhononSettings, phonopy=None) -> dict[str, Any]:
    """Softest mode on the settings' mesh and bookkeeping (``phonopy``: force constants already computed)."""
    ph = phonopy if phonopy is not None else force_constants(structure, calculator, settings)
    ph.run_mesh([settings.mesh] * 3, is_gamma_center=True)
    fmin, q, gamma_opt = _softest(np.asarray(ph.mesh.qpoints), np.asarray(ph.mesh.frequencies))
    return {"min_frequency_THz": fmin, "softest_q": q, "min_optical_gamma_THz": gamma_opt,
            "supercell": tuple(int(x) for x in np.diag(ph.supercell_matrix)),
            "n_atoms_supercell": len(ph.supercell), "n_displacements": len(ph.forces)}


def mlip_phonons(
    structure: Structure,
    calculator=None,
    settings: PhononSettings | None = None,
    potential: str = DEFAULT_POTENTIAL,
    keep_phonopy: bool = False,
) -> PhononResult:
    """Symmetrise, re-relax (``settings.relax_fmax_eV_per_A``) and compute phonons of one structure.

    ``keep_phonopy`` keeps the Phonopy object (force constants) in the result, for eigenvectors.

    Never raises for a bad structure (the error goes into the result, verdict not_evaluated);
    a calculator that cannot be built raises :class:`ModelLoadError`.
    """
    settings = settings or PhononSettings()
    calculator = calculator if calculator is not None else phonon_calculator(potential)
    res = PhononResult(potential=potential, settings=settings)
    t0 = time.perf_counter()
    try:
        prim, res.spacegroup = symmetrized_primitive(structure, settings.symprec_A)
        if settings.relax_fmax_eV_per_A is not None:
            prim, res.relax_converged, res.relax_steps = relax_with_symmetry(
                prim, calculator, settings.relax_fmax_eV_per_A, settings.relax_max_steps)
            res.relax_seconds = time.perf_counter() - t0
        res.structure = prim
        ph = force_constants(prim, calculator, settings)
        for k, v in phonon_frequencies(prim, calculator, settings, phonopy=ph).items():
            setattr(res, k, v)
        if keep_phonopy:
            res.phonopy = ph
        if not math.isfinite(res.min_frequency_THz):
            res.min_frequency_THz = None
            res.error = "no phonon mode besides the acoustic ones at Γ"
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - a per-structure failure, reported per candidate
        res.error = f"{potential} phonons failed: {type(exc).__name__}: {exc}"
        res.min_frequency_THz = None
    res.seconds = time.perf_counter() - t0
    return res
