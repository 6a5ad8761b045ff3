"""TcBuilder and the stability gate: a material stopped at the gate is recorded as
dynamically unstable with no T_c; one that passed keeps its elph row, plus the DFT gap."""

from __future__ import annotations

from factories import elph_task, gate_task, set_path
from sc_inverse.builders.tc import TcBuilder
from sc_inverse.qe.schemas import GATE_SKIP_NOTE


def _docs(sc):
    with sc:
        return {d["material_id"]: d for d in sc.query({})}


def test_gated_out_material_is_unstable_without_tc(stores):
    tasks, sc, _ = stores
    stopped = gate_task(1, stable=False, candidate_id="U")
    echoed = set_path(gate_task(1, stable=False, candidate_id="U"), "completed_at",
                      "2026-01-01T00:00:02")  # the gated EPC job's output: the same document
    passed = gate_task(2, stable=True, candidate_id="S",
                       electronic={"band_gap_eV": 0.0, "dos_at_fermi_states_per_eV": 2.5})
    elph = elph_task(2, candidate_id="S")
    waiting = gate_task(3, stable=True, candidate_id="W")  # EPC allowed, not finished
    tasks.update([stopped, echoed, passed, elph, waiting], key=["uuid", "index"])
    summary = TcBuilder(tasks, sc).run_with_summary()
    assert summary["items"] == 3 and summary["errors"] == 1
    docs = _docs(sc)
    u = docs["U"]
    assert u["valid"] and u["dynamically_stable"] is False and u["tc_K"] is None
    assert u["lambda_"] is None and u["epc_run"] is False and u["min_frequency_cm1"] == -90.0
    assert u["epc_skipped_reason"].startswith(GATE_SKIP_NOTE)
    assert u["formula"] == stopped["output"]["formula_pretty"]
    assert u["gap_dft_eV"] is None  # a gate scf from before the gap field: read defensively
    s = docs["S"]
    assert s["valid"] and s["epc_run"] is True and s["tc_K"] == elph["output"]["tc_K"]
    assert s["gap_dft_eV"] == 0.0 and s["dos_at_fermi_states_per_eV"] == 2.5
    assert docs["W"]["valid"] is False and "no elph document" in docs["W"]["errors"][0]
    again = TcBuilder(tasks, sc).run_with_summary()  # idempotent
    assert again["processed"] == 0 and _docs(sc)["U"] == u


def test_rescue_parent_and_child_are_two_materials(stores):
    """Soft-mode rescue (qe/rescue.py): the parent's gate document and the child's gate + elph
    documents carry their own candidate ids; the rescue summary (echoed under the parent's id
    by jobflow's replace) is not a result."""
    tasks, sc, _ = stores
    parent = gate_task(1, stable=False, candidate_id="P")
    summary_doc = set_path(set_path(gate_task(1, stable=False, candidate_id="P"),
                                    "output.calc_type", "soft-mode-rescue"),
                           "completed_at", "2026-01-01T00:00:05")
    child_gate = set_path(gate_task(2, stable=True, candidate_id="C"), "metadata.parent_id", "P")
    child_elph = set_path(set_path(elph_task(2, candidate_id="C"), "metadata.parent_id", "P"),
                          "metadata.origin", "rescue")
    trial = set_path(gate_task(3, stable=True, candidate_id="T"), "metadata.parent_id", "P")
    tasks.update([parent, summary_doc, child_gate, child_elph, trial], key=["uuid", "index"])
    TcBuilder(tasks, sc).run_with_summary()
    docs = _docs(sc)
    assert set(docs) == {"P", "C", "T"}
    assert docs["P"]["valid"] and docs["P"]["dynamically_stable"] is False
    assert docs["P"]["parent_id"] is None and docs["P"]["epc_run"] is False
    c = docs["C"]
    assert c["valid"] and c["epc_run"] and c["parent_id"] == "P" and c["origin"] == "rescue"
    assert docs["T"]["valid"] is False and "soft-mode rescue trial" in docs["T"]["errors"][0]
