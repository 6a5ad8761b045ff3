"""Starting structures of elemental ground states, shared by the QE references
(:class:`~sc_inverse.thermo.jobs.QeElementalReferenceMaker`, one prototype per element) and the
MLIP references of the screen (:class:`~sc_inverse.screening.relax.ElementalReferences`, which
relaxes several and keeps the lowest). Lattice constants come from empirical radii; the
relaxation that follows fixes them.
"""

from __future__ import annotations

import math

from pymatgen.core import Element, Lattice, Structure

from sc_inverse.errors import InputError

#: experimental bond lengths (Å) of the diatomic elemental molecules
DIMER_BOND_A = {"H": 0.74, "N": 1.10, "O": 1.21, "F": 1.42, "Cl": 1.99, "Br": 2.28, "I": 2.67}

# Simple prototypes of the elemental ground states. Elements with complex ground states
# (B, Ga, P, S, ...) get the nearest simple prototype and are flagged ``approximate``.
_FCC = "Al Ni Cu Rh Pd Ag Ir Pt Au Pb Ca Sr Ce Th Yb Ac Ar Ne Kr Xe"
_BCC = "Li Na K Rb Cs Ba V Nb Ta Cr Mo W Fe Eu Mn"
_HCP = ("Be Mg Sc Ti Co Zn Y Zr Tc Ru Cd Hf Re Os Tl La Pr Nd Pm Sm Gd Tb Dy Ho Er Tm Lu "
        "He")
_DIAMOND = "C Si Ge Sn"
_APPROXIMATE = {"B": "diamond", "Ga": "fcc", "In": "fcc", "P": "diamond", "As": "diamond",
                "Sb": "diamond", "Bi": "diamond", "S": "dimer", "Se": "dimer", "Te": "diamond",
                "Hg": "fcc", "Mn": "bcc", "U": "bcc", "Pu": "bcc", "Np": "bcc", "Pa": "bcc"}
PROTOTYPES: dict[str, str] = {
    **{el: "fcc" for el in _FCC.split()},
    **{el: "bcc" for el in _BCC.split()},
    **{el: "hcp" for el in _HCP.split()},
    **{el: "diamond" for el in _DIAMOND.split()},
    **{el: "dimer" for el in DIMER_BOND_A},
    **_APPROXIMATE,
}
APPROXIMATE_PROTOTYPES = set(_APPROXIMATE)
KINDS = ("fcc", "bcc", "hcp", "sc", "diamond", "dimer")


def _element(element: str) -> Element:
    try:
        return Element(element)
    except ValueError as exc:
        raise InputError(f"{element!r} is not a chemical element") from exc


def prototype_structure(element: str, kind: str) -> Structure:
    """Primitive cell of ``element`` in prototype ``kind`` (one of :data:`KINDS`).

    Nearest-neighbour distance 2r (metallic radius for the close-packed and bcc metals, else the
    atomic radius); a dimer sits in a 10 Å box at its experimental bond length when known.
    """
    el = _element(element)
    r = float(el.atomic_radius or el.atomic_radius_calculated or 1.5)
    if kind in ("fcc", "bcc", "hcp") and el.metallic_radius:
        r = float(el.metallic_radius)
    d = 2.0 * r
    if kind == "fcc":
        a = d / math.sqrt(2)
        return Structure(Lattice([[0, a, a], [a, 0, a], [a, a, 0]]), [el], [[0, 0, 0]])
    if kind == "bcc":
        a = d / math.sqrt(3)
        return Structure(Lattice([[-a, a, a], [a, -a, a], [a, a, -a]]), [el], [[0, 0, 0]])
    if kind == "hcp":
        return Structure(Lattice.hexagonal(d, 1.633 * d), [el] * 2,
                         [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])
    if kind == "sc":
        return Structure(Lattice.cubic(d), [el], [[0, 0, 0]])
    if kind == "diamond":
        a = 2 * d / math.sqrt(3)  # half the cubic constant 4d/sqrt(3)
        return Structure(Lattice([[0, a, a], [a, 0, a], [a, a, 0]]), [el] * 2,
                         [[0, 0, 0], [0.25, 0.25, 0.25]])
    if kind == "dimer":
        bond = DIMER_BOND_A.get(el.symbol, 0.9 * d)
        return Structure(Lattice.cubic(10.0), [el] * 2, [[0, 0, 0], [bond, 0, 0]],
                         coords_are_cartesian=True)
    raise InputError(f"unknown prototype {kind!r}; choose one of {KINDS}")


def elemental_prototype(element: str) -> tuple[Structure, str]:
    """Starting structure of ``element``'s ground state and the name of its prototype."""
    el = _element(element)
    proto = PROTOTYPES.get(el.symbol)
    if proto is None:
        raise InputError(f"no ground-state prototype for {el.symbol}; pass its structure explicitly")
    return prototype_structure(el.symbol, proto), proto
