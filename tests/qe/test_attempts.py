"""A re-run of a killed QE job takes over its files (sc_inverse.qe.attempts): registry, the
FireWorks launch-directory fallback, what is reused (finished pw.x, finished gate q-points, the
ionic steps of a vc-relax), and a real Al stability gate failed after ph.x then re-run.
The SIGKILLed FireWorks worker case: tests/test_execution.py."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from jobflow import CURRENT_JOB, run_locally
from qe_testutils import requires_qe

from sc_inverse.qe import attempts
from sc_inverse.qe.attempts import (
    DONE_MARKER,
    MOVED_MARKER,
    REGISTRY_DIR,
    resumable_attempt,
    resuming_from,
)
from sc_inverse.qe.jobs import finished_pw_run, relax_restart
from sc_inverse.settings import get_settings

DATA = Path(__file__).parents[1] / "test_data" / "qe"


@pytest.fixture
def current_job(monkeypatch):
    """Pretend a jobflow job (uuid, index 1) is running."""
    fake = SimpleNamespace(uuid="0f5e-test-uuid", index=1)
    monkeypatch.setattr(CURRENT_JOB, "job", fake, raising=False)
    return fake


def _registry(key="0f5e-test-uuid-1") -> Path:
    return Path(get_settings().data_dir) / REGISTRY_DIR / f"{key}.json"


def _pretend_resuming(monkeypatch, earlier: Path) -> None:
    """As inside a re-run that took over ``earlier``'s files."""
    monkeypatch.setattr(attempts, "resuming_from", lambda: earlier)
    monkeypatch.setattr("sc_inverse.qe.jobs.resuming_from", lambda: earlier)


def _fail_in(directory: Path, files: dict[str, str]) -> None:
    with pytest.raises(RuntimeError), resumable_attempt(directory):
        for name, text in files.items():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            (directory / name).write_text(text)
        raise RuntimeError("killed")


def test_outside_a_job_nothing_is_recorded(tmp_path):
    with resumable_attempt(tmp_path) as earlier:
        assert earlier is None and resuming_from() is None
    assert not (Path(get_settings().data_dir) / REGISTRY_DIR).exists()


def test_rerun_takes_over_the_files_of_a_failed_attempt(tmp_path, current_job):
    first, second = tmp_path / "launch1", tmp_path / "launch2"
    first.mkdir()
    second.mkdir()
    (first / "FW.json").write_text("{}")
    _fail_in(first, {"scf.out": "partial", "out/qe.save/x": "wfc"})
    entry = json.loads(_registry().read_text())
    assert entry["directory"] == str(first.resolve()) and entry["pid"] == os.getpid()

    with resumable_attempt(second) as earlier:
        assert earlier == first.resolve() == resuming_from()
        assert (second / "scf.out").read_text() == "partial"
        assert (second / "out" / "qe.save" / "x").read_text() == "wfc"
    assert resuming_from() is None
    assert (first / "FW.json").exists() and not (second / "FW.json").exists()  # FireWorks' own
    assert (first / MOVED_MARKER).read_text().strip() == str(second.resolve())
    assert not _registry().exists() and (second / DONE_MARKER).exists()

    third = tmp_path / "launch3"
    third.mkdir()
    with resumable_attempt(third) as earlier:  # the job finished: a re-run starts afresh
        assert earlier is None and not (third / "scf.out").exists()


def test_attempt_whose_process_still_runs_is_left_alone(tmp_path, current_job):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    _fail_in(first, {"scf.out": "running"})
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        entry = json.loads(_registry().read_text())
        _registry().write_text(json.dumps({**entry, "pid": sleeper.pid}))
        with resumable_attempt(second) as earlier:
            assert earlier is None
        assert (first / "scf.out").exists() and not (second / "scf.out").exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_older_fireworks_launch_dir_of_the_same_job_is_found(tmp_path, current_job):
    """No registry entry (an attempt started before it existed): FW.json names the job."""
    old, done, other, new = (tmp_path / f"launcher_{i}" for i in range(4))
    for d in (old, done, other, new):
        d.mkdir()
    spec = json.dumps({"spec": {"_tasks": [{"job": {"uuid": current_job.uuid}}]}})
    for d in (old, done, new):
        (d / "FW.json").write_text(spec)
    (other / "FW.json").write_text(json.dumps({"spec": {"uuid": "another-job"}}))
    (old / "dyn1").write_text("old")
    (done / "dyn1").write_text("finished")
    (done / DONE_MARKER).touch()
    os.utime(done, (1e10, 1e10))  # newest, but finished: never taken
    (other / "dyn1").write_text("other")
    with resumable_attempt(new) as earlier:
        assert earlier == old.resolve()
    assert (new / "dyn1").read_text() == "old"
    assert (done / "dyn1").exists() and (other / "dyn1").exists()


def test_finished_pw_run_is_reused_only_when_input_and_save_match(tmp_path, monkeypatch):
    d = tmp_path
    shutil.copy(DATA / "pw" / "al_scf.out", d / "scf.out")
    (d / "scf.in").write_text("INPUT")
    save = d / "out" / "qe.save"
    save.mkdir(parents=True)
    assert finished_pw_run("INPUT", d, "scf") is None  # not resuming
    _pretend_resuming(monkeypatch, tmp_path / "earlier")
    assert finished_pw_run("INPUT", d, "scf") is None  # no data-file-schema.xml
    (save / "data-file-schema.xml").write_text("<xml/>")
    assert finished_pw_run("OTHER INPUT", d, "scf") is None
    res = finished_pw_run("INPUT", d, "scf")
    assert res is not None and res.output == d / "scf.out"
    assert res.corrections[0].handler == "resume" and res.timing.wall_time_s > 0
    shutil.copy(DATA / "pw" / "scf_not_converged.out", d / "scf.out")
    assert finished_pw_run("INPUT", d, "scf") is None


def test_killed_vc_relax_restarts_from_its_last_ionic_step(tmp_path, monkeypatch):
    lines = (DATA / "pw" / "al_vcrelax.out").read_text().splitlines(keepends=True)
    (tmp_path / "relax.out").write_text("".join(lines[:600]))  # killed in the 3rd scf
    assert relax_restart(tmp_path, "relax") is None  # not resuming: nothing touched
    _pretend_resuming(monkeypatch, tmp_path / "earlier")
    structure, note = relax_restart(tmp_path, "relax")
    assert note.handler == "resume" and "ionic step 2" in note.errors[0]
    assert (tmp_path / "relax.attempt1.out").exists() and not (tmp_path / "relax.out").exists()
    cell = [[float(x) for x in ln.split()] for ln in lines[553:556]]
    assert np.allclose(structure.lattice.matrix, cell, atol=1e-6)
    shutil.copy(DATA / "pw" / "al_vcrelax.out", tmp_path / "relax.out")
    assert relax_restart(tmp_path, "relax") is None  # finished: finished_pw_run's case


@pytest.mark.qe
@requires_qe
def test_gate_failed_after_phonons_is_finished_by_the_rerun(tmp_path, monkeypatch, al_structure):
    """Real QE (Al, test preset): the first attempt dies in q2r.x after scf and ph.x finished;
    the re-run of the same job moves them over, repeats neither and gives the same verdict."""
    from sc_inverse.qe import gate as gate_module
    from sc_inverse.qe.gate import QeStabilityGateMaker

    job = QeStabilityGateMaker(preset="test").make(al_structure, kpoints_grid=(8, 8, 8))
    rerun = copy.deepcopy(job)  # the same job (uuid) as FireWorks re-runs it
    real_run_qe = gate_module.run_qe

    def dies_in_q2r(program, *args, **kwargs):
        if program == "q2r":
            raise RuntimeError("node lost")
        return real_run_qe(program, *args, **kwargs)

    monkeypatch.setattr(gate_module, "run_qe", dies_in_q2r)
    first = run_locally(job, root_dir=tmp_path / "first", ensure_success=False)
    assert first == {} or job.uuid not in first
    assert _registry(f"{job.uuid}-1").exists()
    monkeypatch.setattr(gate_module, "run_qe", real_run_qe)
    second = run_locally(rerun, root_dir=tmp_path / "second", ensure_success=True)
    doc = second[job.uuid][1].output
    assert doc.stable is True
    resumed = {c.step: c for c in doc.corrections if c.handler == "resume"}
    assert set(resumed) == {"scf", "ph"} and resumed["ph"].actions == []  # all q-points done
    launch = Path(doc.dir_name)
    assert launch == tmp_path / "second"
    assert (tmp_path / "first" / MOVED_MARKER).exists() and not (tmp_path / "first" / "dyn1").exists()
    assert not (launch / "ph.out").exists() and (launch / "ph.attempt1.out").exists()
    assert doc.cpu_time_s > 0
    assert not _registry(f"{job.uuid}-1").exists()
