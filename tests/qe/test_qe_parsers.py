"""Replay tests of every QE parser on recorded outputs (tests/test_data/qe)."""

from __future__ import annotations

import numpy as np
import pytest

from sc_inverse import units
from sc_inverse.errors import ParseError
from sc_inverse.qe import parsers as P
from sc_inverse.qe.run import run_problems


def test_pw_scf(qe_data):
    out = P.parse_pw_output(qe_data / "pw" / "al_scf.out")
    assert out.version == "6.7MaX" and out.job_done and out.scf_converged
    assert out.energy_eV == pytest.approx(-4.18634 * units.RY_TO_EV, abs=1e-3)
    assert out.fermi_energy_eV == pytest.approx(8.18, abs=0.05)
    s = out.final_structure
    assert s.composition.reduced_formula == "Al" and len(s) == 1
    assert s.lattice.a == pytest.approx(7.5 * units.BOHR_TO_A / np.sqrt(2), rel=1e-5)
    assert out.forces_eV_per_A == [[0.0, 0.0, 0.0]]
    assert out.stress_kbar is not None and len(out.stress_kbar) == 3
    assert out.wall_time_s is not None and out.wall_time_s >= 0


def test_pw_la2f_run_has_denser_kmesh(qe_data):
    dense = (qe_data / "pw" / "al_scf_la2f.out").read_text()
    coarse = (qe_data / "pw" / "al_scf.out").read_text()
    nk = lambda t: int(t.split("number of k points=")[1].split()[0])  # noqa: E731
    assert nk(dense) > nk(coarse)
    assert P.parse_pw_output(qe_data / "pw" / "al_scf_la2f.out").scf_converged


def test_pw_vcrelax_final_structure(qe_data):
    out = P.parse_pw_output(qe_data / "pw" / "al_vcrelax.out")
    assert out.calculation == "vc-relax" and out.relax_converged
    assert out.final_structure.volume < out.initial_structure.volume * 0.995
    assert abs(out.pressure_kbar) < 2.0
    assert len(out.energies_Ry) == out.n_ionic_steps >= 2


def test_pw_not_converged_is_a_problem(qe_data):
    out = P.parse_pw_output(qe_data / "pw" / "scf_not_converged.out", require_done=False)
    assert out.scf_failed and not out.scf_converged and out.job_done
    assert any("NOT achieved" in p for p in run_problems((qe_data / "pw" / "scf_not_converged.out").read_text()))


def test_pw_error_block(qe_data):
    out = P.parse_pw_output(qe_data / "pw" / "input_error.out", require_done=False)
    assert out.errors == ["iosys: diagonalization foo not implemented"]
    with pytest.raises(ParseError, match="iosys"):
        P.parse_pw_output(qe_data / "pw" / "input_error.out")


def test_truncated_and_empty_outputs(qe_data, tmp_path):
    text = (qe_data / "pw" / "al_scf.out").read_text()
    trunc = tmp_path / "trunc.out"
    trunc.write_text(text[: len(text) // 2])
    with pytest.raises(ParseError, match="trunc.out.*did not finish"):
        P.parse_pw_output(trunc)
    empty = tmp_path / "empty.out"
    empty.write_text("")
    with pytest.raises(ParseError, match="empty"):
        P.parse_pw_output(empty)
    with pytest.raises(ParseError, match="not a pw.x output"):
        P.parse_pw_output(qe_data / "al_elph" / "ph.out")
    with pytest.raises(ParseError, match="not found"):
        P.parse_pw_output(tmp_path / "missing.out")


def test_ph_output(qe_data):
    ph = P.parse_ph_output(qe_data / "al_elph" / "ph.out")
    assert ph.job_done and ph.qpoints_grid == [4, 4, 4]
    assert len(ph.irreducible_q) == 8 == len(ph.computed_q) == len(ph.frequencies_cm1)
    assert ph.n_star == [1, 8, 4, 6, 24, 12, 3, 6] and sum(ph.n_star) == 64
    assert max(max(f) for f in ph.frequencies_cm1) == pytest.approx(320, abs=30)


def test_ph_killed_and_out_of_time(qe_data):
    with pytest.raises(ParseError, match="ph.x did not finish"):
        P.parse_ph_output(qe_data / "ph" / "ph_killed.out")
    killed = P.parse_ph_output(qe_data / "ph" / "ph_killed.out", require_done=False)
    assert not killed.job_done and not killed.errors
    timed = P.parse_ph_output(qe_data / "ph" / "ph_max_seconds.out")
    assert timed.max_time_exceeded and timed.job_done


def test_elph_lambda_file(qe_data, tmp_path):
    e = P.parse_elph_lambda_file(qe_data / "al_elph" / "elph_dir" / "elph.inp_lambda.2")
    assert len(e.sigmas_Ry) == 10 and e.sigmas_Ry[1] == pytest.approx(0.010)
    assert np.array(e.lambdas).shape == (10, 3)
    assert e.frequencies_cm1[2] == pytest.approx(211.39, abs=0.1)
    assert e.dos_ef[1] == pytest.approx(1.88, abs=0.01)
    text = (qe_data / "al_elph" / "elph_dir" / "elph.inp_lambda.2").read_text()
    bad = tmp_path / "elph.inp_lambda.2"
    bad.write_text(text[: len(text) // 2])
    with pytest.raises(ParseError, match="truncated"):
        P.parse_elph_lambda_file(bad)


def test_dyn_files(qe_data):
    grid, qs = P.parse_dyn0(qe_data / "al_elph" / "dyn0")
    assert grid == [4, 4, 4] and len(qs) == 8
    stars = [P.parse_dyn_file(qe_data / "al_elph" / f"dyn{i}").n_star for i in range(1, 9)]
    assert sum(stars) == 64
    d2 = P.parse_dyn_file(qe_data / "al_elph" / "dyn2")
    assert len(d2.frequencies_cm1) == 3


def test_matdyn_outputs(qe_data):
    rows = P.parse_matdyn_lambda(qe_data / "al_elph" / "lambda")
    assert len(rows) == 10 and rows[1].sigma_Ry == pytest.approx(0.01)
    assert 0.3 < rows[1].lambda_ < 0.5 and rows[1].omega_log_K > 300
    a2f = P.parse_a2f_dos(qe_data / "al_elph" / "a2F.dos2")
    assert len(a2f.frequencies_Ry) == len(a2f.a2f) > 10 and a2f.lambda_ > 0.3
    w, g = P.parse_phonon_dos(qe_data / "al_elph" / "phonon.dos")
    assert len(w) == len(g) > 10 and max(g) > 0


def test_lambda_dat(qe_data):
    rows = P.parse_lambda_dat(qe_data / "al_elph" / "lambda.dat")
    assert len(rows) == 10
    assert rows[1]["lambda"] == pytest.approx(0.435, abs=0.001)
    assert rows[1]["omega_log_K"] == pytest.approx(352.9, abs=0.5)


def test_wall_time_formats():
    assert P.parse_wall_time("PWSCF  :  1m23.45s CPU   1h 2m WALL", "PWSCF") == 3720.0
    assert P.parse_wall_time("PHONON : 32.49s CPU  35.98s WALL", "PHONON") == pytest.approx(35.98)
