"""Soft-mode rescue: follow an imaginary phonon mode downhill to a nearby stable structure.

A relaxed cell with an imaginary mode at Γ or at a commensurate q is a saddle point of the
energy surface: a structure of lower symmetry and lower energy lies along the unstable
eigenvector (rock-salt GeTe → R3m, cubic SrTiO3 → I4/mcm, ...). Freezing that mode in (in a
supercell that the modulation is periodic in when q ≠ Γ) and relaxing again usually lands there.

This module is the method-independent part: the geometry of a frozen-in mode and the rescue
loop with its bookkeeping. The phonons and the relaxation come in as callables, so the same loop
serves the MLIP screen (``screening.rescue``) and a DFT phonon gate.

Conventions (both producers must deliver them):

* ``PhononMode.q_frac``: reduced coordinates of q in the reciprocal lattice of the structure the
  mode belongs to, e.g. ``(0.5, 0, 0)``.
* ``PhononMode.displacements``: complex (n_sites, 3) Cartesian displacement pattern (eigenvector
  divided by √mass, any normalisation) in the *lattice-vector phase convention*: the
  displacement of atom j in the cell at lattice vector R is ``Re[d_j exp(i 2π q·R)]``. phonopy's
  eigenvectors carry the phase of the full position instead; convert with
  ``d_j = e_j / √m_j · exp(i 2π q·τ_j)`` (τ_j = fractional position of atom j).

Rescue defaults (:data:`MAX_ROUNDS`, :data:`AMPLITUDES_A`, :data:`MIN_ENERGY_GAIN_EV_PER_ATOM`)
are documented in ``docs/rescue.md`` with the measured test cases.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pymatgen.core import Lattice, Structure

from sc_inverse.errors import InputError

#: rescue rounds (displace → relax → re-check) per candidate; a real saddle point of a simple
#: cell needs one, rarely two (a second, weaker instability of the first child)
MAX_ROUNDS = 3
#: largest atomic displacement of the frozen-in mode, tried in this order (Å): 0.1 Å is well
#: outside a relaxer's force tolerance, 0.3 Å still inside the basin of the nearby minimum
AMPLITUDES_A: tuple[float, ...] = (0.1, 0.2, 0.3)
#: a child replaces its parent only if its energy is lower by more than this (eV/atom); below
#: ~1 meV/atom MLIP and DFT noise (k-points, cutoffs, relaxation tolerance) could fake a gain
MIN_ENERGY_GAIN_EV_PER_ATOM = 1e-3
#: largest supercell multiple per axis searched for a commensurate q
MAX_SUPERCELL_N = 6

StepVerdict = Literal["stable", "unstable", "not_evaluated", "not_lower", "failed"]


@dataclass(frozen=True)
class PhononMode:
    """One phonon mode: q (reduced), frequency (cm⁻¹, negative = imaginary), displacement pattern."""

    q_frac: tuple[float, float, float]
    frequency_cm1: float
    displacements: np.ndarray = field(repr=False)  # complex (n_sites, 3), Cartesian

    def __post_init__(self):
        object.__setattr__(self, "q_frac", tuple(float(x) for x in self.q_frac))
        d = np.asarray(self.displacements, dtype=complex)
        if d.ndim != 2 or d.shape[1] != 3 or len(self.q_frac) != 3:
            raise InputError(f"phonon mode: displacements must be (n_sites, 3) and q 3 numbers, "
                             f"got {d.shape} and {self.q_frac}")
        object.__setattr__(self, "displacements", d)

    @property
    def unstable(self) -> bool:
        return self.frequency_cm1 < 0


def commensurate_supercell(q_frac: Sequence[float], max_n: int = MAX_SUPERCELL_N,
                           tol: float = 1e-4) -> tuple[int, int, int]:
    """Smallest diagonal supercell (n1, n2, n3) in which ``exp(i 2π q·R)`` is periodic.

    Per axis the smallest n ≤ ``max_n`` with n·q_i an integer; :class:`InputError` when there is
    none (an incommensurate q cannot be frozen into a finite cell of that size).
    """
    dims = []
    for qi in q_frac:
        n = next((n for n in range(1, max_n + 1) if abs(n * qi - round(n * qi)) < tol), None)
        if n is None:
            raise InputError(f"q = {tuple(q_frac)} is not commensurate with a supercell of ≤ {max_n} cells per axis")
        dims.append(n)
    return tuple(dims)


def _supercell(structure: Structure, dims: tuple[int, int, int]) -> tuple[Structure, np.ndarray, np.ndarray]:
    """Diagonal supercell built cell by cell, with each new site's parent index and cell vector R.

    Built here rather than with ``make_supercell`` so the site order (R outer, atom inner) and the
    R of every site are known exactly.
    """
    cells = np.array([(i, j, k) for i in range(dims[0]) for j in range(dims[1]) for k in range(dims[2])])
    parent = np.tile(np.arange(len(structure)), len(cells))
    shifts = np.repeat(cells, len(structure), axis=0)
    frac = (structure.frac_coords[parent] + shifts) / np.array(dims)
    lattice = Lattice(structure.lattice.matrix * np.array(dims)[:, None])
    props = {k: [v[i] for i in parent] for k, v in structure.site_properties.items()}
    sc = Structure(lattice, [structure[i].species for i in parent], frac, site_properties=props or None)
    return sc, parent, shifts


def mode_pattern(mode: PhononMode, parent: np.ndarray, shifts: np.ndarray, align_phase: bool = True) -> np.ndarray:
    """Real displacements (Cartesian, unnormalised) of a mode on supercell sites ``parent`` at cells ``shifts``.

    ``align_phase`` multiplies the mode by the global phase that maximises the real pattern's norm:
    an eigenvector's phase is arbitrary, and at Γ or the zone boundary a bad one cancels the
    displacement (``d = i·v`` has no real part). ‖Re(e^{iφ}u)‖² = ½(Σ|u|² + Re(e^{2iφ}Σu²)) is
    largest for φ = −arg(Σu²)/2.
    """
    u = mode.displacements[parent] * np.exp(2j * np.pi * shifts @ np.asarray(mode.q_frac))[:, None]
    if align_phase:
        s = np.sum(u * u)
        if abs(s) > 1e-12 * max(np.sum(np.abs(u) ** 2), 1e-300):
            u = u * np.exp(-0.5j * np.angle(s))
    return u.real


def modulated_structure(structure: Structure, modes: PhononMode | Iterable[PhononMode], amplitude_A: float,
                        max_n: int = MAX_SUPERCELL_N, align_phase: bool = True) -> Structure:
    """``structure`` with the mode(s) frozen in, in the smallest supercell commensurate with all q.

    Each mode's real pattern (see :func:`mode_pattern`) is scaled to a largest atomic displacement
    of 1, the patterns are summed, and the sum is scaled so its largest atomic displacement is
    ``|amplitude_A|``; a negative amplitude displaces the opposite way.
    """
    modes = [modes] if isinstance(modes, PhononMode) else list(modes)
    if not modes:
        raise InputError("modulated_structure: no mode given")
    for m in modes:
        if len(m.displacements) != len(structure):
            raise InputError(f"phonon mode has {len(m.displacements)} sites, the structure {len(structure)}")
    per_mode = [commensurate_supercell(m.q_frac, max_n) for m in modes]
    dims = tuple(math.lcm(*(d[i] for d in per_mode)) for i in range(3))
    sc, parent, shifts = _supercell(structure, dims)
    total = np.zeros((len(sc), 3))
    for m in modes:
        u = mode_pattern(m, parent, shifts, align_phase)
        peak = np.linalg.norm(u, axis=1).max()
        if peak < 1e-12:
            raise InputError(f"mode at q = {m.q_frac} has no real displacement in the supercell")
        total += u / peak
    peak = np.linalg.norm(total, axis=1).max()
    if peak < 1e-12:
        raise InputError("the modes cancel: no net displacement")
    total *= amplitude_A / peak
    return Structure(sc.lattice, sc.species, sc.cart_coords + total, coords_are_cartesian=True,
                     site_properties=sc.site_properties or None)


@dataclass
class StabilityCheck:
    """What a ``check`` callable reports about one structure.

    ``structure`` is the cell the modes refer to (a checker may symmetrise or re-relax first);
    ``energy_per_atom_eV`` its energy at the relaxer's level of theory (the rescue compares
    children against it). ``stable`` None = could not be decided. ``info``: the producer's own
    result (an MLIP ``PhononResult``, a DFT gate document), carried to the caller untouched.
    """

    stable: bool | None
    structure: Structure
    energy_per_atom_eV: float | None
    modes: list[PhononMode] = field(default_factory=list)
    min_frequency_cm1: float | None = None
    error: str | None = None
    info: Any = field(default=None, repr=False)


@dataclass
class RescueStep:
    """One displace → relax (→ re-check) attempt. ``child_id`` is set only for an accepted child."""

    round: int
    parent_id: str
    child_id: str | None
    q_frac: tuple[float, float, float]
    frequency_cm1: float
    amplitude_A: float
    energy_before_eV_per_atom: float | None
    energy_after_eV_per_atom: float | None = None
    verdict: StepVerdict = "failed"
    child_min_frequency_cm1: float | None = None
    n_atoms: int | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["q_frac"] = list(self.q_frac)
        return d


@dataclass
class RescueChild:
    """An accepted child: lower in energy than its parent by more than the threshold."""

    id: str
    parent_id: str
    round: int
    check: StabilityCheck

    @property
    def structure(self) -> Structure:
        return self.check.structure


@dataclass
class RescueResult:
    """All attempts and accepted children of one rescue; ``stable`` is the verdict of the last one."""

    parent: StabilityCheck
    steps: list[RescueStep] = field(default_factory=list)
    children: list[RescueChild] = field(default_factory=list)
    reason: str = ""

    @property
    def final(self) -> RescueChild | None:
        return self.children[-1] if self.children else None

    @property
    def rescued(self) -> bool:
        return bool(self.children) and self.children[-1].check.stable is True


CheckFn = Callable[[Structure], StabilityCheck]
RelaxFn = Callable[[Structure], tuple[Structure, float]]


def softest_mode(modes: Iterable[PhononMode], max_n: int = MAX_SUPERCELL_N) -> PhononMode | None:
    """The lowest-frequency unstable mode that fits a supercell of ≤ ``max_n`` cells per axis."""
    def fits(m: PhononMode) -> bool:
        try:
            commensurate_supercell(m.q_frac, max_n)
        except InputError:
            return False
        return True

    cands = [m for m in modes if m.unstable and fits(m)]
    return min(cands, key=lambda m: m.frequency_cm1) if cands else None


def _verdict(check: StabilityCheck) -> StepVerdict:
    return {True: "stable", False: "unstable", None: "not_evaluated"}[check.stable]


def rescue(
    structure: Structure,
    check: CheckFn,
    relax: RelaxFn,
    parent_id: str,
    max_rounds: int = MAX_ROUNDS,
    amplitudes_A: Sequence[float] = AMPLITUDES_A,
    min_energy_gain_eV_per_atom: float = MIN_ENERGY_GAIN_EV_PER_ATOM,
    max_n: int = MAX_SUPERCELL_N,
    initial: StabilityCheck | None = None,
) -> RescueResult:
    """Follow the softest unstable mode downhill for at most ``max_rounds`` rounds.

    Per round: for each amplitude (ascending), displace along the softest commensurate mode with
    + sign, then − sign only if + gave nothing, relax (``relax`` → structure, eV/atom); the first
    trial lower than the parent by more than ``min_energy_gain_eV_per_atom`` becomes the child
    ``f"{parent_id}-r{round}"``, which is re-checked and, if still unstable, is the next round's
    parent. Stops when a child is stable or undecided, or no trial is lower. ``initial`` = the
    parent's check if the caller already has it. ``relax`` and ``check`` failures are recorded
    per step, never raised.
    """
    current = initial if initial is not None else check(structure)
    result = RescueResult(parent=current)
    current_id = parent_id
    for rnd in range(1, max_rounds + 1):
        if current.stable is not False:
            result.reason = "stable" if current.stable else "stability not decided"
            return result
        mode = softest_mode(current.modes, max_n)
        if mode is None:
            result.reason = "no unstable mode commensurate with a small supercell"
            return result
        if current.energy_per_atom_eV is None:
            result.reason = "parent energy unknown"
            return result
        child = _try_mode(current, mode, rnd, current_id, f"{parent_id}-r{rnd}", check, relax, result,
                          amplitudes_A, min_energy_gain_eV_per_atom, max_n)
        if child is None:
            result.reason = "no displacement along the softest mode lowered the energy"
            return result
        result.children.append(child)
        current, current_id = child.check, child.id
    result.reason = ("stable" if current.stable else
                     f"still unstable after {max_rounds} rounds" if current.stable is False else "stability not decided")
    return result


def _try_mode(parent: StabilityCheck, mode: PhononMode, rnd: int, parent_id: str, child_id: str,
              check: CheckFn, relax: RelaxFn, result: RescueResult, amplitudes_A: Sequence[float],
              min_gain: float, max_n: int) -> RescueChild | None:
    """The trials of one round (amplitudes ascending, + then −); the first accepted child or None."""
    for amp in amplitudes_A:
        for sign in (1.0, -1.0):
            step = RescueStep(round=rnd, parent_id=parent_id, child_id=None, q_frac=mode.q_frac,
                              frequency_cm1=mode.frequency_cm1, amplitude_A=sign * amp,
                              energy_before_eV_per_atom=parent.energy_per_atom_eV)
            result.steps.append(step)
            try:
                trial = modulated_structure(parent.structure, mode, sign * amp, max_n=max_n)
                step.n_atoms = len(trial)
                relaxed, e_after = relax(trial)
                step.energy_after_eV_per_atom = float(e_after)
            except Exception as exc:  # noqa: BLE001 - one failed trial is recorded, the next is tried
                step.error = f"{type(exc).__name__}: {exc}"
                continue
            if not parent.energy_per_atom_eV - e_after > min_gain:
                step.verdict = "not_lower"
                continue
            try:
                child_check = check(relaxed)
            except Exception as exc:  # noqa: BLE001 - the child is still lower; stability unknown
                child_check = StabilityCheck(stable=None, structure=relaxed, energy_per_atom_eV=e_after,
                                             error=f"{type(exc).__name__}: {exc}")
            if child_check.energy_per_atom_eV is None:
                child_check.energy_per_atom_eV = float(e_after)
            step.child_id, step.verdict = child_id, _verdict(child_check)
            step.child_min_frequency_cm1 = child_check.min_frequency_cm1
            return RescueChild(id=child_id, parent_id=parent_id, round=rnd, check=child_check)
    return None
