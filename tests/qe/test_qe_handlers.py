"""Custodian handlers: replay on recorded outputs, the custodian loop, and a real ph.x recover."""

from __future__ import annotations

import shutil
import stat
import subprocess
import time

import pytest
from pymatgen.io.pwscf import PWInput
from qe_testutils import QE_PSEUDO_DIR, requires_qe

from sc_inverse.errors import CalculationError
from sc_inverse.qe.eliashberg import eliashberg_table
from sc_inverse.qe.handlers import (
    PhRecoverHandler,
    PwDiagonalizationHandler,
    PwScfConvergenceHandler,
    QeWalltimeHandler,
    completed_qpoints,
)
from sc_inverse.qe.jobs import run_ph, run_pw
from sc_inverse.qe.pseudos import find_pseudopotentials
from sc_inverse.qe.run import qe_command, run_qe
from sc_inverse.qe.schemas import QPointPhonons
from sc_inverse.qe.sets import TEST, PwInputSet, parse_fortran_value, read_namelist
from sc_inverse.settings import get_settings


def _stage(qe_data, tmp_path, sub, name, inp="pw.in", out="pw.out"):
    shutil.copy(qe_data / sub / f"{name}.in", tmp_path / inp)
    shutil.copy(qe_data / sub / f"{name}.out", tmp_path / out)
    return tmp_path


def _value(path, namelist, key):
    raw = read_namelist(path.read_text(), namelist).get(key)
    return None if raw is None else parse_fortran_value(raw)


def test_scf_convergence_handler(qe_data, tmp_path):
    d = _stage(qe_data, tmp_path, "pw", "scf_not_converged")
    h = PwScfConvergenceHandler()
    assert h.check(str(d))
    corr = h.correct(str(d))
    assert corr["errors"] == ["scf not converged"] and corr["actions"]
    assert _value(d / "pw.in", "electrons", "mixing_beta") == pytest.approx(0.35)
    assert _value(d / "pw.in", "electrons", "electron_maxstep") == 4
    # the rest of the input is untouched and still readable by pymatgen
    assert PWInput.from_file(d / "pw.in").structure.composition.reduced_formula == "Al"
    shutil.copy(qe_data / "pw" / "al_scf.out", d / "pw.out")
    assert not h.check(str(d))


def test_scf_convergence_handler_gives_up_at_limits(qe_data, tmp_path):
    d = _stage(qe_data, tmp_path, "pw", "scf_not_converged")
    h = PwScfConvergenceHandler(min_beta=0.7, max_steps=2)
    assert h.correct(str(d))["actions"] is None


def test_diagonalization_handler(qe_data, tmp_path):
    d = _stage(qe_data, tmp_path, "pw", "diag_failure")
    h = PwDiagonalizationHandler()
    assert h.check(str(d))
    corr = h.correct(str(d))
    assert "cdiaghg: problems computing cholesky" in corr["errors"]
    assert _value(d / "pw.in", "electrons", "diagonalization") == "cg"
    h.correct(str(d))
    assert _value(d / "pw.in", "electrons", "diagonalization") == "ppcg"
    assert h.correct(str(d))["actions"] is None
    for other in ("al_scf.out", "input_error.out", "scf_not_converged.out"):
        shutil.copy(qe_data / "pw" / other, d / "pw.out")
        assert not h.check(str(d)), other


@pytest.mark.parametrize("name,why", [("ph_killed", "killed"), ("ph_max_seconds", "max_seconds")])
def test_ph_restart_handler(qe_data, tmp_path, name, why):
    d = _stage(qe_data, tmp_path, "ph", name, "ph.in", "ph.out")
    h = PhRecoverHandler()
    assert h.check(str(d))
    corr = h.correct(str(d))
    assert why in corr["errors"][0] and "restarting at q-point 1" in corr["errors"][0]
    assert _value(d / "ph.in", "inputph", "start_q") == 1
    assert _value(d / "ph.in", "inputph", "max_seconds") is None
    text = d.joinpath("ph.in").read_text()
    assert text.startswith("electron-phonon") and text.endswith("/\n")  # title and final newline
    shutil.copy(qe_data / "al_elph" / "ph.out", d / "ph.out")
    assert not h.check(str(d))


def test_ph_recover_strategy_then_fallback(qe_data, tmp_path):
    d = _stage(qe_data, tmp_path, "ph", "ph_max_seconds", "ph.in", "ph.out")
    h = PhRecoverHandler(strategy="recover")
    assert "max_seconds" in h.correct(str(d))["errors"][0]
    assert _value(d / "ph.in", "inputph", "recover") is True
    shutil.copy(qe_data / "pw" / "input_error.out", d / "ph.out")  # the recover run failed
    assert h.check(str(d))
    assert "restarting" in h.correct(str(d))["errors"][0]
    assert _value(d / "ph.in", "inputph", "recover") is None


def test_walltime_handler_writes_exit_file(tmp_path):
    h = QeWalltimeHandler(wall_time_s=100, prefix="qe", buffer_s=10, start_time=time.time() - 95)
    assert h.check(str(tmp_path))
    corr = h.correct(str(tmp_path))
    assert (tmp_path / "qe.EXIT").is_file() and corr["actions"] is None
    assert not h.check(str(tmp_path))
    assert not QeWalltimeHandler(1000, "qe").check(str(tmp_path))


def _replay_executable(tmp_path, qe_data, monkeypatch):
    """A stand-in pw.x that replays recorded outputs: not converged until mixing_beta < 0.7."""
    exe = tmp_path / "replay_pw.sh"
    exe.write_text(
        "#!/bin/sh\n"
        f'if grep -q "mixing_beta = 0.35" "$2"; then cat {qe_data}/pw/al_scf.out; '
        f"else cat {qe_data}/pw/scf_not_converged.out; fi\n"
    )
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("SC_INVERSE_PW_CMD", str(exe))
    get_settings.cache_clear()


def test_custodian_loop_records_correction(qe_data, tmp_path, monkeypatch):
    _replay_executable(tmp_path, qe_data, monkeypatch)
    iset = PwInputSet(inputs={"pw.in": (qe_data / "pw" / "scf_not_converged.in").read_text()})
    res = run_qe("pw", iset, tmp_path / "run", [PwScfConvergenceHandler()])
    assert [c.handler for c in res.corrections] == ["PwScfConvergenceHandler"]
    assert res.corrections[0].errors == ["scf not converged"] and res.corrections[0].step == "pw"
    assert (tmp_path / "run" / "pw.out.attempt1").is_file()  # the failed attempt is kept


def test_custodian_loop_gives_up_with_clear_error(qe_data, tmp_path, monkeypatch):
    _replay_executable(tmp_path, qe_data, monkeypatch)
    iset = PwInputSet(inputs={"pw.in": (qe_data / "pw" / "scf_not_converged.in").read_text()})
    with pytest.raises(CalculationError, match="pw.x failed in .*scf convergence NOT achieved"):
        run_qe("pw", iset, tmp_path / "run", [PwScfConvergenceHandler(min_beta=0.7, max_steps=2)])


@requires_qe
@pytest.mark.qe
@pytest.mark.slow
def test_real_ph_out_of_time_recovers(al_structure, tmp_path, monkeypatch):
    """ph.x stopped by max_seconds is restarted at its first unfinished q-point and finishes."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    pseudos = find_pseudopotentials(al_structure, QE_PSEUDO_DIR, TEST.pseudo_pattern)
    run_pw(al_structure, TEST, "scf", pseudos, (16, 16, 16), tmp_path, "scf_la2f", la2f=True)
    run_pw(al_structure, TEST, "scf", pseudos, (8, 8, 8), tmp_path, "scf")
    res = run_ph(TEST, (4, 4, 4), tmp_path, max_seconds=3.0)
    assert {c.handler for c in res.corrections} == {"PhRecoverHandler"}
    assert "max_seconds" in res.corrections[0].errors[0]
    assert (tmp_path / "ph.out.attempt1").is_file()
    assert completed_qpoints(tmp_path, "dyn") == set(range(1, 9))
    # the recovered data give the same coupling as the uninterrupted recorded run
    qs = [QPointPhonons.from_directory(tmp_path, i) for i in range(1, 9)]
    res_tab = eliashberg_table([q.frequencies_cm1 for q in qs], [q.lambdas for q in qs],
                               [q.n_star for q in qs], [0.005 * i for i in range(1, 11)])
    assert res_tab.rows[1]["lambda_"] == pytest.approx(0.435, abs=3e-3)


def test_ph_restart_at_first_missing_q(qe_data, tmp_path):
    d = _stage(qe_data, tmp_path, "ph", "ph_max_seconds", "ph.in", "ph.out")
    (d / "elph_dir").mkdir()
    for i in (1, 2, 3):
        shutil.copy(qe_data / "al_elph" / f"dyn{i}", d / f"dyn{i}")
        shutil.copy(qe_data / "al_elph" / "elph_dir" / f"elph.inp_lambda.{i}", d / "elph_dir")
    shutil.copy(qe_data / "al_elph" / "dyn4", d / "dyn4")  # dyn without EPC file: not complete
    assert completed_qpoints(d, "dyn") == {1, 2, 3}
    corr = PhRecoverHandler().correct(str(d))
    assert "restarting at q-point 4" in corr["errors"][0]
    assert _value(d / "ph.in", "inputph", "start_q") == 4
    assert _value(d / "ph.in", "inputph", "recover") is None


@requires_qe
@pytest.mark.qe
@pytest.mark.slow
def test_real_walltime_stop_is_clean_and_resumable(al_structure, tmp_path, monkeypatch):
    """The monitor's prefix.EXIT stops a running ph.x cleanly; rerunning the prepared input
    finishes the q-points that were left."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    pseudos = find_pseudopotentials(al_structure, QE_PSEUDO_DIR, TEST.pseudo_pattern)
    run_pw(al_structure, TEST, "scf", pseudos, (16, 16, 16), tmp_path, "scf_la2f", la2f=True)
    run_pw(al_structure, TEST, "scf", pseudos, (8, 8, 8), tmp_path, "scf")
    with pytest.raises(CalculationError, match="stopped by a prefix.EXIT file"):
        run_ph(TEST, (4, 4, 4), tmp_path, walltime_s=5.0 + 300.0)  # buffer 300 s: stop at ~5 s
    log = (tmp_path / "custodian.json").read_text()
    assert "QeWalltimeHandler" in log and "PhRecoverHandler" in log
    assert not (tmp_path / "qe.EXIT").exists()  # QE removes it when it stops
    done = completed_qpoints(tmp_path, "dyn")
    assert len(done) < 8
    with open(tmp_path / "ph.rerun.out", "w") as fout:
        subprocess.run([*qe_command("ph"), "-in", "ph.in"], cwd=tmp_path, check=True,
                       stdout=fout, stderr=subprocess.DEVNULL)
    assert completed_qpoints(tmp_path, "dyn") == set(range(1, 9))
