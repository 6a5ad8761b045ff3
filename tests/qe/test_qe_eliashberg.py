"""λ, ω_log and T_c: analytic limits, QE's recorded lambda.x numbers, and a live lambda.x run."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
from qe_testutils import requires_qe

from sc_inverse import units
from sc_inverse.qe import eliashberg as E
from sc_inverse.qe import parsers as P
from sc_inverse.qe.jobs import run_lambda_x
from sc_inverse.qe.schemas import QPointPhonons


def _recorded(qe_data):
    d = qe_data / "al_elph"
    qs = [P.parse_elph_lambda_file(d / "elph_dir" / f"elph.inp_lambda.{i}") for i in range(1, 9)]
    stars = [P.parse_dyn_file(d / f"dyn{i}").n_star for i in range(1, 9)]
    return qs, stars


def test_allen_dynes_matches_lambda_x_printout():
    # lambda.x printed T_c = 2.311 K for lambda 0.43490, omega_log 352.858 K, mu* 0.1
    assert E.allen_dynes_tc(0.43490, 352.858, 0.1) == pytest.approx(2.311, abs=0.002)
    assert E.allen_dynes_tc(0.10, 300.0, 0.1) == 0.0  # lambda below the mu* threshold


def test_mcmillan_and_f1f2():
    lam, wlog, w2, theta = 1.0, 300.0, 350.0, 400.0
    ex = math.exp(-1.04 * 2.0 / (1.0 - 0.1 * 1.62))
    assert E.mcmillan_tc(lam, theta, 0.1) == pytest.approx(theta / 1.45 * ex)
    assert E.allen_dynes_f1f2_tc(lam, wlog, w2, 0.1) > E.allen_dynes_tc(lam, wlog, 0.1)


def test_einstein_spectrum_recovers_lambda_and_omega():
    w_e, lam = 200.0, 0.8
    grid = E.frequency_grid(w_e, 2.0)
    a2f = E.a2f_from_modes(np.array([[w_e]]), np.array([[lam]]), np.array([1.0]), grid, 2.0)
    assert E.lambda_from_a2f(grid, a2f) == pytest.approx(lam, rel=1e-3)
    assert E.omega_log_K_from_a2f(grid, a2f) == pytest.approx(w_e * units.CM1_TO_K, rel=1e-3)
    assert E.omega_2_K_from_a2f(grid, a2f) == pytest.approx(w_e * units.CM1_TO_K, rel=1e-3)


def test_debye_temperature_of_debye_spectrum():
    """Modes of a Debye spectrum (weight ∝ ω² up to ω_D) give Θ_D = ω_D; imaginary modes count
    with ω² < 0, and a spectrum dominated by them has no Θ_D (None with the reason)."""
    w = np.linspace(0, 300.0, 3001)
    theta, why = E.debye_temperature_K(w[:, None], w**2)
    assert theta == pytest.approx(300.0 * units.CM1_TO_K, rel=2e-3) and why is None
    theta, why = E.debye_temperature_K([[-200.0, 100.0, 100.0]], [1.0])
    assert theta is None and "not positive" in why
    assert E.mcmillan_tc(1.0, None, 0.1) is None and E.mcmillan_tc(0.05, None, 0.1) == 0.0


def test_uncomputable_values_are_none_with_a_reason():
    """No coupling (λ = 0): ω_log, ω_2 undefined -> None, never NaN; T_c = 0 (below μ*)."""
    grid = E.frequency_grid(200.0, 2.0)
    row = E.smearing_row(0.01, grid, np.zeros_like(grid), 0.1, None, "no DOS")
    assert row["lambda_"] == 0.0 and row["tc_K"] == 0.0 and row["tc_mcmillan_K"] == 0.0
    assert row["omega_log_K"] is None and row["omega_2_K"] is None
    assert set(row["undefined_reasons"]) == {"omega_log_K", "omega_2_K"}
    assert not any(isinstance(v, float) and math.isnan(v) for v in row.values())


def test_table_agrees_with_recorded_lambda_x(qe_data):
    qs, stars = _recorded(qe_data)
    res = E.eliashberg_table([q.frequencies_cm1 for q in qs], [q.lambdas for q in qs], stars,
                             qs[0].sigmas_Ry, qs[0].dos_ef)
    ref = P.parse_lambda_dat(qe_data / "al_elph" / "lambda.dat")
    for row, r in zip(res.rows, ref, strict=True):
        assert row["sigma_Ry"] == pytest.approx(r["sigma_Ry"])
        assert row["lambda_"] == pytest.approx(r["lambda"], abs=2e-3)
        assert row["omega_log_K"] == pytest.approx(r["omega_log_K"], rel=5e-3)
    # QE example acceptance values at sigma = 0.010 Ry, and the documented choice of smearing
    assert res.rows[1]["lambda_"] == pytest.approx(0.435, abs=0.03)
    assert res.rows[1]["omega_log_K"] == pytest.approx(353, abs=20)
    assert res.rows[res.selected]["sigma_Ry"] == pytest.approx(0.010)
    assert res.a2f.shape == (10, len(res.grid_cm1))


def test_select_smearing_rule():
    sig = [0.005, 0.01, 0.015, 0.02]
    assert E.select_smearing([0.20, 0.40, 0.41, 0.39], sig)[0] == 1
    # lambda agrees at the smallest sigma, but N(E_F) still moves by 40 %: not a plateau
    idx, rule = E.select_smearing([0.39, 0.40, 0.41, 0.39], sig, dos_ef=[1.3, 1.9, 2.1, 2.2])
    assert idx == 1 and "N(E_F)" in rule
    idx, rule = E.select_smearing([0.1, 0.3, 0.5, 0.6], sig)
    assert idx == 2 and "no neighbouring" in rule
    with pytest.raises(ValueError):
        E.select_smearing([], [])


def test_select_smearing_fallback_skips_unsettled_fermi_surface():
    """bcc Nb, k 10³, q 2³ (benchmarks/validate_epc.py): λ falls steadily, no pair agrees within
    5 %; the pair (0.005, 0.010) changes least in λ but N(E_F) jumps by 40 % there."""
    sig = [0.005 * i for i in range(1, 11)]
    lam = [1.858, 1.795, 1.555, 1.379, 1.229, 1.104, 1.000, 0.916, 0.848, 0.793]
    dos = [9.34, 13.17, 13.11, 12.33, 11.46, 10.65, 9.95, 9.36, 8.88, 8.48]
    idx, rule = E.select_smearing(lam, sig, dos_ef=dos)
    assert sig[idx] == pytest.approx(0.045) and "N(E_F) agrees" in rule
    assert sig[E.select_smearing(lam, sig)[0]] == pytest.approx(0.005)  # without N(E_F): as before


def test_inconsistent_arrays_rejected():
    with pytest.raises(ValueError, match="inconsistent"):
        E.eliashberg_table([[100.0, 200.0]], [[[0.1, 0.2]]], [1.0, 2.0], [0.01])


@requires_qe
@pytest.mark.qe
def test_live_lambda_x_cross_check(al_elph_dir):
    qpoints = [QPointPhonons.from_directory(al_elph_dir, i) for i in range(1, 9)]
    for f in ("lambda.dat", "lambda.in"):
        (al_elph_dir / f).unlink()
    res = run_lambda_x(al_elph_dir, qpoints, 0.1)
    assert res.timing.step == "lambda" and res.output.name == "lambda.out"
    rows = P.parse_lambda_dat(al_elph_dir / "lambda.dat")
    res = E.eliashberg_table([q.frequencies_cm1 for q in qpoints], [q.lambdas for q in qpoints],
                             [q.n_star for q in qpoints], [r["sigma_Ry"] for r in rows])
    for mine, lx in zip(res.rows, rows, strict=True):
        assert mine["lambda_"] == pytest.approx(lx["lambda"], abs=2e-3)
        assert mine["omega_log_K"] == pytest.approx(lx["omega_log_K"], rel=5e-3)
    assert shutil.which("lambda.x")
