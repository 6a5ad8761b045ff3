"""The screen: triage -> cheap ALIGNN criteria -> MLIP relaxation of survivors -> ranking.

:func:`screen_records` is the plain-function entry point (the CLI and the jobflow Maker call
it): it builds a :class:`ScreenConfig` and :func:`run_screen` runs the stages in order over one
:class:`ScreenBatch` (copies of the records plus what the stages learn about them):

1. :func:`triage_batch` — duplicates within the batch, novelty against the training set;
2. :func:`predict_ml` — the cheap (ML) criteria on every unique candidate, and their verdicts;
3. :func:`relax_survivors` — MLIP relaxation of the candidates that can still pass;
4. :func:`recheck_relaxed` — the ML models again, on the relaxed cells;
5. :func:`energy_verdicts` — the MLIP criteria; an ML criterion must also hold after relaxing;
6. :func:`check_phonons` — MLIP phonons (``mlip_dynamically_stable``) of the candidates that
   can still pass every other criterion;
   with ``rescue``, :func:`rescue_unstable` follows the unstable ones' soft modes
   (:mod:`sc_inverse.screening.rescue`) and the children go through stages 1-6 themselves;
7. :func:`rank_and_select` — the pass rule (:func:`passes`, the only one), rank, top-k;
8. :func:`screen_summary`.

:func:`predict_records` is predictions only. Nothing here aborts a batch because of one bad
candidate: rejections, NaNs and relaxation failures are written into that candidate's record.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from monty.json import jsanitize
from pymatgen.core import Structure

from sc_inverse.errors import ModelLoadError
from sc_inverse.records import (
    CandidateRecord,
    MlipPhononInfo,
    RelaxationInfo,
    Verdict,
    structure_problem,
)
from sc_inverse.screening.criteria import (
    MLIP_KEYS,
    PHONON_KEY,
    Criterion,
    default_criteria,
    order_by_cost,
    parse_criteria,
)
from sc_inverse.screening.phonons import (
    DEFAULT_POTENTIAL,
    PhononResult,
    PhononSettings,
    mlip_phonons,
    phonon_calculator,
)
from sc_inverse.screening.predictor_base import SHIPPED_TC_MODEL, Predictor
from sc_inverse.screening.predictors import load_predictor
from sc_inverse.screening.relax import (
    DEFAULT_CALCULATOR,
    ElementalReferences,
    MlipRelaxer,
    calculator_name,
    relax_and_score,
)
from sc_inverse.screening.rescue import MlipRescuer, child_records, rescue_summary
from sc_inverse.screening.triage import (
    Novelty,
    TrainingIndex,
    find_duplicates,
    novelty,
    rank_order,
)

log = logging.getLogger(__name__)

#: flags the screen sets (and clears on a re-screen)
SCREEN_FLAGS = ("duplicate", "known_structure", "known_composition", "mlip_not_converged")
#: prediction that ranks the survivors (its ``_relaxed`` value when there is one), highest first
RANK_KEY = "tc_K"
#: tie-break of the ranking, lowest first
RANK_TIEBREAK_KEY = "e_form_eV_per_atom"


@dataclass
class ScreenConfig:
    """What a screen checks and how; the options of :func:`screen_records`.

    ``criteria`` (Criterion objects or their dicts; None or empty = the paper's three) is
    parsed and put in cost order (ML criteria before MLIP ones) on construction.
    ``calculator``: an atomate2 MLFF name or an ASE calculator for the relaxation stage;
    ``phonon_potential`` (a :data:`~sc_inverse.screening.phonons.POTENTIALS` name) and
    ``phonon_settings`` (None = the measured defaults) for the phonon check. ``rescue``: follow
    the soft modes of candidates the phonon check finds unstable (new records, parents kept).
    """

    criteria: Sequence[Criterion | dict] | None = None
    top_k: int | None = None
    relax: bool = True
    calculator: Any = DEFAULT_CALCULATOR
    exclude_known: bool = True
    strict: bool = False
    recheck_after_relax: bool = True
    hull: bool = True
    batch_size: int = 64
    device: str | None = None
    progress: bool = False
    max_relax_steps: int = 300
    phonon_potential: str = DEFAULT_POTENTIAL
    phonon_settings: PhononSettings | None = None
    rescue: bool = False

    def __post_init__(self) -> None:
        self.criteria = order_by_cost(
            parse_criteria(list(self.criteria)) if self.criteria else default_criteria()
        )

    @property
    def ml_criteria(self) -> list[Criterion]:
        return [c for c in self.criteria if c.stage == "ml"]

    @property
    def mlip_criteria(self) -> list[Criterion]:
        return [c for c in self.criteria if c.stage == "mlip"]

    @property
    def phonon_criteria(self) -> list[Criterion]:
        return [c for c in self.criteria if c.is_phonon]


@dataclass
class ScreenBatch:
    """One screen's working state: record copies (same order as the input) and stage results.

    Candidates are referred to by their index in ``records``.
    """

    records: list[CandidateRecord]
    structures: list[Structure | None]
    unreadable: dict[int, str]
    duplicate_of: list[int | None] = field(default_factory=list)
    novelty: list[Novelty | None] = field(default_factory=list)
    active: list[int] = field(default_factory=list)  # readable and not a duplicate
    known: set[int] = field(default_factory=set)  # active, with a training structure/composition
    #: criterion label -> why it could be evaluated for nobody
    unavailable: dict[str, str] = field(default_factory=dict)
    #: predictor spec of each ML criterion -> the loaded predictor, or why it could not be loaded
    predictors: dict[str, Predictor | Exception] = field(default_factory=dict)
    predicted: set[str] = field(default_factory=set)  # prediction keys the ML stage wrote
    n_alive_after_ml: int = 0
    relaxed: list[int] = field(default_factory=list)  # relaxed without error
    relaxation: dict[str, Any] = field(
        default_factory=lambda: {"calculator": None, "n_relaxed": 0, "n_failed": 0}
    )
    phonons: dict[str, Any] = field(
        default_factory=lambda: {"potential": None, "n_evaluated": 0, "n_failed": 0}
    )
    timings: dict[str, float] = field(default_factory=dict)
    #: with ``ScreenConfig.rescue``: the phonon results (force constants kept) of unstable candidates
    unstable_phonons: dict[int, PhononResult] = field(default_factory=dict)
    phonon_calculator: Any = None
    rescue: dict[str, Any] = field(default_factory=dict)

    def extend(self, other: ScreenBatch) -> None:
        """Append another batch's records and stage results (indices shifted), e.g. rescued children."""
        n = len(self.records)
        self.records += other.records
        self.structures += other.structures
        self.unreadable.update({i + n: m for i, m in other.unreadable.items()})
        self.duplicate_of += [None if d is None else d + n for d in other.duplicate_of]
        self.novelty += other.novelty
        self.active += [i + n for i in other.active]
        self.known |= {i + n for i in other.known}
        self.relaxed += [i + n for i in other.relaxed]
        self.n_alive_after_ml += other.n_alive_after_ml
        for k, v in other.unavailable.items():
            self.unavailable.setdefault(k, v)
        for mine, theirs in ((self.relaxation, other.relaxation), (self.phonons, other.phonons)):
            for k, v in theirs.items():
                if k.startswith("n_"):
                    mine[k] = mine.get(k, 0) + v

    def eligible(self, i: int, exclude_known: bool) -> bool:
        """Readable, not a duplicate and (with ``exclude_known``) not in the training set."""
        return i in self.active and not (exclude_known and i in self.known)


def passes(
    verdicts: Mapping[str, Verdict],
    criteria: Sequence[Criterion],
    unavailable: Mapping[str, str],
    strict: bool,
) -> bool:
    """The pass rule: no criterion fails, and none is ``not_evaluated`` for this candidate
    alone. A criterion that could be evaluated for nobody (``unavailable``) is skipped, unless
    ``strict``; an advisory criterion never decides."""
    for c in criteria:
        if c.mode == "advisory":
            continue
        v = verdicts[c.label]
        if v == "fail" or (v == "not_evaluated" and (c.label not in unavailable or strict)):
            return False
    return True


#: most skipped records named one per line; the rest are counted (all are in the records)
MAX_SKIP_LINES = 10


def _read_structures(
    records: Sequence[CandidateRecord],
) -> tuple[list[Structure | None], dict[int, str]]:
    """Each record's structure, or None + why it is skipped (unreadable or degenerate, see
    :func:`~sc_inverse.records.structure_problem`); a problem's name becomes a flag
    (``atoms_too_close``, ...) and ``errors["structure"]`` holds the reason."""
    out: list[Structure | None] = []
    errors: dict[int, str] = {}
    for i, r in enumerate(records):
        if not r.structure and r.errors.get("structure"):  # kept by the loader, unreadable
            out.append(None)
            errors[i] = r.errors["structure"]
            continue
        try:
            structure = r.get_structure()
            problem = structure_problem(structure)
        except Exception as exc:  # noqa: BLE001 - a malformed record only loses itself
            structure, problem = None, f"structure cannot be read: {exc}"
        if problem is not None:
            flag = problem.split(":", 1)[0]
            if structure is not None and flag not in r.flags:
                r.flags.append(flag)
            structure, errors[i] = None, problem
        out.append(structure)
    return out, errors


def _report_skipped(records: Sequence[CandidateRecord], skipped: Mapping[int, str]) -> None:
    """One warning line per skipped record (up to :data:`MAX_SKIP_LINES`), then a count."""
    for n, (i, why) in enumerate(sorted(skipped.items())):
        if n == MAX_SKIP_LINES:
            log.warning("... and %d more records skipped (see their errors)", len(skipped) - n)
            break
        log.warning("record %s skipped: %s", records[i].id, why.splitlines()[0][:200])


def _flag(rec: CandidateRecord, flag: str) -> None:
    if flag not in rec.flags:
        rec.flags.append(flag)


def _finite(v: float | None) -> float | None:
    return float(v) if v is not None and math.isfinite(float(v)) else None


def _predict_into(
    records: list[CandidateRecord],
    structures: list[Structure | None],
    indices: Sequence[int],
    predictor: Predictor,
    key: str,
    batch_size: int,
    device: str | None,
    progress: bool = False,
) -> None:
    """``records[i].predictions[key]`` for each index (None + ``errors[key]`` where it fails)."""
    vals, errs = predictor.predict_with_errors(
        [structures[i] for i in indices], batch_size=batch_size, device=device, progress=progress
    )
    for i, v, e in zip(indices, vals, errs, strict=True):
        records[i].predictions[key] = _finite(v)
        if e:
            records[i].errors[key] = e


def predict_records(
    records: Sequence[CandidateRecord],
    predictors: Sequence[Predictor] | None = None,
    batch_size: int = 64,
    device: str | None = None,
    progress: bool = False,
) -> list[CandidateRecord]:
    """Copies of ``records`` with ``predictions[predictor.key]`` filled (None + error on failure)."""
    predictors = list(predictors) if predictors else [load_predictor()]
    recs = [r.model_copy(deep=True) for r in records]
    structs, bad = _read_structures(recs)
    for i, msg in bad.items():
        recs[i].errors["structure"] = msg
    _report_skipped(recs, bad)
    ok = [i for i, s in enumerate(structs) if s is not None]
    for p in predictors:
        _predict_into(recs, structs, ok, p, p.key, batch_size, device, progress)
        for i in bad:
            recs[i].predictions[p.key] = None
    return recs


def new_batch(records: Sequence[CandidateRecord]) -> ScreenBatch:
    """Copies of ``records`` cleared of everything a screen writes (a re-screen starts clean)."""
    recs = [r.model_copy(deep=True) for r in records]
    for r in recs:
        r.verdicts, r.passed, r.rank, r.phonons = {}, None, None, None
        r.flags = [f for f in r.flags if f not in SCREEN_FLAGS and not f.startswith("fails_after_relax:")]
        loader_error = r.errors.get("structure") if not r.structure else None
        r.selected, r.errors = False, {"structure": loader_error} if loader_error else {}
    structs, bad = _read_structures(recs)
    for i, msg in bad.items():
        recs[i].errors["structure"] = msg
    _report_skipped(recs, bad)
    return ScreenBatch(recs, structs, bad)


def triage_batch(batch: ScreenBatch, training_index: TrainingIndex | None = None) -> None:
    """Duplicates within the batch and novelty against the training set (flags, ids)."""
    recs = batch.records
    batch.duplicate_of = find_duplicates(batch.structures)
    for i, d in enumerate(batch.duplicate_of):
        if d is not None:
            _flag(recs[i], "duplicate")
            recs[i].duplicate_of = recs[d].id
    batch.novelty = novelty(batch.structures, index=training_index)
    for i, nv in enumerate(batch.novelty):
        if nv is None:
            continue
        if nv.known_structure:
            _flag(recs[i], "known_structure")
            recs[i].matches_training = nv.known_structure
        if nv.known_composition:
            _flag(recs[i], "known_composition")
    batch.active = [i for i, s in enumerate(batch.structures)
                    if s is not None and batch.duplicate_of[i] is None]
    batch.known = {i for i in batch.active if (nv := batch.novelty[i])
                   and (nv.known_structure or nv.known_composition)}


def _load_ml_predictors(
    criteria: Sequence[Criterion], given: Mapping[str, Predictor], device: str | None
) -> dict[str, Predictor | Exception]:
    """predictor spec -> predictor, or the reason it is unavailable."""
    loaded: dict[str, Predictor | Exception] = {}
    for c in criteria:
        spec = c.predictor or SHIPPED_TC_MODEL
        if spec in loaded:
            continue
        if spec in given:
            loaded[spec] = given[spec]
            continue
        try:
            loaded[spec] = load_predictor(spec, key=c.key, device=device)
        except ModelLoadError as exc:  # reported once, for every such criterion, by run_screen
            log.info("criterion %s not evaluated: %s", c.label, exc)
            loaded[spec] = exc
    return loaded


def _forget_stale_predictions(batch: ScreenBatch, cfg: ScreenConfig) -> None:
    """Values from an earlier screen must not leak into this one's verdicts."""
    produced = {p.key for p in batch.predictors.values() if not isinstance(p, Exception)}
    produced |= {c.key for c in cfg.criteria if c.key}
    produced |= {*MLIP_KEYS, PHONON_KEY} | {f"{k}_relaxed" for k in produced}
    for r in batch.records:
        for k in produced:
            r.predictions.pop(k, None)


def predict_ml(batch: ScreenBatch, cfg: ScreenConfig, given: Mapping[str, Predictor]) -> list[int]:
    """ML predictions on every active candidate and the ML verdicts of every candidate.

    Returns the candidates that can still pass (the ones the relaxation stage gets).
    """
    ml = cfg.ml_criteria
    batch.predictors = _load_ml_predictors(ml, given, cfg.device)
    _forget_stale_predictions(batch, cfg)
    for c in ml:
        p = batch.predictors[c.predictor or SHIPPED_TC_MODEL]
        if isinstance(p, Exception):
            batch.unavailable[c.label] = str(p)
            continue
        if c.key is None:
            c.key = p.key
        if p.key in batch.predicted:
            continue
        batch.predicted.add(p.key)
        _predict_into(batch.records, batch.structures, batch.active, p, p.key, cfg.batch_size,
                      cfg.device, cfg.progress)
    active = set(batch.active)
    for i, rec in enumerate(batch.records):
        for c in ml:
            rec.verdicts[c.label] = ("not_evaluated" if c.label in batch.unavailable or i not in active
                                     else c.verdict(rec.predictions.get(c.key)))
    alive = [i for i in batch.active if batch.eligible(i, cfg.exclude_known)
             and passes(batch.records[i].verdicts, ml, batch.unavailable, cfg.strict)]
    batch.n_alive_after_ml = len(alive)
    return alive


def _apply_relaxation(rec: CandidateRecord, result: dict[str, Any], calculator: str) -> bool:
    """Write one relaxation into its record; the relaxed cell replaces ``structure``.

    Returns False (and records the error) when the relaxation failed.
    """
    rr = result["relax"]
    rec.relaxation = RelaxationInfo(**rr.summary(), calculator=calculator)
    if result["error"]:
        rec.errors["mlip"] = result["error"]
        return False
    rec.predictions["mlip_energy_per_atom_eV"] = _finite(rr.energy_per_atom_eV)
    rec.predictions["volume_change_frac"] = _finite(rr.volume_change_frac)
    rec.predictions["e_form_eV_per_atom"] = _finite(result["e_form_eV_per_atom"])
    rec.predictions["e_above_hull_eV_per_atom"] = _finite(result["e_above_hull_eV_per_atom"])
    rec.provenance["unrelaxed_structure"] = rec.structure
    rec.structure = jsanitize(rr.structure.as_dict(), strict=False)
    if not rr.converged:
        _flag(rec, "mlip_not_converged")
    return True


def relax_survivors(
    batch: ScreenBatch,
    cfg: ScreenConfig,
    alive: Sequence[int],
    relaxer: MlipRelaxer | None = None,
    references: ElementalReferences | None = None,
) -> None:
    """MLIP-relax the ``alive`` candidates; energies go into their predictions.

    Without relaxation (``relax=False``) or an MLIP that cannot be loaded, every MLIP criterion
    is unavailable.
    """
    if cfg.mlip_criteria and not cfg.relax:
        for c in cfg.mlip_criteria:
            batch.unavailable[c.label] = "MLIP relaxation disabled (relax=False)"
    if not (cfg.relax and alive):
        return
    try:
        relaxer = relaxer or MlipRelaxer(cfg.calculator, steps=cfg.max_relax_steps)
        refs = references or ElementalReferences(relaxer)
        batch.relaxation["calculator"] = relaxer.name
        res = relax_and_score({str(i): batch.structures[i] for i in alive}, relaxer, refs,
                              hull=cfg.hull, progress=cfg.progress)
    except ModelLoadError as exc:
        for c in cfg.mlip_criteria:
            batch.unavailable[c.label] = str(exc)
        for i in alive:
            batch.records[i].errors["mlip"] = str(exc)
        return
    for i in alive:
        if _apply_relaxation(batch.records[i], res[str(i)], relaxer.name):
            batch.relaxation["n_relaxed"] += 1
            batch.structures[i] = res[str(i)]["relax"].structure
            batch.relaxed.append(i)
        else:
            batch.relaxation["n_failed"] += 1
    secs = [res[str(i)]["relax"].seconds for i in alive]
    batch.relaxation["seconds_per_structure"] = sum(secs) / len(secs) if secs else None


def recheck_relaxed(batch: ScreenBatch, cfg: ScreenConfig) -> None:
    """Re-predict every ML key on the relaxed cells (``<key>_relaxed``): DFT starts from these."""
    if not (cfg.recheck_after_relax and batch.relaxed):
        return
    for key in sorted(batch.predicted):
        p = next(v for v in batch.predictors.values() if not isinstance(v, Exception) and v.key == key)
        _predict_into(batch.records, batch.structures, batch.relaxed, p, f"{key}_relaxed",
                      cfg.batch_size, cfg.device)


def energy_verdicts(batch: ScreenBatch, cfg: ScreenConfig) -> None:
    """MLIP criteria verdicts; with ``recheck_after_relax`` an ML criterion that passed on the
    generated cell but not on the relaxed one fails (flag ``fails_after_relax:<criterion>``)."""
    for rec in batch.records:
        for c in (c for c in cfg.mlip_criteria if not c.is_phonon):
            rec.verdicts[c.label] = ("not_evaluated" if c.label in batch.unavailable
                                     else c.verdict(rec.predictions.get(c.key)))
        if not cfg.recheck_after_relax:
            continue
        for c in cfg.ml_criteria:
            rk = f"{c.key}_relaxed"
            if (rec.verdicts[c.label] == "pass" and rk in rec.predictions
                    and c.verdict(rec.predictions[rk]) != "pass"):
                rec.verdicts[c.label] = "fail"
                _flag(rec, f"fails_after_relax:{c.label}")


def _phonon_info(r: PhononResult, c: Criterion, verdict: Verdict) -> MlipPhononInfo:
    summary = r.summary()
    return MlipPhononInfo(
        verdict={"pass": "stable", "fail": "unstable"}.get(verdict, "not_evaluated"), mode=c.mode,
        tolerance_THz=-c.threshold, settings=asdict(r.settings),
        **{k: summary[k] for k in ("potential", "min_frequency_THz", "softest_q", "min_optical_gamma_THz",
                                   "supercell", "n_displacements", "spacegroup", "relax_converged",
                                   "seconds", "error")})


def check_phonons(batch: ScreenBatch, cfg: ScreenConfig, calculator: Any = None) -> None:
    """MLIP phonons of the relaxed candidates that can still pass every other criterion (the
    phonon criteria's verdicts; ``not_evaluated`` for everyone else). ``calculator``: a ready
    ASE calculator instead of ``cfg.phonon_potential``."""
    crits = cfg.phonon_criteria
    for rec in batch.records:
        for c in crits:
            rec.verdicts[c.label] = "not_evaluated"
    others = [c for c in cfg.criteria if not c.is_phonon]
    todo = [i for i in batch.relaxed if batch.eligible(i, cfg.exclude_known)
            and passes(batch.records[i].verdicts, others, batch.unavailable, cfg.strict)]
    if not (crits and todo) or any(c.label in batch.unavailable for c in crits):
        return
    try:
        calc = calculator if calculator is not None else phonon_calculator(cfg.phonon_potential, cfg.device)
    except ModelLoadError as exc:
        for c in crits:
            batch.unavailable[c.label] = str(exc)
        return
    name = cfg.phonon_potential if calculator is None else calculator_name(calculator)
    settings = cfg.phonon_settings or PhononSettings()
    batch.phonons.update(potential=name, settings=asdict(settings))
    secs = []
    batch.phonon_calculator = calc
    for i in todo:
        rec = batch.records[i]
        r = mlip_phonons(batch.structures[i], calc, settings, potential=name, keep_phonopy=cfg.rescue)
        rec.predictions[PHONON_KEY] = _finite(r.min_frequency_THz)
        for c in crits:
            rec.verdicts[c.label] = c.verdict(rec.predictions[PHONON_KEY])
        rec.phonons = _phonon_info(r, crits[0], rec.verdicts[crits[0].label])
        if cfg.rescue and rec.phonons.verdict == "unstable":
            batch.unstable_phonons[i] = r
        else:
            r.phonopy = None
        batch.phonons["n_evaluated"] += 1
        if r.error:
            rec.errors["mlip_phonons"] = r.error
            batch.phonons["n_failed"] += 1
        secs.append(r.seconds)
    batch.phonons["seconds_per_structure"] = sum(secs) / len(secs)


def rescue_unstable(batch: ScreenBatch, cfg: ScreenConfig) -> list[CandidateRecord]:
    """Soft-mode rescue of the candidates the phonon check found unstable: one record per
    accepted child (unscreened); each parent's ``provenance["rescue"]`` says what was tried."""
    if not batch.unstable_phonons:
        return []
    settings = cfg.phonon_settings or PhononSettings()
    rescuer = MlipRescuer(calculator=batch.phonon_calculator, potential=batch.phonons["potential"],
                          settings=settings, tolerance_THz=-cfg.phonon_criteria[0].threshold)
    children, n_rescued = [], 0
    for i, r in batch.unstable_phonons.items():
        rec = batch.records[i]
        t0 = time.perf_counter()
        result = rescuer.rescue(batch.structures[i], rec.id, initial=r)
        rec.provenance["rescue"] = rescue_summary(result, time.perf_counter() - t0)
        children += child_records(rec, result)
        n_rescued += result.rescued
    batch.rescue.update(n_attempted=len(batch.unstable_phonons), n_children=len(children), n_rescued=n_rescued)
    batch.unstable_phonons.clear()
    return children


def _rank_score(rec: CandidateRecord) -> tuple[float | None, float | None]:
    pr = rec.predictions
    return pr.get(f"{RANK_KEY}_relaxed", pr.get(RANK_KEY)), pr.get(RANK_TIEBREAK_KEY)


def rank_and_select(batch: ScreenBatch, cfg: ScreenConfig) -> list[int]:
    """``passed`` for everyone; ``rank`` (1 = best; advisory failures rank after the rest) and
    ``selected`` (rank <= top_k) for the survivors, which are returned best first."""
    survivors = []
    for i, rec in enumerate(batch.records):
        rec.passed = batch.eligible(i, cfg.exclude_known) and passes(
            rec.verdicts, cfg.criteria, batch.unavailable, cfg.strict)
        if rec.passed:
            survivors.append(i)
    order = rank_order([_rank_score(batch.records[i]) for i in survivors])
    # advisory criteria rank: survivors failing fewer of them first, T_c order within (stable sort)
    advisory = [c for c in cfg.criteria if c.mode == "advisory"]
    order.sort(key=lambda j: sum(batch.records[survivors[j]].verdicts[c.label] == "fail" for c in advisory))
    for rank, j in enumerate(order, start=1):
        rec = batch.records[survivors[j]]
        rec.rank = rank
        rec.selected = cfg.top_k is None or rank <= cfg.top_k
    return [survivors[j] for j in order]


def screen_summary(batch: ScreenBatch, cfg: ScreenConfig) -> dict[str, Any]:
    """Counts per stage, each criterion's pass/fail/not-evaluated tally, timings."""
    recs = batch.records
    crit_summary = []
    for c in cfg.criteria:
        vs = [r.verdicts[c.label] for r in recs]
        crit_summary.append({
            "criterion": c.label, "predictor": c.predictor or "shipped T_c model", "key": c.key,
            "stage": c.stage, "mode": c.mode, "available": c.label not in batch.unavailable,
            "reason_unavailable": batch.unavailable.get(c.label),
            "n_pass": vs.count("pass"), "n_fail": vs.count("fail"), "n_not_evaluated": vs.count("not_evaluated"),
        })
    return {
        "n_input": len(recs) - batch.rescue.get("n_children", 0),
        "n_unreadable": len(batch.unreadable),
        "n_duplicates": sum(d is not None for d in batch.duplicate_of),
        "n_known_structure": sum(1 for nv in batch.novelty if nv and nv.known_structure),
        "n_known_composition": sum(1 for nv in batch.novelty if nv and nv.known_composition),
        "exclude_known": cfg.exclude_known,
        "n_prediction_errors": sum(1 for r in recs if any(k != "mlip" for k in r.errors)),
        "n_alive_after_ml": batch.n_alive_after_ml,
        "relaxation": batch.relaxation,
        "phonons": batch.phonons,
        **({"rescue": batch.rescue} if cfg.rescue else {}),
        "n_passed": sum(1 for r in recs if r.passed),
        "n_selected": sum(1 for r in recs if r.selected),
        "top_k": cfg.top_k,
        "strict": cfg.strict,
        "criteria": crit_summary,
        "not_evaluated_criteria": [{"criterion": k, "reason": v} for k, v in batch.unavailable.items()],
        "timings": {k: round(v, 3) for k, v in batch.timings.items()},
    }


def screen_stages(records: Sequence[CandidateRecord], cfg: ScreenConfig, predictors: Mapping[str, Predictor],
                  relaxer: MlipRelaxer | None, references: ElementalReferences | None,
                  training_index: TrainingIndex | None, phonon_calculator: Any) -> ScreenBatch:
    """Stages 1-6 of the module docstring on a new batch of ``records`` (no ranking)."""
    batch = new_batch(records)
    t0 = time.perf_counter()
    triage_batch(batch, training_index)
    batch.timings["triage_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    alive = predict_ml(batch, cfg, predictors)
    batch.timings["ml_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    relax_survivors(batch, cfg, alive, relaxer, references)
    recheck_relaxed(batch, cfg)
    batch.timings["mlip_s"] = time.perf_counter() - t0
    energy_verdicts(batch, cfg)
    t0 = time.perf_counter()
    check_phonons(batch, cfg, phonon_calculator)
    batch.timings["phonons_s"] = time.perf_counter() - t0
    return batch


def run_screen(
    records: Sequence[CandidateRecord],
    cfg: ScreenConfig,
    predictors: Mapping[str, Predictor] | None = None,
    relaxer: MlipRelaxer | None = None,
    references: ElementalReferences | None = None,
    training_index: TrainingIndex | None = None,
    phonon_calculator: Any = None,
) -> tuple[list[CandidateRecord], dict[str, Any]]:
    """The stages of the module docstring in order; see :func:`screen_records` for the result.

    ``predictors`` maps criterion ``predictor`` strings to ready predictor objects (tests, or
    reuse across calls); ``relaxer``/``references``/``training_index`` likewise for the MLIP
    stage and the novelty check (None: built from ``cfg`` / the packaged training set);
    ``phonon_calculator`` a ready ASE calculator for the phonon check.
    """
    t_start, cpu_start = time.perf_counter(), time.process_time()
    batch = screen_stages(records, cfg, predictors or {}, relaxer, references, training_index, phonon_calculator)
    if cfg.rescue:
        t0 = time.perf_counter()
        children = rescue_unstable(batch, cfg)
        if children:  # the children are screened like any candidate (predictions of their own cells)
            loaded = {k: v for k, v in batch.predictors.items() if not isinstance(v, Exception)}
            batch.extend(screen_stages(children, replace(cfg, rescue=False), {**loaded, **(predictors or {})},
                                       relaxer, references, training_index, batch.phonon_calculator))
        batch.timings["rescue_s"] = time.perf_counter() - t0
    rank_and_select(batch, cfg)
    batch.timings["total_s"] = time.perf_counter() - t_start
    batch.timings["cpu_total_s"] = time.process_time() - cpu_start  # this process, all threads
    if batch.unavailable:
        log.warning("NOT EVALUATED for every candidate: %s",
                    "; ".join(f"{k} ({v})" for k, v in batch.unavailable.items()))
    return batch.records, screen_summary(batch, cfg)


def screen_records(
    records: Sequence[CandidateRecord],
    criteria: Sequence[Criterion | dict] | None = None,
    top_k: int | None = None,
    relax: bool = True,
    calculator: Any = DEFAULT_CALCULATOR,
    exclude_known: bool = True,
    strict: bool = False,
    recheck_after_relax: bool = True,
    hull: bool = True,
    batch_size: int = 64,
    device: str | None = None,
    progress: bool = False,
    predictors: Mapping[str, Predictor] | None = None,
    relaxer: MlipRelaxer | None = None,
    references: ElementalReferences | None = None,
    training_index: TrainingIndex | None = None,
    max_relax_steps: int = 300,
    phonon_potential: str = DEFAULT_POTENTIAL,
    phonon_calculator: Any = None,
    rescue: bool = False,
) -> tuple[list[CandidateRecord], dict[str, Any]]:
    """Screen candidate records; returns ``(records, summary)`` with one record per input
    (then, with ``rescue``, one per rescued child).

    Each output record keeps its ``id`` and gets ``predictions`` (``tc_K`` in K, ...),
    ``verdicts`` (criterion label -> pass/fail/not_evaluated), ``passed``, ``rank`` (survivors,
    1 = best by ``tc_K``) and ``selected`` (rank <= ``top_k``), plus ``flags`` (duplicate,
    known_structure, known_composition, ...), ``errors``, ``relaxation`` (MLIP stats) and
    ``phonons`` (the ``mlip_dynamically_stable`` check: verdict, potential, min frequency, ...).

    * Criteria whose model cannot be loaded are ``not_evaluated`` for every candidate and listed
      in ``summary["not_evaluated_criteria"]``; with ``strict=True`` nobody can pass then.
      A candidate whose own value is missing (graph rejected, NaN, relaxation failed) never passes.
    * ``rescue``: candidates the phonon check finds unstable are kept and their rescued children
      (``origin`` "rescue", ``parent_id``) are appended, screened like the others.
    * The options are those of :class:`ScreenConfig`; ``predictors``, ``relaxer``,
      ``references`` and ``training_index`` are ready objects (see :func:`run_screen`).
    """
    cfg = ScreenConfig(
        criteria=criteria, top_k=top_k, relax=relax, calculator=calculator, exclude_known=exclude_known,
        strict=strict, recheck_after_relax=recheck_after_relax, hull=hull, batch_size=batch_size,
        device=device, progress=progress, max_relax_steps=max_relax_steps, phonon_potential=phonon_potential,
        rescue=rescue,
    )
    return run_screen(records, cfg, predictors=predictors, relaxer=relaxer, references=references,
                      training_index=training_index, phonon_calculator=phonon_calculator)
