"""Issue 12, fail fast (items 4, 5, 6, 8): faults injected on purpose into real ``sc-inverse``
processes. Each must end in seconds with one line on stderr that names the place and the fix,
no traceback and no QE process started or left behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

import sc_inverse

ROOT = Path(__file__).resolve().parents[2]
AL_EXAMPLE = ROOT / "examples" / "al_fcc" / "Al.pwi"
SRC = Path(sc_inverse.__file__).resolve().parents[1]
QE_PROGRAMS = ("pw.x", "ph.x", "q2r.x", "matdyn.x", "lambda.x")
HAVE_QE = all(shutil.which(p) for p in QE_PROGRAMS) and Path(
    "/usr/share/espresso/pseudo/Al.pz-vbc.UPF").is_file()
requires_qe = pytest.mark.skipif(not HAVE_QE, reason="needs Quantum ESPRESSO and Al.pz-vbc.UPF")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SC_INVERSE_")}
    env["SC_INVERSE_DATA_DIR"] = os.environ["SC_INVERSE_DATA_DIR"]  # the test's own (conftest)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def sc_inverse_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "sc_inverse.cli", *args]


def run_cli(*args: str, timeout: float = 300, cwd: Path | None = None, **env: str):
    t0 = time.perf_counter()
    proc = subprocess.run(sc_inverse_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          env=_env(**env), cwd=cwd)
    return proc, time.perf_counter() - t0


def assert_one_line_error(proc, *words: str, code: int = 2) -> str:
    """Exit ``code``, no traceback, exactly one non-empty stderr line naming ``words``."""
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


class QeSpy:
    """QE commands that record each start in ``started``, then run the real program (the
    settings ``*_cmd`` point at these wrappers): proves whether any QE process was started."""

    def __init__(self, root: Path):
        self.started = root / "qe_starts"
        self.started.mkdir()
        bindir = root / "qe_bin"
        bindir.mkdir()
        self.env: dict[str, str] = {}
        for prog in QE_PROGRAMS:
            real = shutil.which(prog) or f"/nonexistent/{prog}"
            wrapper = bindir / prog
            wrapper.write_text(f'#!/bin/sh\ntouch "{self.started}/{prog}.$$"\nexec "{real}" "$@"\n')
            wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
            self.env[f"SC_INVERSE_{prog.split('.')[0].upper()}_CMD"] = str(wrapper)

    def any_started(self) -> bool:
        return any(self.started.iterdir())


@pytest.fixture
def qe_spy(tmp_path) -> QeSpy:
    return QeSpy(tmp_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# store / LaunchPad reachability
# ---------------------------------------------------------------------------------------------
def test_unreachable_mongodb_fails_fast_before_any_qe(tmp_path, qe_spy):
    port = _free_port()
    proc, seconds = run_cli(
        "epc", str(AL_EXAMPLE), "--preset", "test", "--workdir", str(tmp_path / "wd"),
        "--out", str(tmp_path / "r.json"), SC_INVERSE_STORE="mongo",
        SC_INVERSE_MONGO_HOST="127.0.0.1", SC_INVERSE_MONGO_PORT=str(port),
        SC_INVERSE_MONGO_USERNAME="alice", SC_INVERSE_MONGO_PASSWORD="s3cret-pw", **qe_spy.env)
    line = assert_one_line_error(proc, f"127.0.0.1:{port}", "SC_INVERSE_STORE=embedded")
    assert "s3cret-pw" not in proc.stderr + proc.stdout
    assert seconds < 10, f"took {seconds:.1f} s"
    assert not qe_spy.any_started(), "a QE program was started"
    assert not (tmp_path / "wd").exists() and not (tmp_path / "r.json").exists()
    assert "not reachable" in line


def test_unreachable_mongodb_stops_run_and_query_at_once():
    port = str(_free_port())
    for args in (["query"], ["run", "--n", "2", "--top", "0"]):
        proc, seconds = run_cli(*args, SC_INVERSE_STORE="mongo", SC_INVERSE_MONGO_HOST="127.0.0.1",
                                SC_INVERSE_MONGO_PORT=port)
        assert_one_line_error(proc, f"127.0.0.1:{port}")
        assert seconds < 30, (args, seconds)


def test_malformed_launchpad_file_names_file_line_and_field(tmp_path):
    lp = tmp_path / "my_launchpad.yaml"
    lp.write_text("host: localhost\nport: twenty\nname: sc\n")
    proc, _ = run_cli("submit", "epc", str(AL_EXAMPLE), "--launchpad", str(lp))
    assert_one_line_error(proc, str(lp), "line 2", "port")
    lp.write_text("host: localhost\nport: 27017\n  name: [x\n")
    proc, _ = run_cli("submit", "epc", str(AL_EXAMPLE), "--launchpad", str(lp))
    assert_one_line_error(proc, str(lp), "line 3", "not valid YAML")


# ---------------------------------------------------------------------------------------------
# output paths, QE executables, structures, settings
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad_out, words", [
    ("DIR", ("is a directory",)),
    ("LONG", ("longer than this filesystem allows",)),
    ("UNDER_FILE", ("cannot write in",)),
])
def test_bad_out_path_is_refused_before_computing(tmp_path, qe_spy, bad_out, words):
    out = {"DIR": tmp_path, "LONG": tmp_path / ("x" * 300 + ".json"),
           "UNDER_FILE": AL_EXAMPLE / "r.json"}[bad_out]
    proc, _ = run_cli("epc", str(AL_EXAMPLE), "--preset", "test", "--no-store",
                      "--workdir", str(tmp_path / "wd"), "--out", str(out), **qe_spy.env)
    assert_one_line_error(proc, "--out", *words)
    assert not qe_spy.any_started()


def test_missing_qe_binary_names_executable_and_setting(tmp_path, qe_spy):
    env = {**qe_spy.env, "SC_INVERSE_PH_CMD": str(tmp_path / "no" / "ph.x")}
    proc, _ = run_cli("epc", str(AL_EXAMPLE), "--preset", "test", "--workdir", str(tmp_path / "wd"),
                      **env)
    assert_one_line_error(proc, "ph.x", "ph_cmd", "SC_INVERSE_PH_CMD")
    assert not qe_spy.any_started() and not (tmp_path / "wd").exists()


def test_unknown_element_in_epc_is_one_line(tmp_path, qe_spy):
    poscar = tmp_path / "POSCAR"
    poscar.write_text("Xx\n1.0\n4 0 0\n0 4 0\n0 0 4\nXx\n1\ndirect\n0 0 0\n")
    pwi = tmp_path / "xx.pwi"
    pwi.write_text(AL_EXAMPLE.read_text().replace("  Al  26.98", "  Xx  26.98")
                   .replace("  Al  0.00", "  Xx  0.00"))
    for f in (poscar, pwi):
        proc, _ = run_cli("epc", str(f), "--preset", "test", "--no-store", **qe_spy.env)
        assert_one_line_error(proc, str(f), "not a chemical element")
    assert not qe_spy.any_started()


def test_settings_errors_name_the_source(tmp_path):
    bad_yaml = tmp_path / "settings.yaml"
    bad_yaml.write_text("store: embedded\npw_cmd: [pw.x\n")
    proc, _ = run_cli("query", SC_INVERSE_CONFIG=str(bad_yaml))
    assert_one_line_error(proc, str(bad_yaml), "line 3", "not valid YAML")
    bad_yaml.write_text("store: embedded\nmongo_port: twenty\n")
    proc, _ = run_cli("query", SC_INVERSE_CONFIG=str(bad_yaml))
    assert_one_line_error(proc, "mongo_port", str(bad_yaml), "line 2")
    bad_yaml.write_text("pw_command: /opt/pw.x\n")
    proc, _ = run_cli("query", SC_INVERSE_CONFIG=str(bad_yaml))
    assert_one_line_error(proc, "pw_command", "line 1", "pw_cmd")
    proc, _ = run_cli("query", SC_INVERSE_STORE="mongodb")
    assert_one_line_error(proc, "SC_INVERSE_STORE", "'embedded' or 'mongo'")
    proc, _ = run_cli("epc", str(AL_EXAMPLE), "--no-store", SC_INVERSE_QE_PRESET="fastest")
    assert_one_line_error(proc, "qe_preset", "SC_INVERSE_QE_PRESET", "unknown QE preset")


# ---------------------------------------------------------------------------------------------
# the embedded store: read-only, truncated
# ---------------------------------------------------------------------------------------------
def _seed_results(data_dir: Path) -> None:
    from sc_inverse.settings import get_settings
    from sc_inverse.stores import SUPERCONDUCTORS, THERMO, get_store

    settings = get_settings().model_copy(update={"data_dir": data_dir})
    for name, doc in ((SUPERCONDUCTORS, {"material_id": "m1", "valid": True, "tc_K": 5.0,
                                         "formula": "Al"}),
                      (THERMO, {"material_id": "m1", "valid": True, "is_reference": False,
                                "e_form_eV_per_atom": 0.0})):
        store = get_store(name, settings)
        store.connect()
        store.update([doc], key="material_id")
        store.close()


def _read_only_query(data: Path):
    """``query`` on ``data`` mounted read-only (root: a private bind mount, so the kernel refuses
    every write) or made read-only with chmod (other users)."""
    if os.geteuid() != 0:
        for p in [data, *data.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
        try:
            return run_cli("query", SC_INVERSE_DATA_DIR=str(data))[0]
        finally:
            for p in [data, *data.rglob("*")]:
                p.chmod(p.stat().st_mode | 0o200)
    if not shutil.which("unshare"):
        pytest.skip("needs unshare to mount the store read-only")
    script = f'mount --bind -o ro "{data}" "{data}" && exec "$@"'
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *sc_inverse_cmd("query")],
                          capture_output=True, text=True, timeout=120,
                          env=_env(SC_INVERSE_DATA_DIR=str(data)))
    if "mount" in proc.stderr and proc.returncode != 0 and "material" not in proc.stderr:
        pytest.skip(f"cannot bind-mount read-only here: {proc.stderr.strip()[:200]}")
    return proc


def test_query_works_on_a_read_only_store(tmp_path):
    data = tmp_path / "ro_data"
    _seed_results(data)
    before = {p: p.stat().st_mtime_ns for p in data.rglob("*")}
    proc = _read_only_query(data)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "m1" in proc.stdout and "Al" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in data.rglob("*")} == before  # nothing written


def test_truncated_collection_file_is_one_line(tmp_path):
    data = tmp_path / "data"
    _seed_results(data)
    (coll,) = data.rglob("superconductors.collection")
    coll.write_bytes(coll.read_bytes()[:5000])
    proc, _ = run_cli("query", SC_INVERSE_DATA_DIR=str(data))
    assert_one_line_error(proc, str(coll), "truncated", "sc-inverse build")


# ---------------------------------------------------------------------------------------------
# per-record isolation, atoms_too_close
# ---------------------------------------------------------------------------------------------
GOOD = Structure(Lattice.hexagonal(3.08, 3.52), ["Mg", "B", "B"],
                 [[0, 0, 0], [1 / 3, 2 / 3, 0.5], [2 / 3, 1 / 3, 0.5]])
DEGENERATE = {
    "overlap": Structure(Lattice.cubic(4.0), ["Nb", "Nb"], [[0, 0, 0], [0, 0, 0]]),
    "tiny_cell": Structure(Lattice.cubic(0.3), ["Nb"], [[0, 0, 0]]),  # OOM-killed the screen
    "flat_cell": Structure(Lattice([[4, 0, 0], [0, 4, 0], [4, 4, 1e-4]]), ["Nb"], [[0, 0, 0]]),
    "isolated_atom": Structure(Lattice.cubic(40.0), ["Nb"], [[0, 0, 0]]),
    "no_features": Structure(Lattice.cubic(4.0), ["Og"], [[0, 0, 0]]),
}


def _degenerate_batch(path: Path) -> Path:
    recs = [{"id": "good", "structure": GOOD.as_dict()}]
    recs += [{"id": k, "structure": s.as_dict()} for k, s in DEGENERATE.items()]
    empty = {**GOOD.as_dict(), "sites": []}
    recs += [{"id": "empty", "structure": empty},
             {"id": "unknown_element", "poscar": "X\n1\n4 0 0\n0 4 0\n0 0 4\nXx\n1\ndirect\n0 0 0\n"}]
    path.write_text(json.dumps(recs))
    return path


@pytest.mark.parametrize("command", ["screen", "predict"])
def test_one_good_record_is_scored_among_degenerate_ones(tmp_path, command):
    batch = _degenerate_batch(tmp_path / "batch.json")
    out = tmp_path / "out.json"
    args = [command, str(batch), "--out", str(out)]
    if command == "screen":
        criteria = tmp_path / "criteria.json"
        criteria.write_text(json.dumps([{"key": "tc_K", "comparison": ">", "threshold": -1000}]))
        args += ["--criteria", str(criteria), "--no-relax", "--keep-known"]
    proc, _ = run_cli(*args, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    recs = {r["id"]: r for r in json.loads(out.read_text())}
    assert recs["good"]["predictions"]["tc_K"] is not None and not recs["good"]["errors"]
    if command == "screen":
        assert recs["good"]["passed"] is True and recs["good"]["rank"] == 1
    for rid in ("overlap", "tiny_cell", "flat_cell", "empty", "unknown_element"):
        assert recs[rid]["errors"].get("structure"), rid
        assert recs[rid]["predictions"].get("tc_K") is None and not recs[rid].get("passed")
        assert f"record {rid} skipped" in proc.stderr, rid
    for rid in ("overlap", "tiny_cell", "flat_cell"):
        assert "atoms_too_close" in recs[rid]["flags"], rid
    for rid in ("isolated_atom", "no_features"):  # the predictors reject these themselves
        assert recs[rid]["predictions"].get("tc_K") is None and recs[rid]["errors"], rid


def test_run_include_path_keeps_the_good_record(tmp_path):
    """``run --include`` loads leniently and the screen job skips the bad records."""
    from sc_inverse.records import load_records
    from sc_inverse.screening.jobs import ScreenCandidatesMaker
    from sc_inverse.screening.predictor_base import Predictor

    class LengthPredictor(Predictor):
        key, source = "tc_K", "test"

        def predict_with_errors(self, structures, batch_size=64, device=None, progress=False):
            import numpy as np

            return np.array([float(len(s)) for s in structures]), [None] * len(structures)

    batch = _degenerate_batch(tmp_path / "include.json")
    extra = [r.model_dump(mode="json") for r in load_records(batch, keep_unreadable=True)]
    maker = ScreenCandidatesMaker(
        relax=False, criteria=[{"predictor": "len", "key": "tc_K", "comparison": ">", "threshold": 0}],
        exclude_known=False, screen_kwargs={"predictors": {"len": LengthPredictor()}})
    out = ScreenCandidatesMaker.make.original(maker, extra)  # the job's body, on dumped records
    assert out.passed_ids[0] == "good"
    assert {r.id for r in out.records if r.errors.get("structure")} >= {
        "overlap", "tiny_cell", "flat_cell", "empty", "unknown_element"}


# ---------------------------------------------------------------------------------------------
# size guard
# ---------------------------------------------------------------------------------------------
def test_size_guard_refuses_a_300_atom_cell_before_any_work(tmp_path, qe_spy):
    from sc_inverse.pipeline.epc import MAX_EPC_ATOMS

    big = GOOD.copy()
    big.make_supercell([10, 10, 1])
    cif = tmp_path / "MgB2_300.cif"
    big.to(filename=str(cif))
    proc, _ = run_cli("epc", str(cif), "--preset", "test", "--no-store", **qe_spy.env)
    assert_one_line_error(proc, "300 atoms", str(MAX_EPC_ATOMS), "--force")
    assert not qe_spy.any_started()


def test_structure_checks_are_linear_in_the_atoms():
    """clean_structure used Structure.distance_matrix inside a double loop (O(N^4): ~8 min at
    300 atoms); now one neighbour list: far below a second even for 1 944 atoms."""
    from sc_inverse.qe.sets import clean_structure

    big = GOOD.copy()
    big.make_supercell([18, 18, 2])
    t0 = time.perf_counter()
    clean_structure(big)
    assert time.perf_counter() - t0 < 5


# ---------------------------------------------------------------------------------------------
# no orphan QE processes
# ---------------------------------------------------------------------------------------------
def _qe_processes_in(folder: Path) -> list[int]:
    """PIDs of QE programs whose working directory lies in ``folder`` (other users' runs on
    the machine are left out)."""
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            comm = (p / "comm").read_text().strip()
            cwd = os.readlink(p / "cwd")
        except OSError:
            continue
        if comm in QE_PROGRAMS and cwd.startswith(str(folder)):
            pids.append(int(p.name))
    return pids


@requires_qe
@pytest.mark.qe
@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs Linux /proc")
def interactive_signals() -> None:
    """In the child: SIGINT as in a terminal. A test run started in the background by a
    non-interactive shell inherits SIGINT ignored, and Python then never raises
    KeyboardInterrupt, so Ctrl-C could not be simulated."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130),
                                       (signal.SIGKILL, -signal.SIGKILL)])
def test_signal_during_epc_leaves_no_qe_process(tmp_path, sig, code):
    wd = tmp_path / "wd"
    proc = subprocess.Popen(
        sc_inverse_cmd("epc", str(AL_EXAMPLE), "--preset", "test", "--no-store", "--workdir",
                       str(wd), "--out", str(tmp_path / "r.json")),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
        preexec_fn=interactive_signals)
    try:
        deadline = time.monotonic() + 300
        while not _qe_processes_in(wd):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.2)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    deadline = time.monotonic() + 15  # PDEATHSIG (SIGKILL case) is delivered asynchronously
    while _qe_processes_in(wd) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _qe_processes_in(wd) == []


# ---------------------------------------------------------------------------------------------
# quiet output
# ---------------------------------------------------------------------------------------------
def test_cli_logging_prints_each_job_line_once(tmp_path):
    """The CLI's logging with a jobflow flow: one "job: NAME" line per job, never twice (the
    root handler and jobflow's own handler both printed every line before)."""
    code = f"""
import sys
from jobflow import Flow, job
from sc_inverse.cli.output import configure_output
from sc_inverse.execution import run_flow_locally

@job
def step(i):
    return i

configure_output(0)
flow = Flow([step(1), step(2)])
for j, name in zip(flow.jobs, ("first step", "second step")):
    j.name = name
run_flow_locally(flow, root_dir={str(tmp_path / 'jobs')!r}, log=False)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(),
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [line.split(" ", 1)[1] for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["job: first step", "job: second step"], proc.stderr
