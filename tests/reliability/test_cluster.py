"""Concurrent workers on FireWorks' embedded LaunchPad (``MONGOMOCK_SERVERSTORE_FILE``), with real
processes: no Firework runs twice, nothing is rolled back, plain FireWorks scripts are refused,
and workers stop when the LaunchPad is idle. The SLURM version of these checks is
``benchmarks/slurm_embedded_check.sh`` (manual: it needs a SLURM installation)."""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jobflow import Flow, Response, job

BIN = Path(sys.executable).parent
HERE = Path(__file__).parent
AL = Path(__file__).parents[2] / "examples" / "al_fcc" / "Al.pwi"


# ---------------------------------------------------------------------------------------------
# jobs run by the worker subprocesses (importable as `test_cluster` via PYTHONPATH)
# ---------------------------------------------------------------------------------------------
@job
def mark(i: int, log: str, secs: float = 0.3, barrier: str | None = None) -> int:
    """Appends one line per execution to ``log`` (a job run twice shows up twice), then waits
    for the file ``barrier`` (if given) and ``secs``."""
    with open(log, "a") as fh:
        fh.write(f"{i} {os.getpid()}\n")
    deadline = time.monotonic() + 120
    while barrier and not os.path.exists(barrier) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(secs)
    return i


@job
def spawn_marks(n: int, log: str, category: str, after: int | None = None):
    """Creates n QE-category jobs at run time, as the DFT stage creates the QE jobs."""
    jobs = [mark(100 + i, log) for i in range(n)]
    for j in jobs:
        j.update_config({"manager_config": {"_category": category}})
    return Response(replace=Flow(jobs, output=[j.output for j in jobs]))


@job
def total(xs: list) -> int:
    return int(sum(xs))


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def lp_env(tmp_path, monkeypatch):
    """An embedded LaunchPad (state file + LaunchPad/FWorker files) and the env workers inherit."""
    state = tmp_path / "fw_state.json"
    state.write_text("{}")
    lp = tmp_path / "my_launchpad.yaml"
    lp.write_text("host: localhost\nport: 27017\nname: fwtest\n")
    anyone = tmp_path / "fworker_all.yaml"
    anyone.write_text("name: all\ncategory: ''\nquery: '{}'\n")
    monkeypatch.setenv("MONGOMOCK_SERVERSTORE_FILE", str(state))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.chdir(tmp_path)
    return {"state": state, "lp": lp, "fworker": anyone, "dir": tmp_path, "log": tmp_path / "runs.log"}


def _sh(*args, check=True, timeout=300) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _start(*args) -> subprocess.Popen:
    # SIGINT as in a terminal (a background test run inherits it ignored; Ctrl-C is simulated)
    return subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _submit(env, flow) -> None:
    from monty.serialization import dumpfn

    f = env["dir"] / "flow.json"
    dumpfn(flow, f)
    _sh(BIN / "sc-inverse", "submit", "flow", f, "--launchpad", env["lp"])


def _worker(env, fworker=None, until_idle=False) -> subprocess.Popen:
    return _start(BIN / "sc-inverse", "rlaunch", *(["--until-idle"] if until_idle else []),
                  "-l", env["lp"], "-w", fworker or env["fworker"], "rapidfire", "--sleep", "1")


def _wait(procs, timeout=240) -> list[tuple[int, str, str]]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        out.append((p.returncode, stdout, stderr))
    return out


def _db(env) -> dict:
    import bson.json_util

    return bson.json_util.loads(env["state"].read_text()).get("fwtest", {})


def _fireworks(env) -> list[dict]:
    return sorted((doc for _, doc in _db(env).get("fireworks", {}).get("documents", [])),
                  key=lambda d: d["fw_id"])


def _states(env) -> collections.Counter:
    return collections.Counter(fw["state"] for fw in _fireworks(env))


def _executions(env) -> collections.Counter:
    """How many times each mark job ran (from the log the jobs append to)."""
    lines = env["log"].read_text().split() if env["log"].exists() else []
    return collections.Counter(int(i) for i in lines[::2])


def _worker_pids(env) -> set[int]:
    """The processes that ran mark jobs."""
    lines = env["log"].read_text().splitlines() if env["log"].exists() else []
    return {int(line.split()[1]) for line in lines}


def _mark_index(fw: dict) -> int:
    """The ``i`` argument of the mark job a Firework runs."""
    (task,) = [t for t in fw["spec"]["_tasks"] if "job" in t]
    return task["job"]["function_args"][0]


def _outputs() -> list[dict]:
    from sc_inverse.stores import get_job_store

    with get_job_store() as store:
        return list(store.query({}, properties=["uuid", "index", "output"]))


# ---------------------------------------------------------------------------------------------
# the lock itself: atomic read-modify-write across processes (pure mongomock, no FireWorks)
# ---------------------------------------------------------------------------------------------
CLAIMER = r"""
import os, sys, time
from pathlib import Path
mode, path, go = sys.argv[1:4]
if mode == "locked":
    from sc_inverse.stores.launchpad_file import locked_mongo_client
    client = locked_mongo_client(path)
else:  # FireWorks' embedded mode as shipped: snapshot at start, whole copy written at exit
    os.environ["MONGOMOCK_SERVERSTORE_FILE"] = path
    import mongomock_persistence
    client = mongomock_persistence.MongoClient()
coll = client["db"]["jobs"]
Path(f"{go}.{os.getpid()}").touch()  # ready: the plain client has read its snapshot
while not Path(go).exists():  # every claimer has its client before anyone claims
    time.sleep(0.01)
claimed = []
while (doc := coll.find_one_and_update({"state": "READY"},
                                       {"$set": {"state": "RUNNING", "by": os.getpid()}})):
    claimed.append(doc["i"])
    time.sleep(0.005)
print(os.getpid(), *claimed)
"""

READER = r"""
import sys, time, bson.json_util
from pathlib import Path
path, stop = sys.argv[1:3]
reads = bad = 0
while not Path(stop).exists():
    try:
        bson.json_util.loads(Path(path).read_text())
    except ValueError:
        bad += 1
    reads += 1
print(reads, bad)
"""


def _claim_concurrently(tmp_path, mode: str, n_docs=40, n_procs=3):
    import bson.json_util

    path = tmp_path / f"{mode}.json"
    docs = [[f"id{i}", {"_id": f"id{i}", "i": i, "state": "READY"}] for i in range(n_docs)]
    path.write_text(bson.json_util.dumps({"db": {"jobs": {"name": "jobs", "documents": docs}}}))
    go, stop = tmp_path / f"{mode}.go", tmp_path / f"{mode}.stop"
    claimers = [_start(sys.executable, "-c", CLAIMER, mode, path, go) for _ in range(n_procs)]
    reader = _start(sys.executable, "-c", READER, path, stop)
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob(f"{go.name}.*"))) < n_procs and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    results = _wait(claimers, timeout=120)
    stop.touch()
    reads, bad = map(int, reader.communicate(timeout=60)[0].split())
    assert all(rc == 0 for rc, _, _ in results), results
    claims = {int(out.split()[0]): [int(i) for i in out.split()[1:]] for _, out, _ in results}
    final = [doc for _, doc in bson.json_util.loads(path.read_text())["db"]["jobs"]["documents"]]
    return claims, final, (reads, bad)


def test_plain_embedded_mode_runs_work_twice_and_loses_claims(tmp_path):
    """The fault as shipped: each process claims every document from its own snapshot, and the
    file keeps only the last writer's claims."""
    claims, final, _ = _claim_concurrently(tmp_path, "plain")
    everything = [i for c in claims.values() for i in c]
    assert len(everything) > len(set(everything))  # some documents were claimed twice
    assert len({doc.get("by") for doc in final}) == 1  # the other processes' claims are gone


def test_locked_file_claims_each_document_exactly_once(tmp_path):
    claims, final, (reads, bad) = _claim_concurrently(tmp_path, "locked")
    assert sorted(i for c in claims.values() for i in c) == list(range(40))  # all, none twice
    assert sum(1 for c in claims.values() if c) >= 2  # the claimers really interleaved
    on_file = {doc["i"]: doc["by"] for doc in final}
    assert all(doc["state"] == "RUNNING" for doc in final)
    assert on_file == {i: pid for pid, c in claims.items() for i in c}  # no claim lost
    assert reads > 0 and bad == 0  # the file is valid JSON at every moment (atomic rename)


def test_locked_clients_see_each_other_and_write_nothing_at_exit(tmp_path, caplog):
    from sc_inverse.stores.launchpad_file import locked_mongo_client

    path = tmp_path / "lp.json"
    path.write_text("{}")
    a = locked_mongo_client(path)["db"]["c"]
    b = locked_mongo_client(path)["db"]["c"]
    a.insert_one({"_id": 1, "state": "READY"})
    assert b.find_one({"_id": 1})["state"] == "READY"  # b re-read the file
    b.update_one({"_id": 1}, {"$set": {"state": "COMPLETED"}})
    assert a.find_one({"_id": 1})["state"] == "COMPLETED"
    written = path.read_text()
    del a, b  # a stale client going away writes nothing (no exit-time snapshot)
    import gc

    gc.collect()
    assert path.read_text() == written
    # a process that does not lock the file rewrites it: the next locked operation says so
    c = locked_mongo_client(path)["db"]["c"]
    path.write_text('{"db": {"c": {"name": "c", "documents": []}}}')
    with caplog.at_level("WARNING"):
        assert c.count_documents({}) == 0
    assert "does not lock it" in caplog.text


def test_a_failed_write_is_one_clear_error_and_the_file_stays_the_truth(tmp_path, monkeypatch):
    """Disk full while writing: the file keeps the last saved state, the next operation re-reads
    it instead of carrying on with the unsaved change, and no temporary file is left."""
    import errno

    from sc_inverse.errors import StoreError
    from sc_inverse.stores.launchpad_file import locked_mongo_client

    path = tmp_path / "lp.json"
    coll = locked_mongo_client(path)["db"]["c"]
    coll.insert_one({"_id": 1, "state": "READY"})
    saved = path.read_text()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m, pytest.raises(
            StoreError, match=r"cannot write the LaunchPad file .*lp.json.*space"):
        m.setattr(os, "replace", disk_full)
        coll.update_one({"_id": 1}, {"$set": {"state": "RUNNING"}})
    assert path.read_text() == saved and list(tmp_path.glob(".*tmp")) == []
    assert coll.find_one({"_id": 1})["state"] == "READY"


def test_a_corrupt_launchpad_file_is_one_clear_error(tmp_path):
    from sc_inverse.errors import StoreError
    from sc_inverse.stores.launchpad_file import locked_mongo_client

    path = tmp_path / "lp.json"
    path.write_text('{"db": {"c"')
    with pytest.raises(StoreError, match=r"lp.json is not a FireWorks LaunchPad file.*echo '\{\}'"):
        locked_mongo_client(path)


def test_shipped_queue_adapter_is_ours_and_launches_the_locked_worker():
    from fireworks.utilities.fw_serializers import load_object_from_file

    from sc_inverse.execution import ScInverseQueueAdapter

    qadapter = load_object_from_file(str(Path(__file__).parents[2] / "my_qadapter.yaml"))
    assert isinstance(qadapter, ScInverseQueueAdapter) and qadapter.q_type == "SLURM"
    assert qadapter["rocket_launch"].startswith("sc-inverse rlaunch ")
    assert "#SBATCH --ntasks=32" in qadapter.get_script_str("/tmp")


# ---------------------------------------------------------------------------------------------
# real FireWorks workers
# ---------------------------------------------------------------------------------------------
def test_plain_rlaunch_and_qlaunch_are_refused_before_writing_anything(lp_env):
    _submit(lp_env, Flow([mark(i, str(lp_env["log"])) for i in range(2)]))
    before = lp_env["state"].read_bytes()
    proc = _sh(BIN / "rlaunch", "-l", lp_env["lp"], "-w", lp_env["fworker"], "rapidfire",
               check=False)
    assert proc.returncode == 2
    (line,) = [x for x in proc.stderr.splitlines() if "sc-inverse" in x]
    assert "refusing plain `rlaunch`" in line and "run `sc-inverse rlaunch`" in line
    assert "Traceback" not in proc.stderr
    assert lp_env["state"].read_bytes() == before and not lp_env["log"].exists()
    qadapter = lp_env["dir"] / "my_qadapter.yaml"
    qadapter.write_text('_fw_name: "{{sc_inverse.execution.ScInverseQueueAdapter}}"\n'
                        "_fw_q_type: SLURM\nrocket_launch: sc-inverse rlaunch singleshot\n")
    proc = _sh(BIN / "qlaunch", "-l", lp_env["lp"], "-w", lp_env["fworker"], "-q", qadapter,
               "rapidfire", check=False)
    assert proc.returncode == 2 and "refusing plain `qlaunch`" in proc.stderr
    assert lp_env["state"].read_bytes() == before


@pytest.mark.slow
@pytest.mark.ci
def test_two_concurrent_rlaunch_workers_run_each_firework_once(lp_env):
    n = 10
    both_started = lp_env["dir"] / "both_started"
    jobs = [mark(i, str(lp_env["log"]), barrier=str(both_started)) for i in range(n)]
    _submit(lp_env, Flow(jobs, name="marks"))
    workers = [_worker(lp_env), _worker(lp_env)]
    deadline = time.monotonic() + 180  # each worker holds its first job until both have one
    while len(_worker_pids(lp_env)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    both_started.touch()
    results = _wait(workers)
    assert all(rc == 0 for rc, _, _ in results), results
    assert _worker_pids(lp_env) == {w.pid for w in workers}  # both workers did work
    runs = _executions(lp_env)
    assert runs == collections.Counter(range(n))  # every job exactly once
    assert _states(lp_env) == {"COMPLETED": n}
    launches = [doc for _, doc in _db(lp_env)["launches"]["documents"]]
    assert len(launches) == n and all(la["state"] == "COMPLETED" for la in launches)
    outputs = _outputs()
    assert sorted(d["output"] for d in outputs) == list(range(n))  # stored once each
    assert sorted(d["uuid"] for d in outputs) == sorted(j.uuid for j in jobs)


@pytest.mark.slow
@pytest.mark.ci
def test_ctrl_c_on_a_worker_rolls_nothing_back(lp_env):
    n = 6
    _submit(lp_env, Flow([mark(i, str(lp_env["log"]), 1.0) for i in range(n)], name="slow marks"))
    worker = _worker(lp_env)
    deadline = time.monotonic() + 120
    while _states(lp_env).get("COMPLETED", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    completed_before = {fw["fw_id"] for fw in _fireworks(lp_env) if fw["state"] == "COMPLETED"}
    assert len(completed_before) >= 2
    worker.send_signal(signal.SIGINT)
    worker.communicate(timeout=60)
    after = {fw["fw_id"]: fw["state"] for fw in _fireworks(lp_env)}
    assert all(after[i] == "COMPLETED" for i in completed_before)  # nothing rolled back
    # RESERVED: SIGINT inside FireWorks' checkout (state set before the launch is written);
    # `submit recover` re-runs it like a lost RUNNING one
    assert set(after.values()) - {"COMPLETED", "READY", "RUNNING", "RESERVED", "FIZZLED"} == set()
    _sh(BIN / "sc-inverse", "submit", "recover", "--expiration-secs", "0", "--fizzled",
        "--launchpad", lp_env["lp"])
    assert _wait([_worker(lp_env)])[0][0] == 0
    assert _states(lp_env) == {"COMPLETED": n}
    runs = _executions(lp_env)
    assert set(runs) == set(range(n))
    assert sum(runs.values()) <= n + 1  # at most the interrupted job ran again
    assert all(runs[_mark_index(fw)] == 1 for fw in _fireworks(lp_env)
               if fw["fw_id"] in completed_before)  # completed work was not redone


@pytest.mark.slow
@pytest.mark.ci
def test_category_workers_started_together_stop_when_the_launchpad_is_idle(lp_env):
    """The inverse-design shape: a job of no category creates QE-category jobs at run time and
    a job of no category needs their results. A QE worker started first waits for its jobs
    (FireWorks' own stop rule ends it at once) and both workers stop once everything is done."""
    log = str(lp_env["log"])
    first = mark(0, log, 2.0)
    spawn = spawn_marks(3, log, "qe", after=first.output)
    last = total(spawn.output)
    _submit(lp_env, Flow([first, spawn, last], name="dynamic"))
    qe = lp_env["dir"] / "fworker_qe.yaml"
    qe.write_text("name: qe\ncategory: qe\nquery: '{}'\n")
    cpu = lp_env["dir"] / "fworker_cpu.yaml"
    cpu.write_text("name: cpu\ncategory: __none__\nquery: '{}'\n")
    qe_worker = _worker(lp_env, qe, until_idle=True)
    time.sleep(1)
    results = _wait([qe_worker, _worker(lp_env, cpu, until_idle=True)])
    assert all(rc == 0 for rc, _, _ in results), results
    fws = _fireworks(lp_env)
    assert {fw["state"] for fw in fws} == {"COMPLETED"}
    assert {"mark", "spawn_marks", "total"} <= {fw["name"] for fw in fws}
    assert sorted(fw["name"] for fw in fws if fw["spec"].get("_category") == "qe") == ["mark"] * 3
    assert _executions(lp_env) == collections.Counter([0, 100, 101, 102])
    ran_by = {int(i): int(pid) for i, pid in (line.split() for line in
                                              Path(log).read_text().splitlines())}
    assert {ran_by[i] for i in (100, 101, 102)} == {qe_worker.pid} != {ran_by[0]}


@pytest.mark.slow
@pytest.mark.qe
def test_al_epc_fanout_with_two_concurrent_workers(lp_env):
    """Real QE: the fcc Al EPC flow (test preset, one Firework per q-point) run by two concurrent
    workers on the embedded LaunchPad: one launch per Firework, every job output stored once,
    one Al row in `query`."""
    if shutil.which("ph.x") is None:
        pytest.skip("needs Quantum ESPRESSO")
    _sh(BIN / "sc-inverse", "submit", "epc", AL, "--preset", "test", "--fanout",
        "--launchpad", lp_env["lp"])
    results = _wait([_worker(lp_env), _worker(lp_env)], timeout=1200)
    assert all(rc == 0 for rc, _, _ in results), results
    fws = _fireworks(lp_env)
    assert {fw["state"] for fw in fws} == {"COMPLETED"} and len(fws) > 5  # q-points fanned out
    launches = [doc for _, doc in _db(lp_env)["launches"]["documents"]]
    assert sorted(la["fw_id"] for la in launches) == sorted(fw["fw_id"] for fw in fws)
    outputs = _outputs()
    keys = [(d["uuid"], d["index"]) for d in outputs]
    assert len(keys) == len(set(keys))
    _sh(BIN / "sc-inverse", "build")
    rows = json.loads(_sh(BIN / "sc-inverse", "query", "--format", "json").stdout)
    (al,) = [r for r in rows if r["formula"] == "Al"]
    assert 0.3 < al["lambda"] < 0.6 and al["tc_K"] > 0


FAKE_SBATCH = """#!/bin/bash
# a free single-node queue: run the job script at once, in the background
dir=$(dirname "$0"); n=$(( $(cat "$dir/jobs" 2>/dev/null || echo 0) + 1 )); echo $n > "$dir/jobs"
nohup bash "$1" > "job-$n.out" 2>&1 < /dev/null &
echo "Submitted batch job $n"
"""


def _in_category(j, category: str):
    j.update_config({"manager_config": {"_category": category}})
    return j


@pytest.mark.slow
@pytest.mark.ci
def test_qlaunch_runs_a_dynamic_flow_as_queue_jobs_and_stops_by_itself(lp_env, monkeypatch):
    """`sc-inverse qlaunch -r rapidfire` on a stand-in for sbatch: one queue job per Firework
    (those created at run time included), each run once, and qlaunch stops when all are done.
    FireWorks' own stop rule ends qlaunch while `spawn_marks` is still creating its jobs."""
    bin_dir = lp_env["dir"] / "fake_queue"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", os.pathsep.join([str(bin_dir), os.environ["PATH"]]))
    fw_config = lp_env["dir"] / "FW_config.yaml"
    fw_config.write_text("QUEUE_UPDATE_INTERVAL: 1\n")
    monkeypatch.setenv("FW_CONFIG_FILE", str(fw_config))
    qe = lp_env["dir"] / "fworker_qe.yaml"
    qe.write_text("name: qe\ncategory: qe\nquery: '{}'\n")
    qadapter = lp_env["dir"] / "my_qadapter.yaml"
    qadapter.write_text(
        '_fw_name: "{{sc_inverse.execution.ScInverseQueueAdapter}}"\n_fw_q_type: SLURM\n'
        f"rocket_launch: {BIN / 'sc-inverse'} rlaunch -l {lp_env['lp']} -w {qe} singleshot\n")
    log = str(lp_env["log"])
    first = _in_category(mark(0, log), "qe")
    spawn = _in_category(spawn_marks(2, log, "qe", after=first.output), "qe")
    last = _in_category(total(spawn.output), "qe")
    _submit(lp_env, Flow([first, spawn, last], name="dynamic qe"))
    launches_dir = lp_env["dir"] / "launches"
    launches_dir.mkdir()
    proc = subprocess.run(
        [str(BIN / "sc-inverse"), "qlaunch", "-l", str(lp_env["lp"]), "-w", str(qe), "-q",
         str(qadapter), "-r", "rapidfire", "--sleep", "1"],
        capture_output=True, text=True, timeout=600, cwd=launches_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fws = _fireworks(lp_env)
    assert {fw["state"] for fw in fws} == {"COMPLETED"}, [(f["name"], f["state"]) for f in fws]
    n_jobs = int((bin_dir / "jobs").read_text())
    assert n_jobs == len(fws) >= 5  # one queue job per Firework: no empty or duplicate jobs
    assert _executions(lp_env) == collections.Counter([0, 100, 101])
    launches = [doc for _, doc in _db(lp_env)["launches"]["documents"]]
    assert sorted(la["fw_id"] for la in launches) == sorted(fw["fw_id"] for fw in fws)
