"""k- and q-point grids of the JARVIS electron-phonon workflow.

JARVIS chooses the k mesh from a *k-point length* L: n_i = max(1, int(L·|b_i| + 0.5)) with
b_i the crystallographic reciprocal vectors (1/Å, no 2π). L is stepped until the total energy
changes by less than a tolerance (1 mRy); mesh dimensions that are prime are bumped by one so
that every dimension has a proper divisor, and the q grid takes the smallest divisor (≥ 2) of
each k dimension - so q always divides k, as ph.x's interpolation of the EPC requires.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from pymatgen.core import Structure

from sc_inverse.errors import CalculationError, InputError
from sc_inverse.units import RY_TO_EV

logger = logging.getLogger(__name__)


def mesh_from_length(structure: Structure, length: float) -> tuple[int, int, int]:
    """Automatic (length-based) Monkhorst-Pack mesh of ``structure``."""
    if length <= 0:
        raise InputError(f"k-point length must be positive, got {length}")
    recip = structure.lattice.reciprocal_lattice_crystallographic
    return tuple(max(1, int(length * b + 0.5)) for b in recip.abc)  # type: ignore[return-value]


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))


def bump_prime_mesh(mesh: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """Replace each prime dimension by dimension + 1 (1 stays 1)."""
    return tuple(n + 1 if _is_prime(n) else n for n in mesh)


def smallest_divisor(n: int) -> int:
    """Smallest divisor ≥ 2 of ``n`` (1 for n = 1)."""
    if n <= 1:
        return 1
    return next(d for d in range(2, n + 1) if n % d == 0)


def qgrid_from_kgrid(kgrid: tuple[int, ...] | list[int]) -> tuple[int, int, int]:
    """q grid = smallest divisor of each k dimension (JARVIS rule)."""
    return tuple(smallest_divisor(int(n)) for n in kgrid)  # type: ignore[return-value]


@dataclass
class KpointConvergence:
    """Result of :func:`converge_kpoint_length`."""

    length: float
    mesh: tuple[int, int, int]
    history: list[dict] = field(default_factory=list)


def converge_kpoint_length(
    structure: Structure,
    energy_eV: Callable[[tuple[int, int, int]], float],
    start_length: float = 10.0,
    step: float = 5.0,
    tol_eV: float = 1e-3 * RY_TO_EV,
    n_confirm: int = 1,
    max_length: float = 200.0,
) -> KpointConvergence:
    """Step the k-point length until the energy is converged to ``tol_eV`` (default 1 mRy).

    ``energy_eV(mesh)`` runs one scf and returns its total energy; meshes already computed are
    skipped (several lengths give the same mesh). The length is accepted when the energy of the
    next ``n_confirm`` *distinct* meshes all stay within ``tol_eV`` of it - JARVIS confirmed with
    five further lengths, ``n_confirm`` makes that cost explicit.
    """
    energies: dict[tuple[int, int, int], float] = {}
    points: list[tuple[float, tuple[int, int, int]]] = []
    length = start_length
    while length <= max_length:
        mesh = mesh_from_length(structure, length)
        if mesh not in energies:
            energies[mesh] = float(energy_eV(mesh))
            points.append((length, mesh))
            logger.info("k-length %.1f mesh %s energy %.6f eV", length, mesh, energies[mesh])
            if len(points) > n_confirm:
                ref_length, ref_mesh = points[-1 - n_confirm]
                later = [energies[m] for _, m in points[-n_confirm:]]
                if all(abs(e - energies[ref_mesh]) < tol_eV for e in later):
                    history = [
                        {"length": ln, "grid": list(m), "energy_eV": energies[m]} for ln, m in points
                    ]
                    return KpointConvergence(ref_length, ref_mesh, history)
        length += step
    raise CalculationError(
        f"k-points of {structure.composition.reduced_formula} not converged to "
        f"{tol_eV * 1000:.2f} meV up to length {max_length}: "
        f"{[(ln, m, round(energies[m], 5)) for ln, m in points]}"
    )


def as_mesh(value, name: str = "grid") -> tuple[int, int, int]:
    """Validate a 3-integer grid."""
    arr = np.asarray(value).reshape(-1)
    if arr.size != 3 or np.any(arr < 1) or not np.allclose(arr, np.round(arr)):
        raise InputError(f"{name} must be three positive integers, got {value!r}")
    return tuple(int(x) for x in arr)  # type: ignore[return-value]
