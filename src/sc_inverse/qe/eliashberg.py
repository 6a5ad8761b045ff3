"""Eliashberg analysis: α²F(ω) → λ, ω_log, T_c (Allen–Dynes, McMillan), per electron smearing.

α²F is built from ph.x's per-q mode couplings λ_qν (``elph_dir/elph.inp_lambda.N``) and
star weights w_q (Σ w_q = 1), as lambda.x does:

    α²F(ω) = ½ Σ_q w_q Σ_ν λ_qν ω_qν δ(ω − ω_qν),   δ → Gaussian of width ``width_cm1``

and then, on a frequency grid,

    λ = 2 ∫ α²F(ω)/ω dω,   ω_log = exp[(2/λ) ∫ α²F(ω) ln ω / ω dω],   ω_2 = [(2/λ) ∫ α²F ω dω]^½.

T_c (μ* = 0.1 by default):

* Allen–Dynes, the paper's Eq. 6: T_c = ω_log/1.2 · exp[−1.04(1+λ) / (λ − μ*(1+0.62λ))];
* Allen–Dynes with the strong-coupling/shape factors f1·f2 (uses ω_2);
* McMillan (1968): T_c = Θ_D/1.45 · exp[...same exponent...], Θ_D the Debye temperature of the
  phonon DOS from its second moment, Θ_D = (ħ/k_B)·(5/3 <ω²>)^½ (exact for a Debye spectrum).
  <ω²> is the star-weighted mean of ω² over the ASR-corrected q-grid modes: Σ_ν ω²_qν is the
  trace of the dynamical matrix, whose Brillouin-zone mean is its on-site (R = 0) force
  constant, so the q grid gives the same second moment as any mesh Fourier-interpolated from it
  (fcc Al: 406.0 K from the q grid, 404.4 K from matdyn's 50-bin DOS). It does not read
  matdyn's DOS, which QE 6.7 writes as NaN when an acoustic frequency at Γ is exactly 0 (bcc Nb).

All T_c are 0 when the exponent's denominator is ≤ 0 (λ too small to overcome μ*). A quantity
that cannot be computed is None, never NaN, and :func:`eliashberg_table` says why in each row's
``undefined_reasons``.

**Reported smearing** (:func:`select_smearing`): QE users read λ where it no longer depends on the
electronic smearing: too small a σ samples the Fermi surface with too few k-points (noisy λ), too
large a σ washes it out. The rule: going up from the smallest σ, report the first σ whose λ agrees
with the next larger σ within ``rel_tol`` (5 %) *and* whose N(E_F) agrees with the next within
``dos_tol`` (20 %; a fast-changing N(E_F) means the Fermi surface is still under-sampled, so an
accidental λ agreement there is not a plateau); if no pair qualifies, report the σ with the smallest
relative λ change to its neighbour among the pairs whose N(E_F) agrees (all pairs when none does):
without that condition a λ(σ) that falls steadily (bcc Nb on a 10³ k grid) reported the smallest σ,
where N(E_F) still jumps by 40 %, and a T_c of 29 K instead of 12 K. The whole table is always kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sc_inverse.units import CM1_TO_K

MIN_FREQUENCY_CM1 = 1.0  # modes below this (acoustic at Γ, imaginary) carry no coupling


def _exponent(lambda_: float, mu_star: float) -> float | None:
    denom = lambda_ - mu_star * (1.0 + 0.62 * lambda_)
    if denom <= 0:
        return None
    return -1.04 * (1.0 + lambda_) / denom


def allen_dynes_tc(lambda_: float, omega_log_K: float | None, mu_star: float = 0.1) -> float | None:
    """Allen–Dynes T_c with the ω_log/1.2 prefactor (paper Eq. 6), K; 0 below the μ* threshold,
    None when ω_log is undefined above it."""
    ex = _exponent(lambda_, mu_star)
    if ex is None:
        return 0.0
    return None if omega_log_K is None else omega_log_K / 1.2 * math.exp(ex)


def allen_dynes_f1f2_tc(
    lambda_: float, omega_log_K: float | None, omega_2_K: float | None, mu_star: float = 0.1
) -> float | None:
    """Full Allen–Dynes (1975) T_c with the strong-coupling (f1) and shape (f2) factors, K."""
    base = allen_dynes_tc(lambda_, omega_log_K, mu_star)
    if base == 0.0:
        return 0.0
    if base is None or omega_2_K is None:
        return None
    lam1 = 2.46 * (1.0 + 3.8 * mu_star)
    lam2 = 1.82 * (1.0 + 6.3 * mu_star) * (omega_2_K / omega_log_K)
    f1 = (1.0 + (lambda_ / lam1) ** 1.5) ** (1.0 / 3.0)
    f2 = 1.0 + (omega_2_K / omega_log_K - 1.0) * lambda_**2 / (lambda_**2 + lam2**2)
    return f1 * f2 * base


def mcmillan_tc(lambda_: float, theta_D_K: float | None, mu_star: float = 0.1) -> float | None:
    """McMillan (1968) T_c = Θ_D/1.45 · exp[−1.04(1+λ)/(λ − μ*(1+0.62λ))], K; 0 below the μ*
    threshold, None without Θ_D."""
    ex = _exponent(lambda_, mu_star)
    if ex is None:
        return 0.0
    return None if theta_D_K is None else theta_D_K / 1.45 * math.exp(ex)


def debye_temperature_K(
    frequencies_cm1: Sequence[Sequence[float]], weights: Sequence[float]
) -> tuple[float | None, str | None]:
    """(Θ_D, None) from the second moment of the modes (nq × nmodes, imaginary ones negative)
    with q weights ``weights``; (None, why) when the mean ω² is not positive or not finite."""
    w = np.asarray(frequencies_cm1, float)
    wq = np.asarray(weights, float)
    if w.ndim != 2 or len(wq) != w.shape[0] or w.size == 0:
        return None, f"no modes to average (frequencies {w.shape}, {len(wq)} weights)"
    mean_w2 = float((np.sign(w) * w**2 * wq[:, None]).sum() / wq.sum() / w.shape[1])
    if not math.isfinite(mean_w2):
        return None, "the modes' mean ω² is not finite"
    if mean_w2 <= 0:
        return None, f"the modes' mean ω² ({mean_w2:.3g} cm⁻²) is not positive (imaginary modes dominate)"
    return float(math.sqrt(5.0 / 3.0 * mean_w2) * CM1_TO_K), None


def frequency_grid(max_cm1: float, width_cm1: float, n: int = 4000) -> np.ndarray:
    """Uniform grid (cm⁻¹) from 0 to beyond the highest mode plus 6 widths."""
    return np.linspace(0.0, max_cm1 + 6.0 * width_cm1, n)


def a2f_from_modes(
    frequencies_cm1: np.ndarray,
    lambdas: np.ndarray,
    weights: np.ndarray,
    grid_cm1: np.ndarray,
    width_cm1: float,
) -> np.ndarray:
    """Gaussian-broadened α²F on ``grid_cm1`` from modes (nq × nmodes) and weights (nq)."""
    w = np.asarray(frequencies_cm1, float)
    lam = np.asarray(lambdas, float)
    wq = np.asarray(weights, float)[:, None]
    mask = w > MIN_FREQUENCY_CM1
    amp = 0.5 * (wq * lam * w)[mask]
    centers = w[mask]
    x = (grid_cm1[:, None] - centers[None, :]) / width_cm1
    gauss = np.exp(-0.5 * x**2) / (width_cm1 * math.sqrt(2 * math.pi))
    return gauss @ amp


def _positive(grid: np.ndarray, a2f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mask = grid > 0
    return np.asarray(grid)[mask], np.asarray(a2f)[mask]


def lambda_from_a2f(grid_cm1: Sequence[float], a2f: Sequence[float]) -> float:
    """λ = 2∫α²F(ω)/ω dω (frequency units cancel)."""
    w, a = _positive(np.asarray(grid_cm1, float), np.asarray(a2f, float))
    return float(2.0 * np.trapezoid(a / w, w))


def omega_log_K_from_a2f(grid_cm1: Sequence[float], a2f: Sequence[float]) -> float | None:
    """ω_log = exp[(2/λ)∫α²F ln ω/ω dω] in K (grid in cm⁻¹); None when λ ≤ 0 (no coupling)."""
    w, a = _positive(np.asarray(grid_cm1, float), np.asarray(a2f, float))
    lam = 2.0 * np.trapezoid(a / w, w)
    if lam <= 0:
        return None
    return float(math.exp(2.0 / lam * np.trapezoid(a * np.log(w) / w, w)) * CM1_TO_K)


def omega_2_K_from_a2f(grid_cm1: Sequence[float], a2f: Sequence[float]) -> float | None:
    """ω_2 = [(2/λ)∫α²F ω dω]^½ in K; None when λ ≤ 0 (no coupling)."""
    w, a = _positive(np.asarray(grid_cm1, float), np.asarray(a2f, float))
    lam = 2.0 * np.trapezoid(a / w, w)
    if lam <= 0:
        return None
    return float(math.sqrt(2.0 / lam * np.trapezoid(a * w, w)) * CM1_TO_K)


@dataclass
class EliashbergResult:
    """Per-smearing table plus the α²F arrays it came from."""

    rows: list[dict]
    grid_cm1: np.ndarray
    a2f: np.ndarray  # (nsigma, ngrid)
    selected: int
    rule: str


def eliashberg_table(
    frequencies_cm1: Sequence[Sequence[float]],
    lambdas: Sequence[Sequence[Sequence[float]]],
    weights: Sequence[float],
    sigmas_Ry: Sequence[float],
    dos_ef: Sequence[float] | None = None,
    mu_star: float = 0.1,
    theta_D_K: float | None = None,
    width_cm1: float = 4.0,
    rel_tol: float = 0.05,
    theta_D_reason: str = "no Debye temperature given",
) -> EliashbergResult:
    """λ, ω_log, ω_2 and the three T_c for every smearing.

    ``frequencies_cm1`` is (nq × nmodes), ``lambdas`` (nq × nsigma × nmodes) as in the ph.x
    files, ``weights`` the star weights (normalised here). The default Gaussian width,
    4 cm⁻¹ (0.12 THz), is the one of QE's lambda.x example. ``theta_D_reason`` says why
    ``theta_D_K`` is None (it becomes the McMillan T_c's reason).
    """
    w = np.asarray(frequencies_cm1, float)
    lam = np.asarray(lambdas, float)
    wq = np.asarray(weights, float)
    if w.ndim != 2 or lam.shape != (w.shape[0], len(sigmas_Ry), w.shape[1]) or len(wq) != w.shape[0]:
        raise ValueError(
            f"inconsistent EPC arrays: frequencies {w.shape}, lambdas {lam.shape}, "
            f"weights {wq.shape}, {len(sigmas_Ry)} smearings"
        )
    wq = wq / wq.sum()
    grid = frequency_grid(float(w.max()), width_cm1)
    rows, a2fs = [], []
    for i, sigma in enumerate(sigmas_Ry):
        a2f = a2f_from_modes(w, lam[:, i, :], wq, grid, width_cm1)
        row = smearing_row(float(sigma), grid, a2f, mu_star, theta_D_K, theta_D_reason)
        row["dos_ef_states_per_Ry"] = float(dos_ef[i]) if dos_ef is not None else None
        rows.append(row)
        a2fs.append(a2f)
    selected, rule = select_smearing(
        [r["lambda_"] for r in rows], list(sigmas_Ry), rel_tol,
        list(dos_ef) if dos_ef is not None else None,
    )
    return EliashbergResult(rows, grid, np.array(a2fs), selected, rule)


def smearing_row(sigma_Ry: float, grid_cm1: np.ndarray, a2f: np.ndarray, mu_star: float,
                 theta_D_K: float | None, theta_D_reason: str) -> dict:
    """λ, ω_log, ω_2 and the T_c of one α²F; ``undefined_reasons`` names each None and why."""
    lam = lambda_from_a2f(grid_cm1, a2f)
    wlog = omega_log_K_from_a2f(grid_cm1, a2f)
    w2 = omega_2_K_from_a2f(grid_cm1, a2f)
    row = {
        "sigma_Ry": sigma_Ry,
        "lambda_": lam,
        "omega_log_K": wlog,
        "omega_2_K": w2,
        "tc_K": allen_dynes_tc(lam, wlog, mu_star),
        "tc_allen_dynes_f1f2_K": allen_dynes_f1f2_tc(lam, wlog, w2, mu_star),
        "tc_mcmillan_K": mcmillan_tc(lam, theta_D_K, mu_star),
    }
    no_coupling = f"λ = {lam:.3g} ≤ 0 at this smearing: no coupling to average over"
    why = {"omega_log_K": no_coupling, "omega_2_K": no_coupling, "tc_K": no_coupling,
           "tc_allen_dynes_f1f2_K": no_coupling, "tc_mcmillan_K": f"no Θ_D: {theta_D_reason}"}
    row["undefined_reasons"] = {k: why[k] for k, v in row.items() if v is None}
    for key, value in row.items():  # safety net: NaN/inf is not a value (nor valid JSON)
        if isinstance(value, float) and not math.isfinite(value):
            row[key] = None
            row["undefined_reasons"][key] = f"computed a non-finite value ({value})"
    return row


def select_smearing(
    lambdas: Sequence[float],
    sigmas: Sequence[float],
    rel_tol: float = 0.05,
    dos_ef: Sequence[float] | None = None,
    dos_tol: float = 0.20,
) -> tuple[int, str]:
    """Index of the reported smearing (rule in the module docstring) and its description."""
    if len(lambdas) == 0:
        raise ValueError("no smearings to choose from")
    order = np.argsort(sigmas)
    if len(lambdas) == 1:
        return int(order[0]), "only one smearing computed"
    changes = []  # (index, relative λ change to the next σ, N(E_F) agrees)
    for a, b in zip(order[:-1], order[1:], strict=True):
        rel = abs(lambdas[b] - lambdas[a]) / max(abs(lambdas[a]), 1e-12)
        dos_ok = True
        if dos_ef is not None and dos_ef[a] and dos_ef[b]:
            dos_ok = abs(dos_ef[b] - dos_ef[a]) / abs(dos_ef[a]) <= dos_tol
        changes.append((int(a), rel, dos_ok))
        if rel <= rel_tol and dos_ok:
            return int(a), (
                f"smallest smearing whose lambda agrees with the next larger smearing within "
                f"{rel_tol:.0%} and whose N(E_F) within {dos_tol:.0%} ({sigmas[a]:g} Ry: "
                f"{lambdas[a]:.4f} vs {sigmas[b]:g} Ry: {lambdas[b]:.4f})"
            )
    settled = [c for c in changes if c[2]] or changes
    idx, rel, _ = min(settled, key=lambda t: t[1])
    return idx, (
        f"no neighbouring smearings agree within {rel_tol:.0%}; reported the smearing with the "
        f"smallest relative change ({rel:.1%}) to the next one"
        + (f" among those whose N(E_F) agrees within {dos_tol:.0%}" if settled is not changes
           else "")
    )
