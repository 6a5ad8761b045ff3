"""Choosing candidates for DFT, counting the inverse-design funnel and timing its stages.

Kept apart from the jobflow wiring in :mod:`sc_inverse.pipeline.jobs` so the rules are plain
functions with plain tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sc_inverse.records import CandidateRecord

#: paper's threshold for a DFT-confirmed superconductor (K)
DFT_TC_THRESHOLD_K = 5.0


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


def funnel_counts(
    generated: Sequence[CandidateRecord],
    screened: Sequence[CandidateRecord],
    dft_rows: Sequence[dict],
    training_formulas: set[str],
) -> dict[str, int]:
    """Stage counts in the order of the paper: generated → valid → screened → DFT → T_c > 5 K → stable & novel."""
    done = [r for r in dft_rows if r.get("tc_K") is not None]
    hot = [r for r in done if r["tc_K"] > DFT_TC_THRESHOLD_K]
    return {
        "generated": len(generated),
        "structurally valid": sum(1 for r in generated if not r.flags),
        "passed ML screen": sum(1 for r in screened if r.passed),
        "sent to DFT": sum(1 for r in dft_rows if not str(r.get("note", "")).startswith("skipped")),
        "DFT completed": len(done),
        f"DFT T_c > {DFT_TC_THRESHOLD_K:g} K": len(hot),
        "dynamically stable & novel": sum(
            1 for r in hot if r.get("dynamically_stable") and r.get("formula") not in training_formulas
        ),
    }


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
