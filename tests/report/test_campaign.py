"""Campaign report of a run whose DFT stage is still running: a real run folder (records as the
flow writes them), a real jobflow JobStore holding real task-document models tagged as the DFT
stage tags them, and real QE output files for the CPU clocks."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from jobflow import JobStore
from maggma.stores import MemoryStore
from monty.json import jsanitize
from pymatgen.core import Lattice, Structure

from factories import elph_task, scf_task
from sc_inverse.cli import cli
from sc_inverse.data import load_jarvis_sc
from sc_inverse.records import CandidateRecord, save_records
from sc_inverse.report.campaign import (
    CampaignRow,
    collect_campaign,
    criterion_row,
    funnel_rows,
    qe_cpu_seconds,
    render_markdown,
    target_check,
)
from sc_inverse.runs import RunDir, write_manifest

QE_DATA = Path(__file__).parents[1] / "test_data" / "qe"
ROOT_FLOW = str(uuid.uuid4())
#: PHONON 11.08 s CPU (al_elph/ph.out) + PWSCF 0.08 s CPU (pw/al_scf.out)
ELPH_CPU_S = 11.08
SCF_CPU_S = 0.08


def _training(jid: str) -> Structure:
    return next(r["structure"] for r in load_jarvis_sc() if r["jid"] == jid)


def _novel_structure() -> Structure:
    # a composition JARVIS-SC does not hold (checked by the test that uses it)
    return Structure(Lattice.hexagonal(3.1, 3.4), ["Re", "C", "C"],
                     [[0, 0, 0], [1 / 3, 2 / 3, 0.5], [2 / 3, 1 / 3, 0.5]])


def _tag(doc: dict, rid: str, name: str | None = None) -> dict:
    doc["metadata"] = {**doc["metadata"], "candidate_id": f"mid-{rid}", "record_id": rid}
    doc["hosts"] = [str(uuid.uuid4()), ROOT_FLOW]
    if name:
        doc["name"] = name
    return doc


def _elph(i: int, rid: str, structure: Structure, tc_K: float, stable: bool, folder: Path) -> dict:
    doc = elph_task(i)
    out = doc["output"]
    out.update(structure=jsanitize(structure.as_dict()), formula_pretty=structure.composition.reduced_formula,
               tc_K=tc_K, dynamically_stable=stable, min_frequency_cm1=12.0 if stable else -80.0,
               dir_name=str(folder), wall_time_s=99.0)
    folder.mkdir(parents=True)
    shutil.copy(QE_DATA / "al_elph" / "ph.out", folder / "ph.out")
    return _tag(doc, rid)


def _scf(i: int, rid: str, structure: Structure, folder: Path | None) -> dict:
    doc = scf_task(structure, -10.0, i)
    if folder is not None:
        folder.mkdir(parents=True)
        shutil.copy(QE_DATA / "pw" / "al_scf.out", folder / "scf.out")
        doc["output"]["dir_name"] = str(folder)
    else:
        doc["output"]["dir_name"] = "/gone/folder"
        doc["output"]["wall_time_s"] = 7.0
    return _tag(doc, rid)


def _hull(rid: str, formula: str, e_above: float) -> dict:
    out = {"entry_id": rid, "formula": formula, "chemsys": "C-Re", "energy_per_atom_eV": -5.0,
           "e_form_eV_per_atom": -0.4, "e_above_hull_eV_per_atom": e_above, "stable": e_above == 0}
    return _tag({"uuid": str(uuid.uuid4()), "index": 1, "output": out, "name": "convex hull",
                 "completed_at": "2026-12-03T20:00:00", "metadata": {}}, rid)


def _gate(rid: str) -> dict:
    """A stability-gate document as the gate branch describes it (read defensively)."""
    out = {"stable": False, "epc_allowed": False, "threshold_cm1": -20.0,
           "min_frequency_cm1": -143.0, "reason": "2 modes below -20 cm-1 at X", "unstable_modes": []}
    return _tag({"uuid": str(uuid.uuid4()), "index": 1, "output": out, "name": "qe stability gate",
                 "completed_at": "2026-12-03T19:00:00", "metadata": {}}, rid)


@pytest.fixture
def campaign(tmp_path):
    """Run folder (6 generated, 1 flagged; 5 passed the screen, top 5 selected) and a store
    where c0, c4 are done, c1 running (scf only), c2 waiting, c3 EPC skipped by the gate."""
    known, novel = _training("JVASP-8528"), _novel_structure()
    run = RunDir(tmp_path / "data" / "runs" / "camp")
    gen = [CandidateRecord.from_structure(novel, id=f"c{i}", origin="generated",
                                          provenance={"seed": 1203},
                                          flags=["atoms_too_close"] if i == 5 else [])
           for i in range(6)]
    save_records(gen, run.candidates)
    screened = []
    for i, rec in enumerate(gen):
        r = rec.model_copy(deep=True)
        r.passed, r.rank, r.selected = (True, i + 1, True) if i < 5 else (False, None, False)
        r.predictions = {"tc_K": 10.0 + i}
        r.verdicts = {"tc_K > 5": "pass", "e_form < 0": "pass" if i < 5 else "fail"}
        screened.append(r)
    save_records(screened, run.screened)
    store = JobStore(MemoryStore(), additional_stores={"data": MemoryStore()})
    store.connect()
    docs = [
        _elph(0, "c0", known, 14.0, True, tmp_path / "jobs" / "c0-elph"),
        _scf(0, "c0", known, tmp_path / "jobs" / "c0-scf"),
        _hull("c0", "NbRu3C", 0.0),
        _elph(4, "c4", novel, 8.5, True, tmp_path / "jobs" / "c4-elph"),
        _hull("c4", "ReC2", 0.031),
        _scf(1, "c1", novel, None),
        _gate("c3"),
        # an elemental reference of the same run (no record id) and a foreign run's document
        {**scf_task(Structure(Lattice.cubic(3.1), ["Re"], [[0, 0, 0]]), -11.0, 9,
                    {"hull_role": "reference"}), "hosts": [str(uuid.uuid4()), ROOT_FLOW]},
        # a record id of this run computed by another run (same seed): not this run's
        {**_tag(elph_task(7), "c2"), "hosts": [str(uuid.uuid4())]},
    ]
    store.docs_store.update(docs, key=["uuid", "index"])
    write_manifest(run, ["sc-inverse", "submit", "inverse-design", "--n", "6", "--top", "5"],
                   {"n": 6, "top_k": 5, "preset": "fast", "seed": 1203}, ROOT_FLOW)
    return run, store


def test_partial_run_rows_states_and_funnel(campaign):
    run, store = campaign
    data = collect_campaign(run.root, store)
    rows = {r.id: r for r in data.rows}
    assert [r.id for r in data.rows] == ["c0", "c1", "c2", "c3", "c4"]
    assert {k: r.state for k, r in rows.items()} == {
        "c0": "done", "c1": "running", "c2": "waiting", "c3": "EPC skipped", "c4": "done"}
    assert data.n_pending == 2 and not data.finalized
    assert rows["c0"].novelty == "known structure (JVASP-8528)"
    assert rows["c4"].novelty == "novel"
    assert rows["c4"].e_above_hull_eV_per_atom == pytest.approx(0.031)
    assert rows["c4"].spacegroup == "P6/mmm (191)"
    assert rows["c3"].dynamically_stable is False and rows["c3"].min_frequency_cm1 == -143.0
    assert "X" in rows["c3"].note
    # CPU from the programs' own clocks; c1's folder is gone: its recorded wall time, flagged
    assert rows["c0"].cpu_s == pytest.approx(ELPH_CPU_S + SCF_CPU_S)
    assert (rows["c0"].n_cpu_measured, rows["c0"].n_cpu_docs) == (2, 2)
    assert rows["c1"].cpu_s == pytest.approx(7.0) and rows["c1"].n_cpu_measured == 0
    funnel = {k: (v, s) for k, v, s in funnel_rows(data)}
    assert funnel["generated"] == (6, 3000)
    assert funnel["structurally valid"][0] == 5
    assert funnel["valid, unique, not in the training set (triage)"][0] == 5
    assert funnel["passed ML screen"] == (5, 62)
    assert funnel["sent to DFT"] == (5, 62)
    assert funnel["EPC skipped: unstable at the stability gate"][0] == 1
    assert funnel["EPC skipped: not a metal at the gate's scf (DFT gap)"][0] == 0
    assert funnel["DFT done (EPC)"] == (2, 62)
    assert funnel["T_c > 5 K"] == (2, 32)
    assert funnel["dynamically stable & novel"] == (1, 20)


def test_a_criterion_judged_for_nobody_is_not_a_zero_in_the_funnel():
    gap = {"criterion": "gap_eV < 0.05", "n_pass": 0, "n_fail": 0, "n_not_evaluated": 2539}
    assert criterion_row(gap) == (
        "screen: gap_eV < 0.05 not evaluated (0 of 2539 records judged)", None, None)
    tc = {"criterion": "tc_K > 5", "n_pass": 329, "n_fail": 2200, "n_not_evaluated": 10}
    assert criterion_row(tc) == ("screen: tc_K > 5 passes (of 2529 judged)", 329, None)
    mlip = {"criterion": "mlip_dynamically_stable", "mode": "advisory", "n_pass": 22,
            "n_fail": 120, "n_not_evaluated": 0}
    assert criterion_row(mlip) == ("screen: mlip_dynamically_stable passes, advisory", 22, None)


def test_markdown_states_pending_and_target(campaign):
    run, store = campaign
    text = render_markdown(collect_campaign(run.root, store))
    assert "sc-inverse submit inverse-design --n 6 --top 5" in text
    assert "| preset | fast |" in text and "| seed | 1203 |" in text
    assert "2 still pending" in text and "finalize job not run yet" in text
    assert "| c4 | ReC2 | P6/mmm (191) |" in text
    # 2 of 2 completed EPC runs stable and hot; 2 pending of 4 sent to EPC → at least 50 %
    assert "2 of 2 completed EPC runs" in text and "**met**" in text
    assert "| dynamically stable & novel | 1 | 20 |" in text
    assert "DFT elemental references" in text


def test_finalized_run_reads_dft_json(campaign):
    run, store = campaign
    run.write_json(run.dft, [
        {"id": "c0"}, {"id": "c1", "note": "DFT failed (see the job store / run folder for the error)"},
        {"id": "c2", "note": "DFT failed (x)"}, {"id": "c3"}, {"id": "c4", "gap_dft_eV": 0.0},
        {"id": "c5", "formula": "ReC2", "note": "skipped: no pseudopotential for Re"},
    ])
    data = collect_campaign(run.root, store)
    states = {r.id: r.state for r in data.rows}
    assert states == {"c0": "done", "c1": "failed", "c2": "failed", "c3": "EPC skipped", "c4": "done"}
    assert data.n_pending == 0 and [s["id"] for s in data.skipped] == ["c5"]
    assert {r.id: r.gap_dft_eV for r in data.rows}["c4"] == 0.0
    assert "skipped: no pseudopotential for Re" in render_markdown(data)


def test_target_check_met_open_and_not_reachable():
    def rows(*specs):
        return [CampaignRow(id=str(i), state=s, tc_K=tc, dynamically_stable=st)
                for i, (s, tc, st) in enumerate(specs)]

    hot, cold = ("done", 9.0, True), ("done", 1.0, True)
    assert "**met**" in target_check(rows(hot, cold, cold))  # 1 of 3 = 33 %
    assert "not reachable" in target_check(rows(cold, cold, cold, ("waiting", None, None)))
    assert "open" in target_check(rows(cold, cold, ("running", None, None), ("waiting", None, None)))
    # an EPC the gate skipped was never sent to EPC
    assert "1 of 1 completed" in target_check(rows(hot, ("EPC skipped", None, False)))


def test_qe_cpu_of_a_document_without_output_files(tmp_path):
    doc = {"output": {"dir_name": str(tmp_path), "wall_time_s": 3.5}}
    assert qe_cpu_seconds(doc) == (3.5, 3.5, False)
    (tmp_path / "ph.out").write_text((QE_DATA / "ph" / "ph_killed.out").read_text())
    assert qe_cpu_seconds(doc) == (pytest.approx(3.32), pytest.approx(3.87), True)


def test_before_the_screen_and_run_folder_errors(tmp_path):
    run = RunDir(tmp_path / "r")
    save_records([CandidateRecord.from_structure(_novel_structure(), id="c0", origin="generated")],
                 run.candidates)
    data = collect_campaign(run.root)
    text = render_markdown(data)
    assert "DFT stage not started yet" in text
    assert "--n 1" in text and "(reconstructed from the records" in text
    # nothing after generation is known yet: not 0, unknown
    assert [(k, v) for k, v, _ in funnel_rows(data)][-4:] == [
        ("sent to DFT", None), ("DFT done (EPC)", None), ("T_c > 5 K", None),
        ("dynamically stable & novel", None)]
    # the console entry point: one line, exit status 2
    proc = subprocess.run([sys.executable, "-m", "sc_inverse.cli", "report", "campaign",
                           str(tmp_path / "nope"), "--no-store"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"Error: {tmp_path / 'nope'}: no such run folder"]


def test_cli_writes_markdown_from_the_configured_embedded_store(campaign, tmp_path, monkeypatch):
    run, memory = campaign
    monkeypatch.setenv("SC_INVERSE_DATA_DIR", str(tmp_path / "data"))
    from sc_inverse.settings import get_settings
    from sc_inverse.stores import get_job_store

    get_settings.cache_clear()
    store = get_job_store()
    with store:
        store.docs_store.update(list(memory.docs_store.query()), key=["uuid", "index"])
    out = tmp_path / "docs" / "campaigns" / "2026-12-03.md"
    res = CliRunner().invoke(cli, ["report", "campaign", str(run.root), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "5 DFT candidates, 2 pending" in res.output
    text = out.read_text()
    assert "| c0 | NbRu3C |" in text and "EPC skipped" in text
    assert "DFT elemental references" in text  # the run's other jobs, found by its flow uuid


def test_pending_dft_set_is_the_runs_top_k_best_ranked_survivors():
    from types import SimpleNamespace

    from sc_inverse.report.campaign import dft_candidate_ids

    recs = [SimpleNamespace(id=f"c{i}", passed=True, rank=i, selected=True) for i in (3, 1, 2, 4)]
    assert dft_candidate_ids(recs, [], [], top_k=2) == (["c1", "c2"], [])
    assert dft_candidate_ids(recs, [], [])[0] == ["c1", "c2", "c3", "c4"]  # no manifest: selected
