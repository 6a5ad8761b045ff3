"""The screen: triage -> cheap ALIGNN criteria -> MLIP relaxation of survivors -> ranking.

:func:`screen_records` is the plain-function entry point (the CLI and the jobflow Maker call
it); :func:`predict_records` is predictions only. Nothing here aborts a batch because of one bad
candidate: rejections, NaNs and relaxation failures are written into that candidate's record.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

from monty.json import jsanitize
from pymatgen.core import Structure

from sc_inverse.errors import ModelLoadError
from sc_inverse.records import CandidateRecord, RelaxationInfo
from sc_inverse.screening.criteria import (
    MLIP_KEYS,
    Criterion,
    default_criteria,
    order_by_cost,
    parse_criteria,
)

log = logging.getLogger(__name__)

#: flags the screen sets (and clears on a re-screen)
SCREEN_FLAGS = ("duplicate", "known_structure", "known_composition", "mlip_not_converged")


def _structures(records: Sequence[CandidateRecord]) -> tuple[list[Structure | None], dict[int, str]]:
    out: list[Structure | None] = []
    errors: dict[int, str] = {}
    for i, r in enumerate(records):
        try:
            out.append(r.get_structure())
        except Exception as exc:  # noqa: BLE001 - a malformed record only loses itself
            out.append(None)
            errors[i] = f"structure cannot be read: {exc}"
    return out, errors


def _flag(rec: CandidateRecord, flag: str) -> None:
    if flag not in rec.flags:
        rec.flags.append(flag)


def _finite(v: float | None) -> float | None:
    return float(v) if v is not None and math.isfinite(float(v)) else None


def predict_records(
    records: Sequence[CandidateRecord],
    predictors: Sequence[Any] | None = None,
    batch_size: int = 64,
    device: str | None = None,
    progress: bool = False,
) -> list[CandidateRecord]:
    """Copies of ``records`` with ``predictions[predictor.key]`` filled (None + error on failure)."""
    from sc_inverse.screening.predictors import load_predictor

    predictors = list(predictors) if predictors else [load_predictor()]
    recs = [r.model_copy(deep=True) for r in records]
    structs, bad = _structures(recs)
    for i, msg in bad.items():
        recs[i].errors["structure"] = msg
    ok = [i for i, s in enumerate(structs) if s is not None]
    for p in predictors:
        vals, errs = p.predict_with_errors([structs[i] for i in ok], batch_size=batch_size, device=device,
                                           progress=progress)
        for i, v, e in zip(ok, vals, errs, strict=True):
            recs[i].predictions[p.key] = _finite(v)
            if e:
                recs[i].errors[p.key] = e
        for i in bad:
            recs[i].predictions[p.key] = None
    return recs


def _load_ml_predictors(criteria: list[Criterion], predictors: dict[str, Any], device: str | None):
    """predictor spec -> predictor or the reason it is unavailable."""
    from sc_inverse.screening.predictors import SHIPPED_TC_MODEL, load_predictor

    loaded: dict[str, Any] = {}
    for c in criteria:
        if c.stage != "ml":
            continue
        spec = c.predictor or SHIPPED_TC_MODEL
        if spec in loaded:
            continue
        if spec in predictors:
            loaded[spec] = predictors[spec]
            continue
        try:
            loaded[spec] = load_predictor(spec, key=c.key, device=device)
        except ModelLoadError as exc:
            log.warning("criterion %s not evaluated: %s", c.label, exc)
            loaded[spec] = exc
    return loaded


def screen_records(
    records: Sequence[CandidateRecord],
    criteria: Sequence[Criterion | dict] | None = None,
    top_k: int | None = None,
    relax: bool = True,
    calculator: Any = "CHGNet",
    exclude_known: bool = True,
    strict: bool = False,
    recheck_after_relax: bool = True,
    hull: bool = True,
    batch_size: int = 64,
    device: str | None = None,
    progress: bool = False,
    predictors: dict[str, Any] | None = None,
    relaxer: Any = None,
    references: Any = None,
    training_index: Any = None,
    max_relax_steps: int = 300,
) -> tuple[list[CandidateRecord], dict[str, Any]]:
    """Screen candidate records; returns ``(records, summary)`` with one record per input.

    Each output record keeps its ``id`` and gets ``predictions`` (``tc_K`` in K, ...),
    ``verdicts`` (criterion label -> pass/fail/not_evaluated), ``passed``, ``rank`` (survivors,
    1 = best by ``tc_K``) and ``selected`` (rank <= ``top_k``), plus ``flags`` (duplicate,
    known_structure, known_composition, ...), ``errors`` and ``relaxation`` (MLIP stats).

    * Criteria whose model cannot be loaded are ``not_evaluated`` for every candidate and listed
      in ``summary["not_evaluated_criteria"]``; with ``strict=True`` nobody can pass then.
      A candidate whose own value is missing (graph rejected, NaN, relaxation failed) never passes.
    * ``predictors`` maps criterion ``predictor`` strings to ready predictor objects (tests,
      or reuse across calls); ``relaxer``/``references`` likewise for the MLIP stage.
    """
    from sc_inverse.screening import triage
    from sc_inverse.screening.predictors import SHIPPED_TC_MODEL

    t_start = time.perf_counter()
    crit = order_by_cost(parse_criteria(list(criteria)) if criteria else default_criteria())
    recs = [r.model_copy(deep=True) for r in records]
    for r in recs:  # a re-screen starts from a clean slate for everything this function owns
        r.verdicts, r.passed, r.rank = {}, None, None
        r.flags = [f for f in r.flags if f not in SCREEN_FLAGS and not f.startswith("fails_after_relax:")]
        r.selected, r.errors = False, {}
    n = len(recs)
    structs, bad = _structures(recs)
    for i, msg in bad.items():
        recs[i].errors["structure"] = msg
    timings: dict[str, float] = {}

    # --- triage: duplicates and novelty -------------------------------------------------
    t0 = time.perf_counter()
    dup = triage.find_duplicates(structs)
    for i, d in enumerate(dup):
        if d is not None:
            _flag(recs[i], "duplicate")
            recs[i].duplicate_of = recs[d].id
    nov = triage.novelty(structs, index=training_index)
    for i, nv in enumerate(nov):
        if nv is None:
            continue
        if nv.known_structure:
            _flag(recs[i], "known_structure")
            recs[i].matches_training = nv.known_structure
        if nv.known_composition:
            _flag(recs[i], "known_composition")
    timings["triage_s"] = time.perf_counter() - t0
    active = [i for i in range(n) if structs[i] is not None and dup[i] is None]
    known = {i for i in active if nov[i] and (nov[i].known_structure or nov[i].known_composition)}

    # --- cheap ALIGNN criteria on every unique candidate --------------------------------
    t0 = time.perf_counter()
    loaded = _load_ml_predictors(crit, predictors or {}, device)
    unavailable: dict[str, str] = {}
    ml_crit = [c for c in crit if c.stage == "ml"]
    # values from an earlier screen must not leak into this one's verdicts
    produced = {p.key for p in loaded.values() if not isinstance(p, Exception)} | {c.key for c in crit if c.key}
    produced |= set(MLIP_KEYS) | {f"{k}_relaxed" for k in produced}
    for r in recs:
        for k in produced:
            r.predictions.pop(k, None)
    predicted: set[str] = set()
    for c in ml_crit:
        p = loaded[c.predictor or SHIPPED_TC_MODEL]
        if isinstance(p, Exception):
            unavailable[c.label] = str(p)
            continue
        if c.key is None:
            c.key = p.key
        if p.key in predicted:
            continue
        predicted.add(p.key)
        vals, errs = p.predict_with_errors([structs[i] for i in active], batch_size=batch_size,
                                           device=device, progress=progress)
        for i, v, e in zip(active, vals, errs, strict=True):
            recs[i].predictions[p.key] = _finite(v)
            if e:
                recs[i].errors[p.key] = e
    timings["ml_s"] = time.perf_counter() - t0

    def ml_verdict(i: int, c: Criterion) -> str:
        if c.label in unavailable or i not in active:
            return "not_evaluated"
        return c.verdict(recs[i].predictions.get(c.key))

    for i in range(n):
        for c in ml_crit:
            recs[i].verdicts[c.label] = ml_verdict(i, c)

    def can_still_pass(i: int) -> bool:
        if i not in active or (exclude_known and i in known):
            return False
        for c in ml_crit:
            v = recs[i].verdicts[c.label]
            if v == "fail" or (v == "not_evaluated" and (c.label not in unavailable or strict)):
                return False
        return True

    alive = [i for i in active if can_still_pass(i)]
    n_alive_after_ml = len(alive)

    # --- MLIP relaxation of the survivors, then the energy criteria ---------------------
    mlip_crit = [c for c in crit if c.stage == "mlip"]
    relax_summary: dict[str, Any] = {"calculator": None, "n_relaxed": 0, "n_failed": 0}
    t0 = time.perf_counter()
    if mlip_crit and not relax:
        for c in mlip_crit:
            unavailable[c.label] = "MLIP relaxation disabled (relax=False)"
    if relax and alive:
        from sc_inverse.screening.relax import ElementalReferences, MlipRelaxer, relax_and_score

        try:
            relaxer = relaxer or MlipRelaxer(calculator, steps=max_relax_steps)
            refs = references or ElementalReferences(relaxer)
            relax_summary["calculator"] = relaxer.name
            res = relax_and_score({str(i): structs[i] for i in alive}, relaxer, refs, hull=hull,
                                  progress=progress)
        except ModelLoadError as exc:
            res = None
            for c in mlip_crit:
                unavailable[c.label] = str(exc)
            for i in alive:
                recs[i].errors["mlip"] = str(exc)
        if res is not None:
            secs = []
            for i in alive:
                r = res[str(i)]
                rr = r["relax"]
                recs[i].relaxation = RelaxationInfo(**rr.summary(), calculator=relaxer.name)
                secs.append(rr.seconds)
                if r["error"]:
                    recs[i].errors["mlip"] = r["error"]
                    relax_summary["n_failed"] += 1
                    continue
                relax_summary["n_relaxed"] += 1
                recs[i].predictions["mlip_energy_per_atom_eV"] = _finite(rr.energy_per_atom_eV)
                recs[i].predictions["volume_change_frac"] = _finite(rr.volume_change_frac)
                recs[i].predictions["e_form_eV_per_atom"] = _finite(r["e_form_eV_per_atom"])
                recs[i].predictions["e_above_hull_eV_per_atom"] = _finite(r["e_above_hull_eV_per_atom"])
                recs[i].provenance["unrelaxed_structure"] = recs[i].structure
                recs[i].structure = jsanitize(rr.structure.as_dict(), strict=False)
                structs[i] = rr.structure
                if not rr.converged:
                    _flag(recs[i], "mlip_not_converged")
            relax_summary["seconds_per_structure"] = sum(secs) / len(secs) if secs else None
            # re-predict on the relaxed structures: DFT starts from these
            relaxed = [i for i in alive if not res[str(i)]["error"]]
            if recheck_after_relax and relaxed:
                for key in sorted(predicted):
                    p = next(v for v in loaded.values() if not isinstance(v, Exception) and v.key == key)
                    vals, errs = p.predict_with_errors([structs[i] for i in relaxed], batch_size=batch_size,
                                                       device=device)
                    for i, v, e in zip(relaxed, vals, errs, strict=True):
                        recs[i].predictions[f"{key}_relaxed"] = _finite(v)
                        if e:
                            recs[i].errors[f"{key}_relaxed"] = e
    timings["mlip_s"] = time.perf_counter() - t0

    for i in range(n):
        for c in mlip_crit:
            recs[i].verdicts[c.label] = (
                "not_evaluated" if c.label in unavailable else c.verdict(recs[i].predictions.get(c.key))
            )
        if recheck_after_relax:  # an ML criterion must also hold on the relaxed structure
            for c in ml_crit:
                rk = f"{c.key}_relaxed"
                if (recs[i].verdicts[c.label] == "pass" and rk in recs[i].predictions
                        and c.verdict(recs[i].predictions[rk]) != "pass"):
                    recs[i].verdicts[c.label] = "fail"
                    _flag(recs[i], f"fails_after_relax:{c.label}")

    # --- pass / rank --------------------------------------------------------------------
    survivors = []
    for i in range(n):
        if i not in active or (exclude_known and i in known):
            recs[i].passed = False
            continue
        ok = True
        for c in crit:
            v = recs[i].verdicts[c.label]
            if v == "fail" or (v == "not_evaluated" and (c.label not in unavailable or strict)):
                ok = False
        recs[i].passed = ok
        if ok:
            survivors.append(i)
    rank_key = "tc_K"

    def score(i: int) -> tuple[float | None, float | None]:
        pr = recs[i].predictions
        primary = pr.get(f"{rank_key}_relaxed", pr.get(rank_key))
        return primary, pr.get("e_form_eV_per_atom")

    order = triage.rank_order([score(i) for i in survivors])
    for r_, j in enumerate(order, start=1):
        i = survivors[j]
        recs[i].rank = r_
        recs[i].selected = top_k is None or r_ <= top_k

    # --- summary ------------------------------------------------------------------------
    crit_summary = []
    for c in crit:
        vs = [r.verdicts[c.label] for r in recs]
        crit_summary.append({
            "criterion": c.label, "predictor": c.predictor or "shipped T_c model", "key": c.key,
            "stage": c.stage, "available": c.label not in unavailable,
            "reason_unavailable": unavailable.get(c.label),
            "n_pass": vs.count("pass"), "n_fail": vs.count("fail"), "n_not_evaluated": vs.count("not_evaluated"),
        })
    timings["total_s"] = time.perf_counter() - t_start
    summary = {
        "n_input": n,
        "n_unreadable": len(bad),
        "n_duplicates": sum(d is not None for d in dup),
        "n_known_structure": sum(1 for nv in nov if nv and nv.known_structure),
        "n_known_composition": sum(1 for nv in nov if nv and nv.known_composition),
        "exclude_known": exclude_known,
        "n_prediction_errors": sum(1 for r in recs if any(k != "mlip" for k in r.errors)),
        "n_alive_after_ml": n_alive_after_ml,
        "relaxation": relax_summary,
        "n_passed": len(survivors),
        "n_selected": sum(1 for r in recs if r.selected),
        "top_k": top_k,
        "strict": strict,
        "criteria": crit_summary,
        "not_evaluated_criteria": [{"criterion": k, "reason": v} for k, v in unavailable.items()],
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    if unavailable:
        log.warning("NOT EVALUATED for every candidate: %s", "; ".join(f"{k} ({v})" for k, v in unavailable.items()))
    return recs, summary
