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
