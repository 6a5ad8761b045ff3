"""The one runner: commands from settings, stdin programs (lambda.x), exit status, timing."""

from __future__ import annotations

import stat

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
