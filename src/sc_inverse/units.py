"""Physical unit conversions, defined once for the whole package.

Each ``X_TO_Y`` multiplies a value in unit X to give it in unit Y. The atomic-unit values are
CODATA 2018, the set Quantum ESPRESSO compiles in (``Modules/constants.f90``): converting QE's
Rydberg/bohr output with QE's own constants reproduces the numbers QE prints in eV and Å.
Recent ``scipy.constants`` carries CODATA 2022, whose bohr radius differs by 7e-10 relative,
so these values are not read from it: ``tests/test_units.py`` checks each against it to
1e-9 relative, and the derived ones against their definitions.

Core module: imports nothing from the package (or from anywhere).
"""

from __future__ import annotations

#: bohr -> Å (CODATA 2018 bohr radius, as in QE)
BOHR_TO_A = 0.529177210903
#: Ry -> eV (CODATA 2018 Rydberg energy, as in QE)
RY_TO_EV = 13.605693122994
#: Hartree -> eV (QE's XML files are in Hartree atomic units)
HARTREE_TO_EV = 2.0 * RY_TO_EV
#: Ry -> cm⁻¹ (CODATA 2018 Rydberg constant R∞ in cm⁻¹)
RY_TO_CM1 = 109737.31568160
#: Ry/bohr -> eV/Å (forces)
RY_PER_BOHR_TO_EV_PER_A = RY_TO_EV / BOHR_TO_A
#: cm⁻¹ -> K: h c / k_B (second radiation constant c₂ in K·cm, exact in SI, to 10 digits)
CM1_TO_K = 1.438776877
#: THz -> cm⁻¹: 10¹⁰ / c, c in m/s (exact in SI)
THZ_TO_CM1 = 33.35640951981521
#: cm⁻¹ -> THz
CM1_TO_THZ = 1.0 / THZ_TO_CM1

__all__ = [
    "BOHR_TO_A",
    "CM1_TO_K",
    "CM1_TO_THZ",
    "HARTREE_TO_EV",
    "RY_PER_BOHR_TO_EV_PER_A",
    "RY_TO_CM1",
    "RY_TO_EV",
    "THZ_TO_CM1",
]
