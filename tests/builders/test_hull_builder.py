"""HullBuilder: QE energies + references → thermo (incremental on references, entries file)."""

from __future__ import annotations

import pytest
from monty.serialization import dumpfn
from pymatgen.core import Lattice, Structure
from pymatgen.entries.computed_entries import ComputedEntry

from factories import elph_task, scf_task, set_path
from sc_inverse.builders.thermo import HullBuilder
from sc_inverse.thermo.jobs import REFERENCE_ROLE

REF = {"hull_role": REFERENCE_ROLE}


def _el(sym, n=1):
    return Structure(Lattice.cubic(3.0), [sym] * n, [[0, 0, 0], [0.5, 0.5, 0.5]][:n])


def _alm():
    return Structure(Lattice.cubic(3.2), ["Al", "Mg"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _thermo(th):
    with th:
        return {d["material_id"]: d for d in th.query({})}


def test_hull_from_store_references_and_incremental_on_new_reference(stores):
    tasks, _, th = stores
    al, mg = scf_task(_el("Al"), -3.0, 1, REF), scf_task(_el("Mg"), -1.0, 2, REF)
    cand = scf_task(_alm(), -4.4, 3, {"candidate_id": "c1", "origin": "generated",
                                     "predictions": {"e_form_eV_per_atom": -0.5}})
    tasks.update([al, mg, cand], key=["uuid", "index"])
    s = HullBuilder(tasks, th).run_with_summary()
    assert s["processed"] == 3 and s["errors"] == 0
    d = _thermo(th)["c1"]
    assert d["e_form_eV_per_atom"] == pytest.approx(-0.2)
    # below the Al-Mg tie line: on the hull (0), stable by 0.2 eV/atom against Al + Mg
    assert d["e_above_hull_eV_per_atom"] == 0.0 and d["stable"] is True
    assert d["e_phase_separation_eV_per_atom"] == pytest.approx(-0.2)
    assert d["ml_e_form_eV_per_atom"] == -0.5 and d["dft_minus_ml_e_form_eV_per_atom"] == pytest.approx(0.3)
    assert d["is_reference"] is False and d["origin"] == "generated"
    assert HullBuilder(tasks, th).run_with_summary()["processed"] == 0
    # a new compound reference in the Al-Mg system lowers the hull: only c1 (and it) rebuild
    al3mg = Structure(Lattice.cubic(4.0), ["Al", "Al", "Al", "Mg"],
                      [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    tasks.update(scf_task(al3mg, -11.2, 4, REF), key=["uuid", "index"])  # -2.8 eV/atom
    s3 = HullBuilder(tasks, th).run_with_summary()
    assert s3["processed"] == 2
    assert _thermo(th)["c1"]["e_above_hull_eV_per_atom"] == pytest.approx(0.0, abs=1e-9)
    assert _thermo(th)["c1"]["e_phase_separation_eV_per_atom"] == pytest.approx(0.0, abs=1e-9)


def test_entries_file_and_missing_references(stores, tmp_path):
    tasks, _, th = stores
    f = tmp_path / "refs.json"
    dumpfn([ComputedEntry("Al", -3.0, entry_id="user-Al")], f)
    tasks.update([scf_task(_alm(), -4.4, 3, {"candidate_id": "c1"}),
                  scf_task(_el("Nb"), -5.0, 5, {"candidate_id": "nb"})], key=["uuid", "index"])
    s = HullBuilder(tasks, th, entries_file=str(f)).run_with_summary()
    docs = _thermo(th)
    assert docs["c1"]["missing_elements"] == ["Mg"] and docs["c1"]["e_form_eV_per_atom"] is None
    assert docs["nb"]["missing_elements"] == ["Nb"] and s["errors"] == 0
    dumpfn([ComputedEntry("Al", -3.0), ComputedEntry("Mg", -1.0)], f)  # file changed -> rebuild
    assert HullBuilder(tasks, th, entries_file=str(f)).run_with_summary()["processed"] == 1
    assert _thermo(th)["c1"]["e_form_eV_per_atom"] == pytest.approx(-0.2)


def test_elph_energy_used_and_malformed_energy_skipped(stores):
    tasks, _, th = stores
    elph = elph_task(0, candidate_id="e1")  # NbN with energy_eV
    bad = set_path(scf_task(_alm(), -4.4, 3, {"candidate_id": "bad"}), "output.energy_eV", "NaN?")
    tasks.update([elph, bad, scf_task(_el("Nb"), -5.0, 5, REF), scf_task(_el("N"), -3.0, 6, REF)],
                 key=["uuid", "index"])
    s = HullBuilder(tasks, th).run_with_summary()
    assert s["skipped_docs"] == 1
    d = _thermo(th)
    assert d["bad"]["valid"] is False and d["e1"]["e_form_eV_per_atom"] is not None
    assert d["e1"]["valid"] is True
