"""The stability gate in the inverse-design flow: the hull reads the gate's scf, the rows of a
candidate stopped at the gate, the gap fields, and the `epc` summary."""

from __future__ import annotations

from jobflow import OutputReference
from pymatgen.core import Lattice, Structure

from factories import write_upf
from sc_inverse.metadata import iter_jobs
from sc_inverse.pipeline.epc import epc_summary
from sc_inverse.pipeline.jobs import candidate_jobs, dft_row, gate_output, scf_output
from sc_inverse.qe.flows import ElectronPhononTcMaker
from sc_inverse.qe.schemas import GATE_SKIP_NOTE
from sc_inverse.qe.sets import get_preset
from sc_inverse.records import CandidateRecord

GATED = {"calc_type": "stability-gate", "formula_pretty": "Zr", "stable": False,
         "min_frequency_cm1": -86.4, "softest_q_frac": [0.0, 0.0, 0.5], "epc_allowed": False,
         "reason": "unstable: lowest ASR-corrected mode -86.4 cm⁻¹ …", "dir_name": "/x/gate",
         "epc_skipped_reason": f"{GATE_SKIP_NOTE}: unstable …",
         "scf": {"energy_eV": -1.0, "electronic": {"band_gap_eV": 0.0,
                                                   "dos_at_fermi_states_per_eV": 1.7}},
         "unstable_modes": [{"q_frac": [0, 0, 0.5], "frequency_cm1": -86.4}]}


def _al(tmp_path):
    write_upf(tmp_path / "Al.pz-vbc.UPF", "Al", functional="SLA PZ NOGX NOGC")
    return Structure(Lattice([[0, 2.0, 2.0], [2.0, 0, 2.0], [2.0, 2.0, 0]]), ["Al"], [[0, 0, 0]])


def test_hull_reads_the_gate_scf(tmp_path):
    al = _al(tmp_path)
    flow = ElectronPhononTcMaker(preset="test", pseudo_dir=str(tmp_path)).make(al)
    gate = gate_output(flow)
    ref = scf_output(flow)
    assert isinstance(ref, OutputReference) and ref.uuid == gate.uuid
    assert [a[1] for a in ref.attributes] == ["scf"]
    plain = ElectronPhononTcMaker(preset="test", pseudo_dir=str(tmp_path),
                                  stability_gate=False).make(al)
    assert gate_output(plain) is None and scf_output(plain).uuid == plain.jobs[0].uuid


def test_candidate_jobs_pass_epc_unstable_and_return_the_gate(tmp_path):
    rec = CandidateRecord.from_structure(_al(tmp_path), id="al")
    preset = get_preset("test")
    jobs, epc, hull, mid, gate = candidate_jobs(rec, preset, str(tmp_path), None, None,
                                                epc_unstable=True)
    names = [j.name for j in iter_jobs(jobs[0])]
    assert names == ["qe stability gate", "qe epc (epc-unstable)"] and hull is None
    assert gate.uuid == next(iter_jobs(jobs[0])).uuid and mid.startswith("Al-")


def test_row_of_a_candidate_stopped_at_the_gate():
    row = dft_row(None, "c1", GATED, {"e_form_eV_per_atom": 0.1, "e_above_hull_eV_per_atom": 0.0})
    assert row["tc_K"] is None and row["lambda_"] is None and row["epc_run"] is False
    assert row["dynamically_stable"] is False and row["min_frequency_cm1"] == -86.4
    assert row["note"].startswith(GATE_SKIP_NOTE) and "DFT failed" not in row["note"]
    assert row["gate_reason"].startswith("unstable") and row["e_form_eV_per_atom"] == 0.1
    assert row["gap_dft_eV"] == 0.0 and row["dos_at_fermi_states_per_eV"] == 1.7
    assert row["formula"] == "Zr"


def test_row_of_a_gate_passed_candidate_has_the_gap_and_works_without_it():
    elph = {"calc_type": "elph", "lambda_": 0.4, "tc_K": 1.2, "dynamically_stable": True,
            "formula_pretty": "Al"}
    passed = {**GATED, "stable": True, "epc_allowed": True, "reason": "stable: …"}
    row = dft_row(None, "c1", elph, None, gate=passed)
    assert row["tc_K"] == 1.2 and row["epc_run"] is True and row["gate_stable"] is True
    assert row["gap_dft_eV"] == 0.0 and "note" not in row
    before_e = {**passed, "scf": {"energy_eV": -1.0}}  # a PwTaskDoc without `electronic`
    row = dft_row(None, "c1", elph, None, gate=before_e)
    assert row["gap_dft_eV"] is None and row["dos_at_fermi_states_per_eV"] is None
    assert "failed" in dft_row(None, "c1", None, None, gate=passed)["note"]


def test_epc_summary_of_a_gated_structure():
    s = epc_summary(GATED)
    assert s["epc_run"] is False and s["tc_K"] is None and s["dynamically_stable"] is False
    assert s["epc_skipped_reason"].startswith(GATE_SKIP_NOTE)
    assert s["unstable_modes"][0]["q_frac"] == [0, 0, 0.5]
    assert epc_summary({"calc_type": "elph", "tc_K": 1.0})["epc_run"] is True


def test_dft_stage_hands_epc_unstable_to_every_candidate(tmp_path):
    from sc_inverse.pipeline.jobs import dft_stage

    al = _al(tmp_path)
    recs = [CandidateRecord.from_structure(al, id="al", passed=True, rank=1)]
    resp = dft_stage.original({"records": [r.model_dump() for r in recs], "summary": {}},
                              str(tmp_path / "run"), 1, "test", pseudo_dir=str(tmp_path),
                              epc_unstable=True)
    jobs = list(iter_jobs(resp.replace))
    assert "qe epc (epc-unstable)" in [j.name for j in jobs]
    fin = jobs[-1]
    assert fin.name == "finalize_run" and len(fin.function_kwargs["gate_outputs"]) == 1
