"""Results you can trust after re-runs and faults (issue 12, items 1-3): the derived collections
a command prints are the ones its flow built, one row per (structure, settings), interrupted
EPC runs continue where they stopped, and no document is published without its blobs.

The QE tests run the real ``sc-inverse epc`` on QE's fcc-Al example (``test`` preset) in
subprocesses: twice, and killed (SIGKILL to its process group) during ph.x then re-run.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from jobflow import Flow, job
from pymatgen.core import Lattice, Structure

from factories import elph_task, scf_task, write_upf
from sc_inverse.builders import query_results, run_builders
from sc_inverse.cli import cli
from sc_inverse.errors import StoreError
from sc_inverse.execution import run_flow_locally
from sc_inverse.metadata import material_id
from sc_inverse.pipeline.epc import make_epc_flow
from sc_inverse.pipeline.jobs import finalize_job
from sc_inverse.qe.jobs import resume_point, run_ph_resuming
from sc_inverse.qe.sets import get_preset
from sc_inverse.records import CandidateRecord, load_structure
from sc_inverse.runs import RunDir
from sc_inverse.settings import get_settings
from sc_inverse.stores import AtomicJobStore, get_job_store
from sc_inverse.stores import montydb_sqlite as sqlite_compat

ROOT = Path(__file__).resolve().parents[2]
AL_EXAMPLE = ROOT / "examples" / "al_fcc" / "Al.pwi"
QE_DATA = ROOT / "tests" / "test_data" / "qe"
QE_PSEUDO_DIR = Path("/usr/share/espresso/pseudo")
AL_LAMBDA = 0.435  # QE's PHonon/example03 at sigma = 0.010 Ry

requires_qe = pytest.mark.skipif(
    not all(shutil.which(p) for p in ("pw.x", "ph.x", "q2r.x", "matdyn.x", "lambda.x"))
    or not (QE_PSEUDO_DIR / "Al.pz-vbc.UPF").is_file(),
    reason="Quantum ESPRESSO executables or Al.pz-vbc.UPF not installed",
)


@job
def fake_elph(i: int) -> dict:
    """Stands for a QE elph job: a real ElphTaskDoc dict with invented numbers."""
    return elph_task(i)["output"]


@job(data=["a2f"])
def elph_with_blob(n: int) -> dict:
    """An elph document whose α²F array (``n`` points) goes to the ``"data"`` store."""
    out = elph_task(1)["output"]
    out["a2f"] = {"frequencies_cm1": np.linspace(0, 400, n).tolist(),
                  "a2f": np.random.default_rng(0).random(n).tolist()}
    return out


def _fake_lib(tmp_path: Path) -> Path:
    lib = tmp_path / "pseudo"
    lib.mkdir(exist_ok=True)
    write_upf(lib / "Al.pz-vbc.UPF", "Al", 15.0, 60.0, functional="SLA PZ")
    return lib


# -------------------------------------------------------------------------------------------
# 1. `run` prints what its finalize job built, read back from the same store
# -------------------------------------------------------------------------------------------
def test_run_prints_rows_its_flow_built_with_a_relative_data_dir(tmp_path, monkeypatch):
    """The bug: with the default relative data_dir, the finalize job (running in its own job
    folder) built its collections under that folder and `run` printed "(empty)"."""
    from sc_inverse.cli import run as run_module

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SC_INVERSE_DATA_DIR", "sc_inverse_data")  # relative, as by default
    get_settings.cache_clear()

    def flow_with_two_dft_candidates(run_dir, *args, **kwargs):
        run = RunDir(Path(run_dir).resolve())
        recs = [CandidateRecord.from_structure(Structure.from_dict(elph_task(i)["output"]["structure"]),
                                               id=f"c{i}", passed=True, rank=i + 1) for i in range(2)]
        run.write_json(run.candidates, [r.model_dump(mode="json") for r in recs])
        run.write_json(run.screened, [r.model_dump(mode="json") for r in recs])
        elph = [fake_elph(i) for i in range(2)]
        for i, j in enumerate(elph):
            j.update_metadata({"candidate_id": f"m{i}", "origin": "generated"})
        fin = finalize_job(str(run.root), ["c0", "c1"], [j.output for j in elph], [None, None],
                           [], material_ids=["m0", "m1"])
        return Flow([*elph, fin])

    monkeypatch.setattr(run_module, "make_inverse_design_flow", flow_with_two_dft_candidates)
    res = CliRunner().invoke(cli, ["run", "--run-name", "rel"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "DFT results of this run (superconductors collection, 2 of 2 completed)" in res.output
    assert "m0" in res.output and "m1" in res.output
    jobs = tmp_path / "sc_inverse_data" / "runs" / "rel" / "jobs"
    assert not list(jobs.rglob("*.collection"))  # nothing written inside the job folders
    rows = json.loads(CliRunner().invoke(cli, ["query", "--format", "json"]).output)
    assert sorted(r["material_id"] for r in rows) == ["m0", "m1"]


# -------------------------------------------------------------------------------------------
# 2. identity: one material per (standardised structure, settings); incomplete = no row
# -------------------------------------------------------------------------------------------
def test_material_id_ignores_cell_setting_site_order_origin_and_noise():
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5]])
    mid = material_id(nacl, {"preset": "test"})
    same = [nacl.get_primitive_structure(), nacl.get_sorted_structure(key=lambda s: -s.specie.Z)]
    moved = nacl.copy()
    moved.translate_sites(range(len(moved)), [0.13, 0.27, 0.31])
    noisy = nacl.copy()
    noisy.perturb(1e-5)
    assert all(material_id(s, {"preset": "test"}) == mid for s in [*same, moved, noisy])
    strained = nacl.copy()
    strained.apply_strain(0.01)
    assert material_id(strained, {"preset": "test"}) != mid
    assert material_id(nacl, {"preset": "paper"}) != mid
    assert mid.startswith("NaCl-225-")


def test_epc_flow_identity_and_uuids_are_stable(tmp_path):
    lib = _fake_lib(tmp_path)
    al = load_structure(AL_EXAMPLE)[0]
    f1, m1 = make_epc_flow(al, preset="test", pseudo_dir=str(lib))
    f2, m2 = make_epc_flow(al.get_sorted_structure(), preset="test", pseudo_dir=str(lib))
    assert m1 == m2 and [j.uuid for j in f1.jobs[0].jobs] == [j.uuid for j in f2.jobs[0].jobs]
    elph = f1.jobs[0].jobs[-1]
    scf = f1.jobs[0].jobs[0]
    assert scf.uuid in elph.input_uuids  # references follow the new uuids
    assert {j.metadata["candidate_id"] for j in f1.jobs[0].jobs} == {m1}
    _, m_relax = make_epc_flow(al, preset="test", pseudo_dir=str(lib), relax=True)
    write_upf(lib / "Al.pz-vbc.UPF", "Al", 15.0, 60.0, functional="SLA PW PBE PBE")
    _, m_other_pp = make_epc_flow(al, preset="test", pseudo_dir=str(lib))
    assert len({m1, m_relax, m_other_pp}) == 3


def test_an_incomplete_flow_produces_no_row():
    """A run killed after its scf: the scf document is stored, the elph one never is."""
    store = get_job_store()
    s = Structure.from_dict(elph_task(0)["output"]["structure"])
    with store:
        store.docs_store.update([scf_task(s, -9.0, 1, {"candidate_id": "killed"})],
                                key=["uuid", "index"])
    summary = run_builders(store)
    assert summary["HullBuilder"]["written"] == 1 and summary["TcBuilder"]["written"] == 0
    assert query_results(job_store=store) == []


def test_resume_point_of_an_interrupted_ph_run(tmp_path, monkeypatch):
    d = tmp_path / "elph"
    shutil.copytree(QE_DATA / "al_elph", d)
    assert resume_point(d) == 9  # all 8 irreducible q-points finished
    monkeypatch.setenv("SC_INVERSE_PH_CMD", str(tmp_path / "no-such-ph.x"))
    get_settings.cache_clear()
    runs, notes = run_ph_resuming(get_preset("test"), (4, 4, 4), d)
    assert runs == [] and "q-points 1-8 of 8 finished" in notes[0].errors[0]  # ph.x not started
    (d / "dyn5").unlink()  # killed inside q-point 5: its files are incomplete or absent
    (d / "elph_dir" / "elph.inp_lambda.5").unlink()
    assert resume_point(d) == 5  # (6-8 are redone too: ph.x runs from start_q to the end)
    for q in range(1, 9):
        (d / f"dyn{q}").unlink(missing_ok=True)
    assert resume_point(d) is None  # nothing finished: a fresh run


# -------------------------------------------------------------------------------------------
# 3. atomic storage: blobs first, missing blobs skipped, disk full named
# -------------------------------------------------------------------------------------------
def _fail_blob_writes(monkeypatch, exc: BaseException) -> None:
    """Make every SQLite write to the blobs collection fail like a full disk."""
    real = sqlite_compat.SqliteTable.upsert

    def upsert(self, raw_by_id):
        if self._contractor._name.endswith("_blobs"):
            raise exc
        return real(self, raw_by_id)

    monkeypatch.setattr(sqlite_compat.SqliteTable, "upsert", upsert)


def test_a_document_is_published_only_after_its_blobs(monkeypatch):
    _fail_blob_writes(monkeypatch, sqlite3.OperationalError("database or disk is full"))
    store = get_job_store()
    assert isinstance(store, AtomicJobStore)
    j = elph_with_blob(2000)
    with pytest.raises(StoreError, match=r"outputs_blobs\.collection \(the disk is full"):
        run_flow_locally(Flow([j]), store=store, log=False, raise_immediately=True)
    with store:
        assert store.docs_store.count({"uuid": j.uuid}) == 0  # not half-published
    assert run_builders(store)["TcBuilder"]["source_docs"] == 0
    assert query_results(job_store=store) == []


def test_builders_skip_and_report_documents_whose_blobs_are_missing(monkeypatch):
    """Documents written by a store without that guarantee (jobflow's own JobStore, older
    versions): the builders skip them instead of publishing a material whose data is gone."""
    from jobflow import JobStore

    real = get_job_store()
    plain = JobStore(real.docs_store, additional_stores=real.additional_stores)
    good, lost = elph_with_blob(50), elph_with_blob(60)
    lost.update_metadata({"candidate_id": "lost"})
    good.update_metadata({"candidate_id": "good"})
    run_flow_locally(Flow([good, lost]), store=plain, log=False, raise_immediately=True)
    with plain:
        ref = plain.docs_store.query_one({"uuid": lost.uuid})["output"]["a2f"]
        plain.additional_stores["data"].remove_docs({"blob_uuid": ref["blob_uuid"]})
    res = CliRunner().invoke(cli, ["build"])
    assert res.exit_code == 0, res.output
    assert "2 source docs, 0 skipped (malformed), 1 skipped (blobs missing)" in res.output
    rows = query_results(job_store=get_job_store())
    assert [r["material_id"] for r in rows] == ["good"]
    with plain:  # what failed before: loading the published material's output
        assert plain.get_output(good.uuid, load=True)["a2f"]["a2f"]


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 2 MiB tmpfs (needs root and mount rights; skipped otherwise), unmounted after."""
    where = tmp_path / "tmpfs"
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_disk_full_on_a_real_small_filesystem(small_tmpfs, monkeypatch):
    """The store on a nearly full disk: the α²F blob does not fit. The job fails with one
    message naming the store file; no document, no material, and the store still works."""
    monkeypatch.setenv("SC_INVERSE_DATA_DIR", str(small_tmpfs / "data"))
    get_settings.cache_clear()
    store = get_job_store()
    with store:  # create the collections, then fill the disk but ~200 kB
        store.docs_store.count()
        store.additional_stores["data"].count()
    free = shutil.disk_usage(small_tmpfs).free
    (small_tmpfs / "filler").write_bytes(b"\0" * (free - 200_000))
    j = elph_with_blob(20_000)  # ~0.6 MB of α²F in the blob
    with pytest.raises(StoreError) as err:
        run_flow_locally(Flow([j]), store=store, log=False, raise_immediately=True)
    assert "outputs_blobs.collection" in str(err.value) and "disk is full" in str(err.value)
    with store:
        assert store.docs_store.count() == 0 and store.additional_stores["data"].count() == 0
    assert query_results(job_store=store) == []
    (small_tmpfs / "filler").unlink()  # space again: the same store takes the same job
    run_flow_locally(Flow([elph_with_blob(20_000)]), store=store, log=False, raise_immediately=True)
    assert run_builders(store)["TcBuilder"]["written"] == 1


def test_disk_full_error_names_the_store_for_a_raw_oserror(monkeypatch):
    _fail_blob_writes(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(StoreError, match="outputs_blobs.collection .the disk is full"):
        run_flow_locally(Flow([elph_with_blob(10)]), store=get_job_store(), log=False,
                         raise_immediately=True)


# -------------------------------------------------------------------------------------------
# real QE: `sc-inverse epc` twice, and killed during ph.x then re-run
# -------------------------------------------------------------------------------------------
def _epc_cmd(workdir: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sc_inverse.cli", "epc", str(AL_EXAMPLE), "--preset", "test",
            "--pseudo-dir", str(QE_PSEUDO_DIR), "--workdir", str(workdir), "--out", str(out),
            *extra]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _al_rows() -> list[dict]:
    rows = json.loads(CliRunner().invoke(cli, ["query", "--format", "json"]).output)
    assert len(rows) == 1, rows
    return rows


@requires_qe
@pytest.mark.qe
@pytest.mark.slow
def test_epc_twice_gives_one_row(tmp_path):
    """Re-computed from scratch (`--fresh`) the same structure + settings updates its row and
    its task documents; run again as is, the finished run is reused, not repeated."""
    wd = tmp_path / "wd"
    for extra in ((), ("--fresh",)):
        proc = subprocess.run(_epc_cmd(wd, tmp_path / "r.json", *extra), capture_output=True,
                              text=True, env=_env(), timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = _al_rows()
    assert row["formula"] == "Al" and row["lambda"] == pytest.approx(AL_LAMBDA, abs=0.003)
    mid = json.loads((tmp_path / "r.json").read_text())["material_id"]
    assert row["material_id"] == mid and [p.name for p in wd.iterdir()] == [mid]
    store = get_job_store()
    with store:  # scf, elph, build: upserted, not duplicated
        assert store.docs_store.count() == 3
    t0 = time.perf_counter()
    proc = subprocess.run(_epc_cmd(wd, tmp_path / "r2.json"), capture_output=True, text=True,
                          env=_env(), timeout=600)
    assert proc.returncode == 0 and "reused from an earlier run" in proc.stderr
    assert time.perf_counter() - t0 < 30  # no QE ran
    (again,) = _al_rows()
    assert again["lambda"] == row["lambda"]


def _finished_qpoints(folder: Path) -> int:
    return len(list(folder.glob("*/qe-elph/elph_dir/elph.inp_lambda.*")))


@requires_qe
@pytest.mark.qe
@pytest.mark.slow
@pytest.mark.ci
def test_epc_killed_during_ph_then_rerun_resumes(tmp_path):
    """SIGKILL to the whole process group (sc-inverse and ph.x) once ph.x finished 3 of the
    8 irreducible q-points; the re-run reuses the scf, restarts ph.x at q-point 4 and stores
    exactly one Al row with the reference λ."""
    wd = tmp_path / "wd"
    proc = subprocess.Popen(_epc_cmd(wd, tmp_path / "r.json"), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    t0 = time.perf_counter()
    while _finished_qpoints(wd) < 3 and proc.poll() is None and time.perf_counter() - t0 < 300:
        time.sleep(0.2)
    assert proc.poll() is None, "epc ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = _finished_qpoints(wd)
    assert 3 <= done_before < 8
    assert query_results(job_store=get_job_store()) == []  # killed: no (phantom) row

    rerun = subprocess.run(_epc_cmd(wd, tmp_path / "r.json"), capture_output=True, text=True,
                           env=_env(), timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "reused from an earlier run" in rerun.stderr and "qe scf" in rerun.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    (resume,) = [c for c in result["corrections"] if c["handler"] == "resume"]
    start_q = resume["actions"][0]["_set"]["inputph.start_q"]
    assert start_q == done_before + 1  # finished q-points were not redone
    ph_out = (wd / result["material_id"] / "qe-elph" / "ph.out").read_text()
    assert ph_out.count("Calculation of q") == 8 - done_before
    (row,) = _al_rows()
    assert row["lambda"] == pytest.approx(AL_LAMBDA, abs=0.003)
