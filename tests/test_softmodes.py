"""Geometry of frozen-in phonon modes and the bookkeeping of the rescue loop (no potential)."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from sc_inverse.errors import InputError
from sc_inverse.softmodes import (
    PhononMode,
    StabilityCheck,
    commensurate_supercell,
    modulated_structure,
    rescue,
    softest_mode,
)


def rocksalt() -> Structure:
    return Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_commensurate_supercell():
    assert commensurate_supercell((0, 0, 0)) == (1, 1, 1)
    assert commensurate_supercell((0.5, 0, 0)) == (2, 1, 1)
    assert commensurate_supercell((0.5, 0.5, -0.5)) == (2, 2, 2)
    assert commensurate_supercell((1 / 3, 0.25, 0)) == (3, 4, 1)
    with pytest.raises(InputError, match="not commensurate"):
        commensurate_supercell((0.1234, 0, 0), max_n=6)


def test_gamma_mode_keeps_the_cell_and_scales_to_the_amplitude():
    s = rocksalt()
    d = np.array([[0, 0, 1.0], [0, 0, -0.5]])
    out = modulated_structure(s, PhononMode((0, 0, 0), -50.0, d), 0.2)
    assert len(out) == 2
    assert np.allclose(out.lattice.matrix, s.lattice.matrix)
    u = out.cart_coords - s.cart_coords
    assert np.allclose(u, [[0, 0, 0.2], [0, 0, -0.1]])
    back = modulated_structure(s, PhononMode((0, 0, 0), -50.0, d), -0.3)
    assert np.allclose(back.cart_coords - s.cart_coords, [[0, 0, -0.3], [0, 0, 0.15]])


def test_zone_boundary_mode_doubles_a_and_alternates_sign():
    s = rocksalt()
    d = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    out = modulated_structure(s, PhononMode((0.5, 0, 0), -30.0, d), 0.1)
    assert len(out) == 4
    assert np.allclose(out.lattice.abc, (8.0, 4.0, 4.0))
    ref = s * (2, 1, 1)
    # match each displaced site to its reference site of the same species
    for site in out:
        dist = [np.linalg.norm(site.coords - r.coords - np.array([0, site.coords[1] - r.coords[1], 0]))
                if r.specie == site.specie else np.inf for r in ref]
        r = ref[int(np.argmin(dist))]
        dy = site.coords[1] - r.coords[1]
        if site.specie.symbol == "Cl":
            assert abs(dy) < 1e-9
        else:  # Na at x = 0 moves +0.1 Å, its copy at x = a moves −0.1 Å
            assert np.isclose(dy, 0.1 if r.coords[0] < 1 else -0.1)


def test_complex_modes_phase_alignment_and_lattice_phase():
    s = rocksalt()
    d = 1j * np.array([[1.0, 0, 0], [0, 0, 0]])
    # a purely imaginary Γ pattern has no real part: aligned it still displaces by the amplitude
    out = modulated_structure(s, PhononMode((0, 0, 0), -10.0, d), 0.15)
    assert np.isclose(np.abs(out.cart_coords - s.cart_coords).max(), 0.15)
    with pytest.raises(InputError, match="no real displacement"):
        modulated_structure(s, PhononMode((0, 0, 0), -10.0, d), 0.15, align_phase=False)
    # q = 1/4 along a: u(R) = Re[d e^{iπR/2}] = cos(πR/2)·x for d real → 1, 0, −1, 0
    out = modulated_structure(s, PhononMode((0.25, 0, 0), -10.0, -1j * d), 0.1, align_phase=False)
    assert len(out) == 8
    na = sorted((site for site in out if site.specie.symbol == "Na"), key=lambda x: x.coords[0])
    shifts = [site.coords[0] - 4.0 * k for k, site in enumerate(na)]
    assert np.allclose(shifts, [0.1, 0.0, -0.1, 0.0], atol=1e-9)


def test_degenerate_modes_add_and_wrong_size_is_refused():
    s = rocksalt()
    mx = PhononMode((0, 0, 0), -5.0, [[1, 0, 0], [0, 0, 0]])
    my = PhononMode((0.5, 0, 0), -5.0, [[0, 1, 0], [0, 0, 0]])
    out = modulated_structure(s, [mx, my], 0.2)
    assert len(out) == 4  # lcm of (1,1,1) and (2,1,1)
    ref = modulated_structure(s, [mx, my], 0.0)  # the same supercell, same site order, undisplaced
    u = out.cart_coords - ref.cart_coords
    assert np.isclose(np.linalg.norm(u, axis=1).max(), 0.2)
    assert np.allclose(u[0], [0.2 / np.sqrt(2), 0.2 / np.sqrt(2), 0])  # Na in cell 0: x + y
    assert np.allclose(u[2], [0.2 / np.sqrt(2), -0.2 / np.sqrt(2), 0])  # Na in cell 1: x − y
    with pytest.raises(InputError, match="3 sites"):
        modulated_structure(s, PhononMode((0, 0, 0), -5.0, np.zeros((3, 3))), 0.1)


def test_softest_mode_skips_stable_and_incommensurate():
    z = np.zeros((2, 3))
    modes = [PhononMode((0, 0, 0), 30.0, z), PhononMode((0.5, 0, 0), -20.0, z),
             PhononMode((0.1234, 0, 0), -90.0, z)]
    assert softest_mode(modes).q_frac == (0.5, 0.0, 0.0)
    assert softest_mode(modes[:1]) is None


# --- the loop on an analytic double well ------------------------------------------------------
# one Na atom per cell moves along x; E/atom = k·(x² − x0²)² − shift, with the saddle at x = 0.
X0_A, DEPTH_EV = 0.25, 0.02


def well_energy(x: float) -> float:
    return DEPTH_EV * ((x / X0_A) ** 2 - 1) ** 2 - DEPTH_EV


def chain() -> Structure:
    return Structure(Lattice.cubic(3.0), ["Na"], [[0, 0, 0]])


def offset(s: Structure) -> float:
    """x displacement of the first atom from the cell origin (the model's one coordinate)."""
    x = s.cart_coords[0, 0]
    return x - s.lattice.a * round(x / s.lattice.a)


def check(s: Structure) -> StabilityCheck:
    x = offset(s)
    unstable = abs(x) < 1e-6
    mode = PhononMode((0, 0, 0), -40.0, np.tile([1.0, 0, 0], (len(s), 1)))
    return StabilityCheck(stable=not unstable, structure=s, energy_per_atom_eV=well_energy(x),
                          modes=[mode] if unstable else [], min_frequency_cm1=-40.0 if unstable else 10.0)


def relax_to_well(s: Structure) -> tuple[Structure, float]:
    x = offset(s)
    target = np.sign(x) * X0_A if abs(x) > 1e-9 else 0.0
    out = s.copy()
    out.translate_sites(list(range(len(s))), [target - x, 0, 0], frac_coords=False, to_unit_cell=False)
    return out, well_energy(target)


def test_rescue_finds_the_well_and_records_parent_and_child():
    res = rescue(chain(), check, relax_to_well, parent_id="c1")
    assert res.rescued and res.reason == "stable"
    assert res.parent.stable is False
    (child,) = res.children
    assert (child.id, child.parent_id, child.round) == ("c1-r1", "c1", 1)
    assert np.isclose(child.check.energy_per_atom_eV, -DEPTH_EV)
    (step,) = res.steps
    assert step.verdict == "stable" and step.child_id == "c1-r1" and step.amplitude_A == 0.1
    assert step.energy_before_eV_per_atom == 0.0 and np.isclose(step.energy_after_eV_per_atom, -DEPTH_EV)


def test_rescue_rejects_children_that_are_not_lower():
    def relax_back(s):  # every trial relaxes back to the saddle
        out = s.copy()
        out.translate_sites([0], [-offset(s), 0, 0], frac_coords=False, to_unit_cell=False)
        return out, 0.0

    res = rescue(chain(), check, relax_back, parent_id="c2", amplitudes_A=(0.1, 0.2))
    assert not res.children and not res.rescued
    assert [s.amplitude_A for s in res.steps] == [0.1, -0.1, 0.2, -0.2]
    assert {s.verdict for s in res.steps} == {"not_lower"} and all(s.child_id is None for s in res.steps)
    assert "lowered" in res.reason


def test_rescue_records_failed_relaxations_and_stops_at_max_rounds():
    calls = []

    def flaky(s):
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("optimizer diverged")
        return relax_to_well(s)

    res = rescue(chain(), check, flaky, parent_id="c3")
    assert res.steps[0].verdict == "failed" and "diverged" in res.steps[0].error
    assert res.steps[1].verdict == "stable" and res.steps[1].amplitude_A == -0.1

    def staircase(s):  # every relaxation lands 10 meV/atom lower, and never on a stable cell
        calls.append(len(calls))
        out = s.copy()
        out.properties["energy"] = -0.01 * len(calls)
        return out, out.properties["energy"]

    def always_unstable(s):
        mode = PhononMode((0, 0, 0), -40.0, np.tile([1.0, 0, 0], (len(s), 1)))
        return StabilityCheck(False, s, s.properties.get("energy", 0.0), [mode])

    res = rescue(chain(), always_unstable, staircase, parent_id="c4", max_rounds=2)
    assert [c.id for c in res.children] == ["c4-r1", "c4-r2"]
    assert [c.parent_id for c in res.children] == ["c4", "c4-r1"]
    assert res.reason == "still unstable after 2 rounds"


def test_stable_input_is_left_alone():
    s = chain()
    s.translate_sites([0], [X0_A, 0, 0], frac_coords=False)
    res = rescue(s, check, relax_to_well, parent_id="ok")
    assert not res.steps and not res.children and res.reason == "stable"
