"""The one runner: commands from settings, stdin programs (lambda.x), exit status, timing."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sc_inverse.errors import CalculationError
from sc_inverse.qe.run import PROGRAMS, qe_command, run_qe
from sc_inverse.qe.sets import LambdaInputGenerator, PwInputSet
from sc_inverse.settings import get_settings


def _fake(tmp_path, monkeypatch, program: str, body: str):
    exe = tmp_path / f"fake_{program}.sh"
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv(f"SC_INVERSE_{program.upper()}_CMD", str(exe))
    monkeypatch.setenv("SC_INVERSE_MPI_PREFIX", "env SC_FAKE_MPI=2")  # a prefix that runs here
    get_settings.cache_clear()
    return exe


def _lambda_input():
    return LambdaInputGenerator(mu_star=0.12).get_input_set(
        [[0.0, 0.0, 0.0]], [1], ["elph_dir/elph.inp_lambda.1"], 300.0)


def test_every_executable_has_a_command_and_only_pw_ph_get_mpi(monkeypatch):
    monkeypatch.setenv("SC_INVERSE_MPI_PREFIX", "mpirun -np 2")
    get_settings.cache_clear()
    assert set(PROGRAMS) == {"pw", "ph", "q2r", "matdyn", "lambda"}
    assert qe_command("ph")[:3] == ["mpirun", "-np", "2"]
    assert qe_command("lambda") == ["lambda.x"] and qe_command("q2r") == ["q2r.x"]


def test_lambda_x_reads_its_input_from_stdin_and_is_timed(tmp_path, monkeypatch):
    # lambda.x prints no JOB DONE: a zero exit status is what counts
    _fake(tmp_path, monkeypatch, "lambda", 'cat > stdin_seen.txt\necho "lambda = 0.4"\n')
    res = run_qe("lambda", _lambda_input(), tmp_path / "run")
    run = tmp_path / "run"
    assert (run / "stdin_seen.txt").read_text() == (run / "lambda.in").read_text()
    assert (run / "lambda.in").read_text().splitlines()[-1] == "0.12"
    assert res.output == run / "lambda.out" and "lambda = 0.4" in res.output.read_text()
    assert res.timing.step == "lambda" and res.timing.wall_time_s >= 0 and res.corrections == []


def test_failing_lambda_x_raises_with_exit_status(tmp_path, monkeypatch):
    _fake(tmp_path, monkeypatch, "lambda", "echo broken >&2\nexit 3\n")
    with pytest.raises(CalculationError, match=r"lambda.x failed in .*exit status 3.*broken"):
        run_qe("lambda", _lambda_input(), tmp_path / "run")


def test_step_names_the_timing(tmp_path, monkeypatch, qe_data):
    _fake(tmp_path, monkeypatch, "pw", f"cat {qe_data}/pw/al_scf.out\n")
    iset = PwInputSet(inputs={"pw.in": (qe_data / "pw" / "al_scf.in").read_text()})
    res = run_qe("pw", iset, tmp_path / "run", step="scf_la2f")
    assert res.timing.step == "scf_la2f" and res.timing.command.startswith("env SC_FAKE_MPI=2 ")


def test_check_executables_names_the_missing_program_and_its_setting(tmp_path):
    from sc_inverse.errors import SettingsError
    from sc_inverse.qe.run import check_executables
    from sc_inverse.settings import ScInverseSettings

    ok = tmp_path / "pw.x"
    ok.write_text("#!/bin/sh\n")
    ok.chmod(0o755)
    settings = ScInverseSettings(pw_cmd=str(ok), ph_cmd=str(tmp_path / "missing" / "ph.x"))
    check_executables(["pw"], settings)
    with pytest.raises(SettingsError, match=r"ph.x: executable .*missing/ph.x.*setting ph_cmd.*SC_INVERSE_PH_CMD"):
        check_executables(["pw", "ph"], settings)
    mpi = settings.model_copy(update={"mpi_prefix": "no-such-mpirun -np 4", "ph_cmd": str(ok)})
    with pytest.raises(SettingsError, match="MPI launcher 'no-such-mpirun'.*mpi_prefix"):
        check_executables(["pw", "ph"], mpi)
    check_executables(["q2r"], mpi)  # serial programs do not need the launcher


def test_a_stopped_run_leaves_no_child_process(tmp_path):
    """stop_process_group reaches the whole group (what an mpirun prefix starts)."""
    import subprocess
    import time

    from sc_inverse.qe.run import QeJob, stop_process_group

    script = tmp_path / "fake.sh"
    script.write_text("#!/bin/sh\nsleep 300 &\nsleep 300\n")  # a child with a grandchild
    script.chmod(0o755)
    (tmp_path / "x.in").write_text("")
    job = QeJob([str(script)], "x.in", "x.out")
    proc = job.run(tmp_path)
    time.sleep(0.5)
    pgid = proc.pid
    stop_process_group(proc, grace_s=2)
    time.sleep(0.2)
    members = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout.split()
    alive = [pid for pid in members if _state(pid) not in ("Z", None)]  # zombies await init
    assert proc.returncode is not None and alive == []


def _state(pid: str) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
