"""Choosing candidates for DFT, counting the inverse-design funnel and timing its stages.

Kept apart from the jobflow wiring in :mod:`sc_inverse.pipeline.jobs` so the rules are plain
functions with plain tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from sc_inverse.records import CandidateRecord, Verdict

#: paper's threshold for a DFT-confirmed superconductor (K)
DFT_TC_THRESHOLD_K = 5.0
#: the paper's band-gap criterion (metals only): its key and threshold (eV)
GAP_KEY = "gap_eV"
GAP_THRESHOLD_EV = 0.05
#: the DFT row field with the band gap of the candidate's scf (eV; 0.0 for a metal)
DFT_GAP_FIELD = "gap_dft_eV"
#: where the gap comes from when the ML gap model could not run
DFT_GAP_SOURCE = "the DFT scf"


def select_for_dft(
    records: Sequence[CandidateRecord],
    top_k: int,
    missing_elements: Callable[[CandidateRecord], list[str]],
) -> tuple[list[CandidateRecord], list[dict]]:
    """Pick the ``top_k`` best-ranked survivors that QE can run; report the rest as skipped.

    Survivors are taken in rank order. A survivor with elements lacking a pseudopotential is not
    dropped: it becomes a skipped row (``note = "skipped: no pseudopotential for X"``) so the
    report shows what the DFT stage could not do, and the next feasible survivor takes its slot.
    """
    survivors = sorted(
        (r for r in records if r.passed), key=lambda r: (r.rank is None, r.rank or 0, r.id)
    )
    chosen: list[CandidateRecord] = []
    skipped: list[dict] = []
    for rec in survivors:
        if len(chosen) >= top_k:
            break
        missing = missing_elements(rec)
        if missing:
            skipped.append(
                {
                    "id": rec.id,
                    "formula": rec.formula,
                    "note": f"skipped: no pseudopotential for {', '.join(sorted(missing))}",
                    "predictions": rec.predictions,
                }
            )
            continue
        chosen.append(rec)
    return chosen, skipped


def _reached_dft(row: dict) -> bool:
    return not str(row.get("note", "")).startswith("skipped")


def _screen_gap_criterion(screen_summary: dict | None) -> dict | None:
    """The screen's gap criterion entry (key ``gap_eV``) of its summary, if it had one."""
    for c in (screen_summary or {}).get("criteria", []):
        if c.get("key") == GAP_KEY:
            return c
    return None


def _gap_threshold_eV(label: str | None) -> float:
    """Threshold of a ``gap_eV < x`` label; the paper's 0.05 eV for a custom-named criterion."""
    m = re.fullmatch(rf"{GAP_KEY}\s*<=?\s*([-+0-9.eE]+)", (label or "").strip())
    return float(m.group(1)) if m else GAP_THRESHOLD_EV


def dft_gap_criterion(dft_rows: Sequence[dict], screen_summary: dict | None) -> dict[str, Any]:
    """The paper's ``gap_eV < 0.05`` on every candidate that reached DFT, from its scf gap.

    Each such row gets ``gap_verdict`` (pass / fail / not_evaluated: no ``gap_dft_eV``, e.g. no
    pw.x XML or a row built before the field existed). ``applied`` is True when the screen
    had the gap criterion but its ML model was unavailable ("not evaluated" for everyone): then
    the DFT verdict stands in for it and the funnel counts it. With the ML model available the
    DFT verdicts are a recorded cross-check; with no gap criterion in the screen, a record only.
    """
    screen = _screen_gap_criterion(screen_summary)
    threshold = _gap_threshold_eV(screen.get("criterion") if screen else None)
    ml_available = None if screen is None else bool(screen.get("available"))
    verdicts: list[Verdict] = []
    for row in dft_rows:
        if not _reached_dft(row):
            continue
        gap = row.get(DFT_GAP_FIELD)
        verdict: Verdict = "not_evaluated" if gap is None else ("pass" if gap < threshold else "fail")
        row["gap_verdict"] = verdict
        verdicts.append(verdict)
    return {
        "criterion": screen.get("criterion") if screen else f"{GAP_KEY} < {threshold:g}",
        "threshold_eV": threshold,
        "evaluated_from": DFT_GAP_SOURCE,
        "ml_model_available": ml_available,
        "ml_reason_unavailable": screen.get("reason_unavailable") if screen else None,
        "applied": screen is not None and not ml_available and any(v != "not_evaluated" for v in verdicts),
        "n_pass": verdicts.count("pass"),
        "n_fail": verdicts.count("fail"),
        "n_not_evaluated": verdicts.count("not_evaluated"),
    }


def funnel_counts(
    generated: Sequence[CandidateRecord],
    screened: Sequence[CandidateRecord],
    dft_rows: Sequence[dict],
    training_formulas: set[str],
    dft_gap_threshold_eV: float | None = None,
) -> dict[str, int]:
    """Stage counts in the order of the paper: generated → valid → screened → DFT → T_c > 5 K → stable & novel.

    ``dft_gap_threshold_eV`` (given when the ML gap model was unavailable, i.e.
    :func:`dft_gap_criterion` ``applied``): a "DFT gap < x eV" row follows "DFT completed" and the later rows count only its passes
    (``gap_verdict``; a missing gap never passes, as in the screen).
    """
    done = [r for r in dft_rows if r.get("tc_K") is not None]
    counts = {
        "generated": len(generated),
        "structurally valid": sum(1 for r in generated if not r.flags),
        "passed ML screen": sum(1 for r in screened if r.passed),
        "sent to DFT": sum(1 for r in dft_rows if _reached_dft(r)),
        "DFT completed": len(done),
    }
    if dft_gap_threshold_eV is not None:
        done = [r for r in done if r.get("gap_verdict") == "pass"]
        counts[f"DFT gap < {dft_gap_threshold_eV:g} eV (scf)"] = len(done)
    hot = [r for r in done if r["tc_K"] > DFT_TC_THRESHOLD_K]
    counts[f"DFT T_c > {DFT_TC_THRESHOLD_K:g} K"] = len(hot)
    counts["dynamically stable & novel"] = sum(
        1 for r in hot if r.get("dynamically_stable") and r.get("formula") not in training_formulas
    )
    return counts


def stage_timings(timestamps: dict[str, float | None], now: float) -> dict[str, float]:
    """Wall time (s) of each stage from the run's ``start``/``collected``/``screened`` times;
    a stage whose bounds are unknown is left out."""
    t = {k: v for k, v in timestamps.items() if v is not None}
    timings = {}
    if "start" in t and "collected" in t:
        timings["generate"] = t["collected"] - t["start"]
    if "collected" in t and "screened" in t:
        timings["screen (ML + MLIP)"] = t["screened"] - t["collected"]
    if "screened" in t:
        timings["DFT (QE) + hull"] = now - t["screened"]
    if "start" in t:
        timings["total"] = now - t["start"]
    return timings
