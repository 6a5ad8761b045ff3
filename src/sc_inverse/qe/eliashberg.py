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

All T_c are 0 when the exponent's denominator is ≤ 0 (λ too small to overcome μ*).

**Reported smearing** (:func:`select_smearing`): QE users read λ where it no longer depends on the
electronic smearing: too small a σ samples the Fermi surface with too few k-points (noisy λ), too
large a σ washes it out. The rule: going up from the smallest σ, report the first σ whose λ agrees
with the next larger σ within ``rel_tol`` (5 %) *and* whose N(E_F) agrees with the next within
``dos_tol`` (20 %; a fast-changing N(E_F) means the Fermi surface is still under-sampled, so an
accidental λ agreement there is not a plateau); if no pair qualifies, report the σ with the smallest
relative λ change to its neighbour. The whole table is always kept.
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


def allen_dynes_tc(lambda_: float, omega_log_K: float, mu_star: float = 0.1) -> float:
    """Allen–Dynes T_c with the ω_log/1.2 prefactor (paper Eq. 6), K."""
    ex = _exponent(lambda_, mu_star)
    return 0.0 if ex is None or omega_log_K <= 0 else omega_log_K / 1.2 * math.exp(ex)


def allen_dynes_f1f2_tc(
    lambda_: float, omega_log_K: float, omega_2_K: float, mu_star: float = 0.1
) -> float:
    """Full Allen–Dynes (1975) T_c with the strong-coupling (f1) and shape (f2) factors, K."""
    base = allen_dynes_tc(lambda_, omega_log_K, mu_star)
    if base == 0.0:
        return 0.0
    lam1 = 2.46 * (1.0 + 3.8 * mu_star)
    lam2 = 1.82 * (1.0 + 6.3 * mu_star) * (omega_2_K / omega_log_K)
    f1 = (1.0 + (lambda_ / lam1) ** 1.5) ** (1.0 / 3.0)
    f2 = 1.0 + (omega_2_K / omega_log_K - 1.0) * lambda_**2 / (lambda_**2 + lam2**2)
    return f1 * f2 * base


def mcmillan_tc(lambda_: float, theta_D_K: float, mu_star: float = 0.1) -> float:
    """McMillan (1968) T_c = Θ_D/1.45 · exp[−1.04(1+λ)/(λ − μ*(1+0.62λ))], K."""
    ex = _exponent(lambda_, mu_star)
    return 0.0 if ex is None or theta_D_K <= 0 else theta_D_K / 1.45 * math.exp(ex)


def debye_temperature_K(frequencies_cm1: Sequence[float], dos: Sequence[float]) -> float | None:
    """Θ_D from the second moment of the phonon DOS (positive frequencies only)."""
    w = np.asarray(frequencies_cm1, float)
    g = np.asarray(dos, float)
    mask = w > 0
    if mask.sum() < 2 or np.trapezoid(g[mask], w[mask]) <= 0:
        return None
    w2 = np.trapezoid(g[mask] * w[mask] ** 2, w[mask]) / np.trapezoid(g[mask], w[mask])
    return float(math.sqrt(5.0 / 3.0 * w2) * CM1_TO_K)


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


def omega_log_K_from_a2f(grid_cm1: Sequence[float], a2f: Sequence[float]) -> float:
    """ω_log = exp[(2/λ)∫α²F ln ω/ω dω] in K (grid in cm⁻¹)."""
    w, a = _positive(np.asarray(grid_cm1, float), np.asarray(a2f, float))
    lam = 2.0 * np.trapezoid(a / w, w)
    if lam <= 0:
        return 0.0
    return float(math.exp(2.0 / lam * np.trapezoid(a * np.log(w) / w, w)) * CM1_TO_K)


def omega_2_K_from_a2f(grid_cm1: Sequence[float], a2f: Sequence[float]) -> float:
    """ω_2 = [(2/λ)∫α²F ω dω]^½ in K."""
    w, a = _positive(np.asarray(grid_cm1, float), np.asarray(a2f, float))
    lam = 2.0 * np.trapezoid(a / w, w)
    if lam <= 0:
        return 0.0
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
) -> EliashbergResult:
    """λ, ω_log, ω_2 and the three T_c for every smearing.

    ``frequencies_cm1`` is (nq × nmodes), ``lambdas`` (nq × nsigma × nmodes) as in the ph.x
    files, ``weights`` the star weights (normalised here). The default Gaussian width,
    4 cm⁻¹ (0.12 THz), is the one of QE's lambda.x example.
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
        lam_i = lambda_from_a2f(grid, a2f)
        wlog = omega_log_K_from_a2f(grid, a2f)
        w2 = omega_2_K_from_a2f(grid, a2f)
        rows.append(
            {
                "sigma_Ry": float(sigma),
                "lambda_": lam_i,
                "omega_log_K": wlog,
                "omega_2_K": w2,
                "tc_K": allen_dynes_tc(lam_i, wlog, mu_star),
                "tc_allen_dynes_f1f2_K": allen_dynes_f1f2_tc(lam_i, wlog, w2, mu_star),
                "tc_mcmillan_K": mcmillan_tc(lam_i, theta_D_K, mu_star) if theta_D_K else None,
                "dos_ef_states_per_Ry": float(dos_ef[i]) if dos_ef is not None else None,
            }
        )
        a2fs.append(a2f)
    selected, rule = select_smearing(
        [r["lambda_"] for r in rows], list(sigmas_Ry), rel_tol,
        list(dos_ef) if dos_ef is not None else None,
    )
    return EliashbergResult(rows, grid, np.array(a2fs), selected, rule)


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
    changes = []
    for a, b in zip(order[:-1], order[1:], strict=True):
        rel = abs(lambdas[b] - lambdas[a]) / max(abs(lambdas[a]), 1e-12)
        changes.append((int(a), rel))
        dos_ok = True
        if dos_ef is not None and dos_ef[a] and dos_ef[b]:
            dos_ok = abs(dos_ef[b] - dos_ef[a]) / abs(dos_ef[a]) <= dos_tol
        if rel <= rel_tol and dos_ok:
            return int(a), (
                f"smallest smearing whose lambda agrees with the next larger smearing within "
                f"{rel_tol:.0%} and whose N(E_F) within {dos_tol:.0%} ({sigmas[a]:g} Ry: "
                f"{lambdas[a]:.4f} vs {sigmas[b]:g} Ry: {lambdas[b]:.4f})"
            )
    idx, rel = min(changes, key=lambda t: t[1])
    return idx, (
        f"no neighbouring smearings agree within {rel_tol:.0%}; reported the smearing with the "
        f"smallest relative change ({rel:.1%}) to the next one"
    )
