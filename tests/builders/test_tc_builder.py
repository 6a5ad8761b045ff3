"""TcBuilder: elph task documents → superconductors (incremental, idempotent, error-tolerant)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from maggma.stores import MemoryStore
from pymatgen.core import Structure

from factories import elph_task, scf_task, set_path
from sc_inverse.builders.tc import TcBuilder


def _docs(sc):
    with sc:
        return {d["material_id"]: d for d in sc.query({})}


def test_builds_one_document_per_material_with_all_fields(stores):
    tasks, sc, _ = stores
    a = elph_task(0, candidate_id="A", lambda_=0.8, predictions={"tc_K": 3.0, "lambda": 0.5})
    a_old = set_path(elph_task(1, candidate_id="A", lambda_=0.3), "completed_at", "2025-01-01T00:00:00")
    b = elph_task(7, candidate_id="B", origin="training", predictions={})
    other = scf_task(Structure.from_dict(a["output"]["structure"]), -10.0)  # not an elph doc
    tasks.update([a, a_old, b, other], key=["uuid", "index"])
    summary = TcBuilder(tasks, sc).run_with_summary()
    assert summary["source_docs"] == 3 and summary["items"] == 2 and summary["errors"] == 0
    docs = _docs(sc)
    assert set(docs) == {"A", "B"}
    d = docs["A"]
    out = a["output"]
    assert d["lambda_"] == out["lambda_"] == 0.8  # the latest elph result is reported
    assert d["tc_K"] == out["tc_K"] and d["tc_mcmillan_K"] == out["tc_mcmillan_K"]
    assert d["omega_log_K"] == out["omega_log_K"] and d["selected_sigma_Ry"] == 0.02
    assert d["formula"] == "NbN" and d["spacegroup_symbol"] == "Pm-3m" and d["spacegroup_number"] == 221
    assert d["dynamically_stable"] is False and d["origin"] == "generated" and d["valid"] is True
    assert d["ml_predictions"] == {"tc_K": 3.0, "lambda": 0.5}
    assert d["dft_minus_ml"]["tc_K"] == pytest.approx(out["tc_K"] - 3.0)
    assert d["dft_minus_ml"]["lambda_"] == pytest.approx(0.3)
    assert d["task_ids"] == sorted([a["uuid"], a_old["uuid"]]) and d["task_id"] == a["uuid"]
    assert docs["B"]["origin"] == "training" and docs["B"]["dft_minus_ml"] == {}
    assert docs["B"]["spacegroup_symbol"] == "Fm-3m"


def test_second_run_processes_nothing_and_changes_are_picked_up(stores):
    tasks, sc, _ = stores
    docs = [elph_task(i) for i in range(12)]
    tasks.update(docs, key=["uuid", "index"])
    assert TcBuilder(tasks, sc).run_with_summary()["processed"] == 12
    before = _docs(sc)
    s2 = TcBuilder(tasks, sc).run_with_summary()
    assert s2["items"] == 0 and s2["processed"] == 0 and s2["written"] == 0
    assert _docs(sc) == before  # nothing changed, not even last_updated
    # a re-run of one job (new completed_at) and one new material
    changed = set_path(docs[3], "completed_at", "2027-01-01T00:00:00")
    changed = set_path(changed, "output.lambda_", 1.5)
    tasks.update([changed, elph_task(99)], key=["uuid", "index"])
    s3 = TcBuilder(tasks, sc).run_with_summary()
    assert s3["processed"] == 2
    after = _docs(sc)
    assert after["cand-3"]["lambda_"] == 1.5 and "cand-99" in after and len(after) == 13


def test_rebuild_reuses_previous_space_groups(stores, monkeypatch):
    import spglib

    from sc_inverse.builders import tc

    tasks, sc, _ = stores
    docs = [elph_task(i) for i in range(4)]
    tasks.update(docs, key=["uuid", "index"])
    tc._SG_CACHE.clear()
    TcBuilder(tasks, sc).run_with_summary()
    tc._SG_CACHE.clear()  # a new process

    def no_spglib(*a, **k):
        raise ValueError("spglib called")  # counted as a build error, not a crash

    monkeypatch.setattr(spglib, "get_symmetry_dataset", no_spglib)
    tasks.update([set_path(d, "completed_at", "2027-01-01T00:00:00") for d in docs],
                 key=["uuid", "index"])
    s = TcBuilder(tasks, sc).run_with_summary()
    assert s["processed"] == 4 and s["errors"] == 0
    tasks.update(set_path(elph_task(50), "uuid", "new"), key=["uuid", "index"])
    tc._SG_CACHE.clear()
    assert TcBuilder(tasks, sc).run_with_summary()["errors"] == 1  # a new cell needs spglib


def test_malformed_documents_are_logged_skipped_counted(stores, caplog):
    tasks, sc, _ = stores
    good = [elph_task(i) for i in range(3)]
    no_structure = set_path(elph_task(10), "output.structure", None)
    bad_structure = set_path(elph_task(11), "output.structure", {"lattice": "garbage"})
    bad_tc = set_path(elph_task(12), "output.tc_K", "hot")
    tasks.update([*good, no_structure, bad_structure, bad_tc], key=["uuid", "index"])
    caplog.set_level(logging.WARNING)
    s = TcBuilder(tasks, sc).run_with_summary()
    # the doc without structure is skipped (its material then has no usable task: an error)
    assert s["skipped_docs"] == 1 and s["errors"] == 3 and s["processed"] == 6
    assert no_structure["uuid"] in caplog.text and "cand-11" in caplog.text and "tc_K" in caplog.text
    docs = _docs(sc)
    assert {k for k, d in docs.items() if d["valid"]} == {"cand-0", "cand-1", "cand-2"}
    assert "output.tc_K" in docs["cand-12"]["errors"][0]
    assert "malformed" in docs["cand-10"]["errors"][0]
    s2 = TcBuilder(tasks, sc).run_with_summary()  # failures are remembered, not retried
    assert s2["processed"] == 0 and s2["items"] == 0
    # fixing the malformed task (a re-run) rebuilds that material only
    fixed = set_path(elph_task(10), "uuid", no_structure["uuid"])
    fixed["completed_at"] = "2027-01-01T00:00:00"
    tasks.update(fixed, key=["uuid", "index"])
    s3 = TcBuilder(tasks, sc).run_with_summary()
    assert s3["processed"] == 1 and s3["errors"] == 0 and _docs(sc)["cand-10"]["valid"] is True


def test_same_builder_on_mongodb_memorystore():
    tasks, sc = MemoryStore("outputs"), MemoryStore("superconductors")
    tasks.connect()
    tasks.update([elph_task(i) for i in range(5)], key=["uuid", "index"])
    b = TcBuilder(tasks, sc)
    assert b.run_with_summary()["processed"] == 5
    assert b.run_with_summary()["processed"] == 0
    sc.connect()
    assert sc.count({"valid": True}) == 5
    assert "tc_K" in sc._collection.index_information() or any(
        "tc_K" in str(v) for v in sc._collection.index_information().values())


def test_runs_under_mrun(stores, tmp_path):
    """maggma's own runner, on the serialised default builders (Tc + Hull, embedded store)."""
    from monty.serialization import dumpfn

    from sc_inverse.builders import default_builders

    tasks, sc, th = stores
    docs = [elph_task(i) for i in range(4)]
    tasks.update(docs, key=["uuid", "index"])
    f = tmp_path / "builders.json"
    dumpfn(default_builders(), f)
    proc = subprocess.run([str(Path(sys.executable).parent / "mrun"), "--no_bars", str(f)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(_docs(sc)) == 4
    with th:
        assert th.count() == 4  # elph docs carry energies; no references -> missing_elements
        assert all(d["missing_elements"] for d in th.query({}))
