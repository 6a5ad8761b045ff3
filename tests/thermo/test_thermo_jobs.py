"""ConvexHullMaker inside a flow; QeElementalReferenceMaker (flow shape, and real QE)."""

from __future__ import annotations

import pytest
from jobflow import Flow
from monty.serialization import dumpfn
from pymatgen.core import Lattice, Structure
from pymatgen.entries.computed_entries import ComputedEntry

from sc_inverse.builders import run_builders
from sc_inverse.errors import InputError
from sc_inverse.execution import run_flow_locally
from sc_inverse.metadata import tag_candidate
from sc_inverse.qe.jobs import QeScfMaker
from sc_inverse.qe.sets import get_preset
from sc_inverse.stores import THERMO, get_job_store, get_store
from sc_inverse.thermo.jobs import (
    REFERENCE_ROLE,
    ConvexHullMaker,
    QeElementalReferenceMaker,
    elemental_prototype,
)


def _alm():
    return Structure(Lattice.cubic(3.2), ["Al", "Mg"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_convex_hull_job_in_a_flow_uses_references_from_args_file_and_store(tmp_path):
    from factories import scf_task

    # a reference already in the store (tagged), one passed in, one from a file
    store = get_job_store()
    mg = Structure(Lattice.hexagonal(3.2, 5.2), ["Mg", "Mg"], [[1 / 3, 2 / 3, .25], [2 / 3, 1 / 3, .75]])
    with store:
        store.docs_store.update(scf_task(mg, -2.0, metadata={"hull_role": REFERENCE_ROLE}),
                                key=["uuid", "index"])
    f = tmp_path / "refs.json"
    dumpfn([ComputedEntry("AlMg3", -4.4)], f)
    j = ConvexHullMaker(entries_file=str(f)).make(
        structure=_alm(), energy_eV=-4.5, references=[ComputedEntry("Al", -3.0).as_dict()])
    run_flow_locally(Flow([j]), store=store, log=False, raise_immediately=True)
    with store:
        out = store.get_output(j.uuid)
    assert out["e_form_eV_per_atom"] == pytest.approx(-2.25 - (-3.0 - 1.0) / 2)
    assert out["missing_elements"] == [] and len(out["reference_ids"]) == 3
    # AlMg3 from the file lies above the Al-Mg tie line, so the hull at x=0.5 is 0 eV/atom
    assert out["e_above_hull_eV_per_atom"] == 0.0 and out["stable"] is True
    assert out["e_phase_separation_eV_per_atom"] == pytest.approx(-0.25)


def test_convex_hull_job_needs_an_energy():
    j = ConvexHullMaker(use_store_references=False).make(structure=_alm())
    with pytest.raises(InputError, match="energy_eV"):
        j.run(get_job_store())


@pytest.mark.parametrize("el,proto,n", [("Al", "fcc", 1), ("Nb", "bcc", 1), ("Mg", "hcp", 2),
                                        ("Si", "diamond", 2), ("N", "dimer", 2)])
def test_elemental_prototypes(el, proto, n):
    s, p = elemental_prototype(el)
    assert p == proto and len(s) == n and s.composition.reduced_formula in (el, f"{el}2")
    assert min(s.distance_matrix[0][1:]) > 0.9 if n > 1 else s.volume > 5


def test_reference_flow_shape():
    flow = QeElementalReferenceMaker(preset="test").make(["Mg", "Al", "Al"])
    names = [j.name for j in flow.jobs]
    assert names == ["qe ref vc-relax Al", "qe ref scf Al", "qe ref vc-relax Mg", "qe ref scf Mg",
                     "collect reference entries"]
    scf = flow.jobs[1]
    assert scf.metadata["hull_role"] == REFERENCE_ROLE and scf.metadata["element"] == "Al"
    assert flow.jobs[0].metadata["hull_role"] != REFERENCE_ROLE  # relax energies are not used
    assert scf.function.__self__.preset.la2f_kpoints_grid is None  # no dense la2F scf needed


def test_references_are_computed_at_the_cutoffs_of_the_chemical_system(tmp_path):
    """The cutoff rule gives Al alone 45/250 Ry but Al-V 48/642 Ry: the references of an Al-V
    candidate must be computed at 48/642 Ry or the hull finds nothing to compare with."""
    from factories import write_upf

    for el, wfc, rho in (("Al", 28.5, 120.5), ("V", 47.52, 641.3)):
        write_upf(tmp_path / f"{el}.pbesol-x.UPF", el, wfc, rho)

    def cutoffs(flow):
        return {(j.function.__self__.preset.ecutwfc, j.function.__self__.preset.ecutrho)
                for j in flow.jobs if j.name.startswith("qe ref")}

    assert cutoffs(QeElementalReferenceMaker(preset="paper", pseudo_dir=str(tmp_path)).make(
        ["Al", "V"])) == {(48.0, 642.0)}
    assert cutoffs(QeElementalReferenceMaker(preset="paper", pseudo_dir=str(tmp_path)).make(
        ["Al"])) == {(45.0, 250.0)}
    flow = QeElementalReferenceMaker(preset="fast", pseudo_dir=str(tmp_path)).make(["V"])
    relax, scf = flow.jobs[:2]
    assert relax.function.__self__.standardize and scf.function_kwargs["kpoint_length_A"] is not None


@pytest.mark.qe
@pytest.mark.slow
@pytest.mark.ci
def test_real_qe_references_candidate_and_hull_builder():
    """Real pw.x: Al and Mg references + an AlMg (CsCl) candidate with the same test settings,
    a convex-hull job in the flow, then the HullBuilder on the embedded store."""
    refs = QeElementalReferenceMaker(preset="test", relax=False).make(["Al", "Mg"])
    scf = QeScfMaker(preset=get_preset("test").with_updates(la2f_kpoints_grid=None)).make(_alm())
    hull = ConvexHullMaker(use_store_references=False).make(task_doc=scf.output, references=refs.output)
    for j in (scf, hull):  # only the candidate's jobs carry its identity
        tag_candidate(j, "AlMg-1", origin="generated", predictions={"e_form_eV_per_atom": -0.1})
    flow = Flow([refs, scf, hull])
    store = get_job_store()
    run_flow_locally(flow, store=store, log=False, raise_immediately=True)
    with store:
        res = store.get_output(hull.uuid)
        entries = store.get_output(refs.jobs[-1].uuid)
    assert res["missing_elements"] == [] and len(entries) == 2
    assert abs(res["e_form_eV_per_atom"]) < 1.0  # physically sensible for an Al-Mg alloy
    summary = run_builders(only=["HullBuilder"])["HullBuilder"]
    assert summary["errors"] == 0 and summary["processed"] == 3
    th = get_store(THERMO)
    with th:
        doc = th.query_one({"material_id": "AlMg-1"})
        assert th.count({"is_reference": True}) == 2
    assert doc["e_form_eV_per_atom"] == pytest.approx(res["e_form_eV_per_atom"])
    assert doc["dft_minus_ml_e_form_eV_per_atom"] == pytest.approx(res["e_form_eV_per_atom"] + 0.1)
    assert run_builders(only=["HullBuilder"])["HullBuilder"]["processed"] == 0
