"""FireWorks path: categories, store reference, and REAL `sc-inverse rlaunch` runs in FireWorks'
embedded mode (mongomock persisted to a JSON file via MONGOMOCK_SERVERSTORE_FILE, locked by
sc-inverse) writing to the embedded JobStore, including a rocket killed mid-flow and re-launched.
Concurrent workers and plain FireWorks scripts: tests/reliability/test_cluster.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jobflow import Flow, job

from sc_inverse.settings import get_settings

BIN = Path(sys.executable).parent
TESTS = Path(__file__).parent
AL = Path(__file__).parents[1] / "examples" / "al_fcc" / "Al.pwi"


# ---------------------------------------------------------------------------------------------
# jobs run by the rlaunch subprocesses (importable as `test_execution` via PYTHONPATH)
# ---------------------------------------------------------------------------------------------
@job
def add_one(x: float) -> float:
    return x + 1


@job
def kill_once(x: float, marker: str) -> float:
    """Dies by SIGKILL the first time (a node crash / walltime kill), works the second time."""
    m = Path(marker)
    if not m.exists():
        m.write_text("killed once")
        os.kill(os.getpid(), signal.SIGKILL)
    return x * 2


@job
def fan_out(n: int):
    """Replaces itself by n jobs at run time (like the q-point fan-out of QeElphMaker)."""
    from jobflow import Response

    jobs = [add_one(float(i)) for i in range(n)]
    return Response(replace=Flow(jobs, output=[j.output for j in jobs]))


@job
def total(xs: list) -> float:
    return float(sum(xs))


@job
def recorded_gate(case: str):
    """The StabilityGateDoc of a recorded gate run (tests/test_data/qe/gate/CASE)."""
    from sc_inverse.qe.schemas import PwTaskDoc, StabilityGateDoc
    from sc_inverse.qe.sets import TEST

    d = TESTS / "test_data" / "qe" / "gate" / case
    preset = TEST.with_updates(pseudo_pattern="{el}.pbesol-*.UPF")
    scf = PwTaskDoc.from_directory(d, preset, "scf")
    return StabilityGateDoc.from_directory(d, preset, scf.structure, scf)


@job
def report_epc(epc) -> dict:
    """Stands for the run's finalize job: what it was handed for the EPC output."""
    return {"calc_type": getattr(epc, "calc_type", None), "stable": getattr(epc, "stable", None)}


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def fw_env(tmp_path, monkeypatch):
    """Embedded FireWorks: LaunchPad file + mongomock state file + an fworker taking all jobs."""
    state = tmp_path / "fw_state.json"
    state.write_text("{}")
    lp = tmp_path / "my_launchpad.yaml"
    lp.write_text("host: localhost\nport: 27017\nname: fwtest\n")
    fworker = tmp_path / "fworker_all.yaml"
    fworker.write_text("name: all\ncategory: ''\nquery: '{}'\n")
    monkeypatch.setenv("MONGOMOCK_SERVERSTORE_FILE", str(state))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.chdir(tmp_path)
    return {"state": state, "lp": lp, "fworker": fworker, "dir": tmp_path}


def _sh(*args, env=None, check=True, timeout=600):
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _submit(fw_env, flow) -> None:
    from monty.serialization import dumpfn

    f = fw_env["dir"] / "flow.json"
    dumpfn(flow, f)
    _sh(BIN / "sc-inverse", "submit", "flow", f, "--launchpad", fw_env["lp"])


def _rlaunch(fw_env, check=True, fworker=None):
    return _sh(BIN / "sc-inverse", "rlaunch", "-l", fw_env["lp"], "-w", fworker or fw_env["fworker"],
               "rapidfire", check=check)


def _fw_states(fw_env) -> list[tuple[str, str]]:
    """(name, state) of every Firework in fw_id order, read from the persisted LaunchPad."""
    import bson.json_util

    data = bson.json_util.loads(fw_env["state"].read_text())
    docs = sorted((doc["fw_id"], doc["name"], doc["state"])
                  for _, doc in data["fwtest"]["fireworks"]["documents"])
    return [(n, st) for _, n, st in docs]


def _states(fw_env) -> set[str]:
    return {st for _, st in _fw_states(fw_env)}


def _outputs() -> list[dict]:
    from sc_inverse.stores import get_job_store

    store = get_job_store()
    with store:
        return list(store.query({}))


# ---------------------------------------------------------------------------------------------
# unit: categories, store reference, credentials
# ---------------------------------------------------------------------------------------------
def test_qe_jobs_get_the_fworker_category():
    from sc_inverse.execution import flow_to_fireworks
    from sc_inverse.qe.flows import ElectronPhononTcMaker

    flow = ElectronPhononTcMaker(preset="test", relax=True, stability_gate=False).make(_al())
    wf = flow_to_fireworks(flow, categories={"qe scf": "bigmem"}, qe_category="qe")
    cats = {fw.name: fw.spec.get("_category") for fw in wf.fws}
    assert cats["qe scf"] == "bigmem" and cats["qe vc-relax"] == "qe" and cats["qe elph"] == "qe"
    # with the stability gate: the gate and the gated EPC job (whose scf/elph jobs, born at run
    # time, inherit its category) are QE jobs too
    flow = ElectronPhononTcMaker(preset="test", relax=True, stability_gate=True).make(_al())
    wf = flow_to_fireworks(flow, categories={"qe stability gate": "bigmem"}, qe_category="qe")
    cats = {fw.name: fw.spec.get("_category") for fw in wf.fws}
    assert cats == {"qe vc-relax": "qe", "qe stability gate": "bigmem", "qe epc": "qe"}
    wf = flow_to_fireworks(Flow([add_one(1.0)]))  # a non-QE job gets no category
    assert [fw.spec.get("_category") for fw in wf.fws] == [None]


def test_fireworks_carry_a_store_reference_without_credentials(monkeypatch):
    from sc_inverse.execution import SettingsJobStore, flow_to_fireworks

    monkeypatch.setenv("SC_INVERSE_STORE", "mongo")
    monkeypatch.setenv("SC_INVERSE_MONGO_PASSWORD", "top-secret")
    get_settings.cache_clear()
    wf = flow_to_fireworks(Flow([add_one(1.0)]))
    text = json.dumps(wf.to_dict(), default=str)
    assert "top-secret" not in text
    task = wf.fws[0].tasks[-1]
    store = task["store"]
    assert isinstance(store, SettingsJobStore) and store.as_dict()["data_dir"] is None
    assert wf.fws[0].tasks[0].__class__.__name__ == "ApplyFWorkerEnv"


def test_fworker_category_and_env(tmp_path, monkeypatch):
    from sc_inverse.execution import ApplyFWorkerEnv, fworker_category

    f = tmp_path / "w.yaml"
    f.write_text("name: x\ncategory: [gpu, __none__]\n")
    assert fworker_category(f) == "gpu"
    f.write_text("name: x\ncategory: ''\n")
    assert fworker_category(f) == "qe"
    assert fworker_category(Path(__file__).parents[1] / "my_fworker.yaml") == "qe"
    monkeypatch.delenv("SC_INVERSE_PW_CMD", raising=False)
    ApplyFWorkerEnv().run_task({"_fw_env": {"SC_INVERSE_PW_CMD": "mpirun pw.x", "OTHER": "x"}})
    try:
        assert get_settings().pw_cmd == "mpirun pw.x" and "OTHER" not in os.environ
    finally:
        os.environ.pop("SC_INVERSE_PW_CMD", None)
        get_settings.cache_clear()


def test_missing_launchpad_file_is_an_input_error(tmp_path):
    from sc_inverse.errors import InputError
    from sc_inverse.execution import submit_flow

    with pytest.raises(InputError, match="nope.yaml"):
        submit_flow(Flow([add_one(1.0)]), tmp_path / "nope.yaml")


def _al():
    from sc_inverse.records import load_structure

    return load_structure(AL)[0]


# ---------------------------------------------------------------------------------------------
# real rlaunch in FireWorks' embedded mode
# ---------------------------------------------------------------------------------------------
def test_rlaunch_embedded_writes_to_embedded_jobstore(fw_env):
    a = add_one(1.0)
    b = add_one(a.output)
    _submit(fw_env, Flow([a, b], name="tiny"))
    assert _states(fw_env) == {"READY", "WAITING"}
    _rlaunch(fw_env)
    assert _states(fw_env) == {"COMPLETED"}
    docs = {d["uuid"]: d for d in _outputs()}
    assert docs[a.uuid]["output"] == 2.0 and docs[b.uuid]["output"] == 3.0
    assert len(docs) == 2


def test_rlaunch_runs_dynamic_fan_out_with_category_and_store(fw_env):
    fo = fan_out(3)
    fo.update_config({"manager_config": {"_category": "qe"}})
    t = total(fo.output)
    _submit(fw_env, Flow([fo, t], name="dynamic"))
    qe_only = fw_env["dir"] / "qe.yaml"
    qe_only.write_text("name: qe\ncategory: qe\nquery: '{}'\n")
    _rlaunch(fw_env, fworker=qe_only)  # the fan-out and the jobs it creates are all 'qe'
    names = dict(_fw_states(fw_env))
    assert [st for n, st in _fw_states(fw_env) if n == "add_one"] == ["COMPLETED"] * 3
    assert names["total"] == "READY"  # no category: left for another worker
    _rlaunch(fw_env)
    assert _states(fw_env) == {"COMPLETED"}
    from sc_inverse.stores import get_job_store

    with get_job_store() as store:
        assert store.get_output(t.uuid) == 6.0  # 1 + 2 + 3, via the replaced outputs


def test_gated_out_candidate_under_fireworks_still_reaches_the_finalize_job(fw_env):
    """The gate stops bcc Zr's EPC without stop_children (which FireWorks turns into defused
    children, leaving the finalize job waiting forever): every Firework completes and the
    finalize stand-in (OnMissing.NONE, as the run's) receives the gate's document."""
    from jobflow import JobConfig, OnMissing

    from sc_inverse.qe.gate import QeGatedElphMaker

    gate = recorded_gate("zr_bcc")
    epc = QeGatedElphMaker().make(gate.output, None)
    fin = report_epc(epc.output)
    fin.config = JobConfig(on_missing_references=OnMissing.NONE)
    _submit(fw_env, Flow([gate, epc, fin], name="gated"))
    _rlaunch(fw_env)
    assert _states(fw_env) == {"COMPLETED"}
    from sc_inverse.stores import get_job_store

    with get_job_store() as store:
        assert store.get_output(fin.uuid) == {"calc_type": "stability-gate", "stable": False}


def test_killed_rocket_relaunch_completes_without_duplicates(fw_env):
    marker = fw_env["dir"] / "killed.marker"
    a = add_one(1.0)
    b = kill_once(a.output, str(marker))
    c = add_one(b.output)
    _submit(fw_env, Flow([a, b, c], name="crashy"))
    proc = _rlaunch(fw_env, check=False)
    assert proc.returncode == -signal.SIGKILL and marker.exists()
    first = {d["uuid"]: d for d in _outputs()}
    assert set(first) == {a.uuid}  # a finished before the crash, b/c never stored
    states = dict((n, st) for n, st in _fw_states(fw_env) if n == "kill_once")
    assert states["kill_once"] == "RUNNING"  # as MongoDB would show it: the file is up to date
    out = _sh(BIN / "sc-inverse", "submit", "recover", "--expiration-secs", "0",
              "--launchpad", fw_env["lp"]).stdout
    assert "re-running 1 fireworks" in out
    _rlaunch(fw_env)
    assert _states(fw_env) == {"COMPLETED"}
    docs = _outputs()
    assert sorted(d["uuid"] for d in docs) == sorted([a.uuid, b.uuid, c.uuid])  # no duplicates
    by = {d["uuid"]: d for d in docs}
    assert by[c.uuid]["output"] == 5.0
    assert by[a.uuid]["completed_at"] == first[a.uuid]["completed_at"]  # a was not run again


def _elph_launches(root: Path) -> list[Path]:
    return [d for d in root.glob("launcher_*") if (d / "elph_dir").is_dir()]


@pytest.mark.slow
@pytest.mark.qe
@pytest.mark.ci
def test_worker_killed_during_ph_resumes_in_the_rerun_launch(fw_env):
    """Real QE under a real worker: SIGKILL to `sc-inverse rlaunch` and ph.x once the EPC ph.x
    finished 3 of Al's 8 irreducible q-points; `submit recover` and a new worker continue in a
    new launch directory from q-point 4 (the killed attempt's files moved there), and the flow
    completes with one EPC document and Al's λ."""
    from sc_inverse.qe.attempts import DONE_MARKER, MOVED_MARKER
    from sc_inverse.qe.handlers import completed_qpoints

    _sh(BIN / "sc-inverse", "submit", "epc", AL, "--preset", "test", "--launchpad", fw_env["lp"])
    cmd = [str(BIN / "sc-inverse"), "rlaunch", "-l", str(fw_env["lp"]), "-w",
           str(fw_env["fworker"]), "rapidfire"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    done, t0 = 0, time.perf_counter()
    while done < 3 and proc.poll() is None and time.perf_counter() - t0 < 500:
        time.sleep(0.2)
        done = max((len(completed_qpoints(d, "dyn")) for d in _elph_launches(fw_env["dir"])),
                   default=0)
    assert proc.poll() is None, "the worker ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (killed,) = _elph_launches(fw_env["dir"])
    done = len(completed_qpoints(killed, "dyn"))
    assert 3 <= done < 8
    out = _sh(BIN / "sc-inverse", "submit", "recover", "--expiration-secs", "0",
              "--launchpad", fw_env["lp"]).stdout
    assert "re-running 1 fireworks" in out
    _rlaunch(fw_env)
    assert _states(fw_env) == {"COMPLETED"}
    assert (killed / MOVED_MARKER).exists() and not (killed / "elph_dir").exists()
    (rerun,) = _elph_launches(fw_env["dir"])
    assert (rerun / DONE_MARKER).exists()
    assert (rerun / "ph.out").read_text().count("Calculation of q") == 8 - done
    (elph,) = [d["output"] for d in _outputs()
               if isinstance(d.get("output"), dict) and "lambda_" in d["output"]]
    (resume,) = [c for c in elph["corrections"] if c["handler"] == "resume"]
    assert resume["actions"][0]["_set"]["inputph.start_q"] == done + 1
    assert elph["lambda_"] == pytest.approx(0.435, abs=0.003)  # QE's PHonon/example03


_CHECKOUTS = """
from fireworks import FWorker
from sc_inverse.execution import load_launchpad
lp = load_launchpad("my_launchpad.yaml")
# step 1 of FireWorks' checkout_fw only, as a worker killed inside it leaves the LaunchPad
orphan = lp._get_a_fw_to_run({}, checkout=True)
# a queue reservation (qlaunch -r): RESERVED with a RESERVED launch
queued, _ = lp.reserve_fw(FWorker(), ".")
print(orphan.fw_id, queued.fw_id)
"""


def test_recover_reruns_a_firework_left_reserved_by_a_killed_checkout(fw_env):
    _submit(fw_env, Flow([add_one(1.0), add_one(2.0)], name="two"))
    orphan, queued = map(int, _sh(sys.executable, "-c", _CHECKOUTS).stdout.split()[-2:])
    assert _states(fw_env) == {"RESERVED"}
    out = _sh(BIN / "sc-inverse", "submit", "recover", "--expiration-secs", "0",
              "--launchpad", fw_env["lp"]).stdout
    assert f"re-running 1 fireworks: [{orphan}]" in out
    import bson.json_util

    docs = bson.json_util.loads(fw_env["state"].read_text())["fwtest"]["fireworks"]["documents"]
    by_id = {doc["fw_id"]: doc["state"] for _, doc in docs}
    assert by_id == {orphan: "READY", queued: "RESERVED"}  # the queue reservation is left alone


@pytest.mark.slow
@pytest.mark.qe
def test_real_qe_epc_flow_through_fireworks_then_builders_and_query(fw_env):
    """Acceptance: Al EPC (test preset) + Al reference via `submit` → rlaunch → build → query."""
    from sc_inverse.thermo.jobs import QeElementalReferenceMaker

    qe_worker = fw_env["dir"] / "qe_worker.yaml"
    qe_worker.write_text("name: qe\ncategory: qe\nquery: '{}'\n")
    _sh(BIN / "sc-inverse", "submit", "epc", AL, "--preset", "test", "--launchpad", fw_env["lp"])
    _submit(fw_env, QeElementalReferenceMaker(preset="test", relax=False).make(["Al"]))
    _rlaunch(fw_env, fworker=qe_worker)  # QE jobs only (category qe)
    states = dict(_fw_states(fw_env))
    assert states.pop("collect reference entries") == "READY"  # no category: not for this worker
    assert states.pop("build_collections") == "READY"  # the epc flow's last job: no category
    assert set(states.values()) == {"COMPLETED"}
    _rlaunch(fw_env)  # the CPU worker takes the rest
    assert _states(fw_env) == {"COMPLETED"}
    build = _sh(BIN / "sc-inverse", "build").stdout
    assert "TcBuilder" in build and "HullBuilder" in build
    rows = json.loads(_sh(BIN / "sc-inverse", "query", "--format", "json").stdout)
    (al,) = [r for r in rows if r["material_id"].startswith("Al-225-")]  # structure + settings
    assert 0.3 < al["lambda"] < 0.6 and al["tc_K"] > 0 and al["dynamically_stable"] is True
    assert al["spacegroup"] == "Fm-3m"
    assert 0 <= al["e_above_hull_eV_per_atom"] < 0.05
    assert "Al" in _sh(BIN / "sc-inverse", "query").stdout
    again = _sh(BIN / "sc-inverse", "build").stdout
    assert "0 processed" in again.splitlines()[0] and "0 processed" in again.splitlines()[1]


def test_submit_inverse_design_adds_the_pipeline_with_the_qe_category(fw_env):
    """`submit inverse-design` puts the four static stages on the LaunchPad; the DFT stage
    carries the QE category it will give the QE jobs it creates at run time."""
    import bson.json_util

    _sh(BIN / "sc-inverse", "submit", "inverse-design", "--n", "5", "--top", "1",
        "--launchpad", fw_env["lp"], "--category", "qe_big")
    assert sorted(n for n, _ in _fw_states(fw_env)) == [
        "collect_candidates", "dft_stage", "generate candidates", "screen candidates"]
    data = bson.json_util.loads(fw_env["state"].read_text())
    docs = [doc for _, doc in data["fwtest"]["fireworks"]["documents"]]
    (dft,) = [d for d in docs if d["name"] == "dft_stage"]
    (task,) = [t for t in dft["spec"]["_tasks"] if "job" in t]
    assert task["job"]["function_kwargs"]["qe_category"] == "qe_big"


@pytest.mark.slow
@pytest.mark.ci
@pytest.mark.qe
def test_inverse_design_through_rlaunch_routes_qe_jobs_by_category(fw_env):
    """The whole pipeline under FireWorks: a CPU worker (no category) runs generation, screening
    and the DFT stage, which creates QE jobs that only the QE worker (category qe) picks up."""
    if shutil.which("ph.x") is None:
        pytest.skip("needs Quantum ESPRESSO")
    lib = fw_env["dir"] / "pseudo"
    lib.mkdir()
    (lib / "Al.pz-vbc.UPF").symlink_to("/usr/share/espresso/pseudo/Al.pz-vbc.UPF")
    crit = fw_env["dir"] / "crit.json"
    crit.write_text(json.dumps([{"key": "tc_K", "comparison": ">", "threshold": -100.0},
                                {"predictor": "mlip", "key": "e_form_eV_per_atom", "comparison": "<",
                                 "threshold": 1.0}]))
    cpu = fw_env["dir"] / "fworker_cpu.yaml"
    cpu.write_text("name: cpu\ncategory: __none__\nquery: '{}'\n")
    qe = fw_env["dir"] / "fworker_qe.yaml"
    qe.write_text("name: qe\ncategory: qe\nquery: '{}'\n")
    _sh(BIN / "sc-inverse", "submit", "inverse-design", "--n", "4", "--top", "1", "--preset", "test",
        "--include", AL, "--pseudo-dir", lib, "--criteria", crit, "--keep-known", "--elements", "all",
        "--launchpad", fw_env["lp"], "--run-name", "fw", "--category", "qe")
    _rlaunch(fw_env, fworker=cpu)  # static stages + DFT fan-out creation, then stops at QE jobs
    states = dict(_fw_states(fw_env))
    assert states["dft_stage"] == "COMPLETED"
    waiting = [n for n, st in _fw_states(fw_env) if st != "COMPLETED"]
    assert any(n.startswith("qe ") for n in waiting)
    _rlaunch(fw_env, fworker=qe)  # QE jobs only
    assert all(st != "READY" or not n.startswith("qe ") for n, st in _fw_states(fw_env))
    _rlaunch(fw_env, fworker=cpu)  # hull + finalize (+ builders)
    assert _states(fw_env) == {"COMPLETED"}
    from sc_inverse.runs import runs_root

    funnel = json.loads((runs_root() / "fw" / "funnel.json").read_text())
    assert funnel["counts"]["DFT completed"] == 1
    out = _sh(BIN / "sc-inverse", "query", "--format", "json").stdout
    assert '"Al"' in out
