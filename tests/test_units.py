"""The unit constants agree with scipy.constants (CODATA) and with each other."""

from __future__ import annotations

import pytest
import scipy.constants as C

from sc_inverse import units

PC = C.physical_constants

#: CODATA 2018 (QE's set) vs the CODATA release scipy carries: largest shift is the bohr radius
CODATA_REL = 1e-9


@pytest.mark.parametrize(("name", "reference"), [
    ("BOHR_TO_A", PC["Bohr radius"][0] / C.angstrom),
    ("RY_TO_EV", PC["Rydberg constant times hc in eV"][0]),
    ("RY_TO_CM1", PC["Rydberg constant"][0] / 100.0),
    ("HARTREE_TO_EV", PC["Hartree energy in eV"][0]),
    ("CM1_TO_K", 100.0 * C.h * C.c / C.k),
    ("THZ_TO_CM1", 1e12 / (100.0 * C.c)),
])
def test_constant_matches_scipy(name, reference):
    assert getattr(units, name) == pytest.approx(reference, rel=CODATA_REL)


def test_constants_are_mutually_consistent():
    # Ry expressed in cm^-1 two ways: via the Rydberg constant, via eV and h c
    via_ev = units.RY_TO_EV * C.e / (C.h * C.c * 100.0)
    assert via_ev == pytest.approx(units.RY_TO_CM1, rel=CODATA_REL)
    force = units.RY_TO_EV / units.BOHR_TO_A
    assert force == units.RY_PER_BOHR_TO_EV_PER_A
    round_trip = units.CM1_TO_THZ * units.THZ_TO_CM1
    assert round_trip == pytest.approx(1.0, rel=1e-15)


def test_values_are_the_ones_qe_uses():
    # QE's Modules/constants.f90 (CODATA 2018): its printed Å and eV must be reproduced exactly
    assert units.BOHR_TO_A == 0.529177210903
    assert units.RY_TO_EV == 13.605693122994
