"""Formation energy / E_above_hull against compatible QE references."""

from __future__ import annotations

import json

import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.entries.computed_entries import ComputedEntry

from sc_inverse.errors import InputError
from sc_inverse.thermo.hull import compatible, entry_from_task, hull_analysis, load_entries

PSEUDO = {"data": {"pseudopotentials": {"Al": "Al.pz-vbc.UPF", "Mg": "Mg.pz-n-vbc.UPF"},
                   "settings_key": "test|15.0|None|"}}


def _ref(formula, e_per_atom, n=1, **kw):
    from pymatgen.core import Composition

    c = Composition(formula) * n
    return ComputedEntry(c, e_per_atom * c.num_atoms, entry_id=f"ref-{formula}",
                         data=kw.get("data", PSEUDO["data"]))


def _alm():
    return Structure(Lattice.cubic(3.2), ["Al", "Mg"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _task(energy, **extra):
    return {"structure": _alm().as_dict(), "energy_eV": energy,
            "input": {"preset": "test", "parameters": {"system": {"ecutwfc": 15.0}},
                      "pseudopotentials": PSEUDO["data"]["pseudopotentials"]}, **extra}


def test_formation_energy_and_hull_distance_by_hand():
    refs = [_ref("Al", -3.0), _ref("Mg", -1.0), _ref("Al3Mg", -2.8)]
    entry = entry_from_task(_task(-4.4), "cand")  # -2.2 eV/atom
    r = hull_analysis(entry, refs)
    assert r.e_form_eV_per_atom == pytest.approx(-2.2 - (-3.0 - 1.0) / 2)  # -0.2
    # hull at x_Mg = 0.5 between Al3Mg (x=.25, Ef=-0.3) and Mg (x=1, Ef=0): -0.3 * (0.5/0.75)
    assert r.e_above_hull_eV_per_atom == pytest.approx(0.0, abs=1e-9)
    assert r.e_phase_separation_eV_per_atom == pytest.approx(0.0, abs=1e-9)
    assert r.stable is True and set(r.decomposition) == {"MgAl3", "Mg"}
    above = hull_analysis(entry_from_task(_task(-4.0), "c2"), refs)
    assert above.e_above_hull_eV_per_atom == pytest.approx(0.2) and above.stable is False
    assert above.e_phase_separation_eV_per_atom == pytest.approx(0.2)


def test_below_the_hull_is_on_it_and_stable_by_the_phase_separation_energy():
    """pymatgen's definitions: E_above_hull >= 0 (the hull includes the candidate), the
    phase-separation energy is negative by how far below the other phases' hull it lies."""
    from pymatgen.analysis.phase_diagram import PhaseDiagram

    refs = [_ref("Al", -3.0), _ref("Mg", -1.0), _ref("Al3Mg", -2.8)]
    entry = entry_from_task(_task(-5.0), "c3")  # -2.5 eV/atom; the refs' hull there: -2.2
    below = hull_analysis(entry, refs)
    assert below.e_form_eV_per_atom == pytest.approx(-0.5)
    assert below.e_above_hull_eV_per_atom == 0.0 and below.stable is True
    assert below.e_phase_separation_eV_per_atom == pytest.approx(-0.3)
    pd = PhaseDiagram([*refs, entry])
    assert pd.get_e_above_hull(entry) == pytest.approx(below.e_above_hull_eV_per_atom, abs=1e-9)
    assert pd.get_phase_separation_energy(entry) == pytest.approx(-0.3)


def test_missing_and_incompatible_references():
    entry = entry_from_task(_task(-4.4), "cand")
    r = hull_analysis(entry, [_ref("Al", -3.0)])
    assert r.missing_elements == ["Mg"] and r.e_form_eV_per_atom is None
    other_pp = _ref("Mg", -1.0, data={"pseudopotentials": {"Mg": "Mg.pbe.UPF"}})
    assert not compatible(other_pp, entry)
    assert hull_analysis(entry, [_ref("Al", -3.0), other_pp]).missing_elements == ["Mg"]
    other_cut = _ref("Mg", -1.0, data={"settings_key": "paper|45.0|250.0|"})
    assert not compatible(other_cut, entry)


def test_entry_from_task_errors_name_the_field():
    with pytest.raises(InputError, match="energy_eV"):
        entry_from_task({"structure": _alm().as_dict()}, "t1")
    with pytest.raises(InputError, match="structure"):
        entry_from_task({"energy_eV": 1.0, "structure": {"bad": 1}}, "t2")
    with pytest.raises(InputError, match="nan"):
        entry_from_task({"energy_eV": float("nan"), "structure": _alm().as_dict()}, "t3")
    light = entry_from_task(_task(-4.4), "t4", with_structure=False)
    assert light.composition == _alm().composition and light.energy == -4.4


def test_load_entries(tmp_path):
    f = tmp_path / "refs.json"
    f.write_text(json.dumps([_ref("Al", -3.0).as_dict(), _ref("Mg", -1.0).as_dict()]))
    entries = load_entries(f)
    assert [e.composition.reduced_formula for e in entries] == ["Al", "Mg"]
    f.write_text(json.dumps([{"foo": 1}]))
    with pytest.raises(InputError, match="entry 0"):
        load_entries(f)
    with pytest.raises(InputError, match="no such"):
        load_entries(tmp_path / "none.json")
