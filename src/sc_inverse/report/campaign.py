"""Report of a discovery campaign, buildable at any time while its DFT stage still runs.

A campaign (``submit inverse-design --n 3000 --top 12 --preset fast`` + a FireWorks worker)
writes ``candidates.json`` and ``screened.json`` early, but ``dft.json``/``funnel.json`` only
when its finalize job runs, hours to days later. This module therefore reads what is complete:

* the run folder (:class:`~sc_inverse.runs.RunDir`): records, the run manifest ``run.json``
  (command, options, code commit; runs started before it existed lack it) and, once written,
  ``dft.json``/``funnel.json``;
* the job store: every QE/hull/gate task document the DFT stage tags with the candidate's
  ``metadata.record_id`` (:func:`sc_inverse.metadata.tag_candidate`), and through the
  outermost flow uuid of those documents (``hosts[-1]``) the run's other jobs (generate,
  screen, elemental references).

State of a DFT candidate: ``done`` (electron–phonon document stored), ``EPC skipped`` (the
stability gate found it unstable and did not start EPC), ``failed`` (the finalize job wrote a
row without EPC result, or the caller knows a job fizzled), ``running`` (some of its jobs are
stored), ``waiting`` (none yet). The store alone cannot tell a fizzled job from one not yet
run; pass ``failed_ids`` (e.g. from the LaunchPad) for that.

CPU time: QE prints each program's own ``CPU``/``WALL`` clock at the end of its output; those
lines are read from the task documents' folders (``dir_name``), and a document whose folder is
gone counts with its recorded wall time (``wall_time_s``), marked as such. ph.x restarted
after a kill counts only its last run.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from sc_inverse.errors import InputError
from sc_inverse.qe.parsers import parse_program_times
from sc_inverse.qe.schemas import GAP_SKIP_NOTE
from sc_inverse.records import CandidateRecord, load_records
from sc_inverse.runs import RunDir, code_version

logger = logging.getLogger(__name__)

#: DFT T_c threshold of the study and of the target (K)
TC_THRESHOLD_K = 5.0
#: issue 11's target: fraction of the candidates sent to EPC that come out dynamically stable
#: with T_c > 5 K (the study: 20 of 62)
TARGET_FRACTION = 0.30
#: the study's funnel (Wines, Xie & Choudhary 2023; PAPER_NOTES), by our stage names
STUDY_FUNNEL = {
    "generated": 3000,
    "passed ML screen": 62,
    "sent to DFT": 62,
    "DFT done (EPC)": 62,
    f"T_c > {TC_THRESHOLD_K:g} K": 32,
    "dynamically stable & novel": 20,
}
#: spglib tolerance (Å) of the reported space group, as the builders use
SPACEGROUP_SYMPREC_A = 0.1

STATES = ("done", "EPC skipped", "failed", "running", "waiting")


# ------------------------------------------------------------------------------------------
# task documents
# ------------------------------------------------------------------------------------------
def doc_kind(doc: Mapping[str, Any]) -> str:
    """``elph``, ``hull``, ``gate``, ``pw``, ``ph-q`` or ``other`` for one jobflow output
    document (the gate document is read defensively: its schema is another branch's)."""
    out = doc.get("output") or {}
    if not isinstance(out, Mapping):
        return "other"
    name = str(doc.get("name") or "")
    calc = out.get("calc_type")
    if calc == "elph":
        return "elph"
    if "e_above_hull_eV_per_atom" in out or "chemsys" in out:
        return "hull"
    if "epc_allowed" in out or "gate" in name or calc == "gate":
        return "gate"
    if calc in ("scf", "relax", "vc-relax"):
        return "pw"
    if calc == "ph-q":
        return "ph-q"
    return "other"


def _latest(docs: Iterable[Mapping[str, Any]]) -> dict | None:
    docs = sorted(docs, key=lambda d: str(d.get("completed_at") or ""))
    return dict(docs[-1]) if docs else None


def _structure(obj: Any) -> Structure | None:
    if isinstance(obj, Structure):
        return obj
    if isinstance(obj, Mapping) and obj.get("lattice"):
        try:
            return Structure.from_dict(obj)
        except (KeyError, ValueError, TypeError):
            return None
    return None


def _folder_times(folder: str | None) -> tuple[float, float] | None:
    """Summed CPU and wall clocks of the QE programs whose ``*.out`` files are in ``folder``."""
    if not folder or not Path(folder).is_dir():
        return None
    found = [t for p in sorted(Path(folder).glob("*.out"))
             if (t := parse_program_times(p.read_text(errors="replace")))]
    return (sum(t[1] for t in found), sum(t[2] for t in found)) if found else None


def qe_cpu_seconds(doc: Mapping[str, Any]) -> tuple[float, float, bool]:
    """``(cpu_s, wall_s, measured)`` of one QE task document: the programs' own clocks read
    from the ``*.out`` files of its folder (and of an embedded ``scf`` document's, as the
    stability gate carries) when they are there (``measured``), else the recorded
    ``cpu_time_s``/``wall_time_s`` (``measured`` False: the CPU column is then wall time
    unless the document recorded CPU)."""
    out = doc.get("output") or {}
    holders = [out] + ([out["scf"]] if isinstance(out.get("scf"), Mapping) else [])
    cpu = wall = 0.0
    measured = True
    for h in holders:
        times = _folder_times(h.get("dir_name"))
        if times is None:
            measured = False
            recorded_wall = float(h.get("wall_time_s") or 0.0)
            times = (float(h.get("cpu_time_s") or recorded_wall), recorded_wall)
        cpu, wall = cpu + times[0], wall + times[1]
    return cpu, wall, measured


# ------------------------------------------------------------------------------------------
# rows
# ------------------------------------------------------------------------------------------
@dataclass
class CampaignRow:
    """One candidate sent to DFT: the study's Table 1 columns plus its state and cost."""

    id: str
    state: str
    formula: str | None = None
    material_id: str | None = None
    spacegroup: str | None = None
    lambda_: float | None = None
    omega_log_K: float | None = None
    tc_K: float | None = None
    ml_tc_K: float | None = None
    dynamically_stable: bool | None = None
    min_frequency_cm1: float | None = None
    e_form_eV_per_atom: float | None = None
    e_above_hull_eV_per_atom: float | None = None
    gap_dft_eV: float | None = None
    novelty: str | None = None
    cpu_s: float = 0.0
    n_cpu_docs: int = 0
    n_cpu_measured: int = 0
    n_jobs_stored: int = 0
    note: str = ""

    @property
    def stable_hot(self) -> bool:
        return bool(self.dynamically_stable) and (self.tc_K or 0.0) > TC_THRESHOLD_K


def spacegroup_label(structure: Structure | None) -> str | None:
    """``symbol (number)`` by spglib at :data:`SPACEGROUP_SYMPREC_A`; None when it fails."""
    if structure is None:
        return None
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer  # pymatgen analysis: heavy import

    try:
        sga = SpacegroupAnalyzer(structure, symprec=SPACEGROUP_SYMPREC_A)
        return f"{sga.get_space_group_symbol()} ({sga.get_space_group_number()})"
    except (TypeError, ValueError):
        return None


def novelty_label(structure: Structure | None, index: Any = None) -> str | None:
    """Novelty vs the packaged JARVIS-SC training set exactly as the screen's triage judges
    it: ``novel``, ``known composition`` or ``known structure (<jid>)``."""
    if structure is None:
        return None
    from sc_inverse.screening.triage import novelty  # StructureMatcher, JARVIS-SC index

    nv = novelty([structure], index)[0]
    if nv is None:
        return None
    if nv.known_structure:
        return f"known structure ({nv.known_structure})"
    return "known composition" if nv.known_composition else "novel"


def _gap(docs: Sequence[Mapping[str, Any]], dft_row: Mapping[str, Any]) -> float | None:
    """DFT band gap: ``gap_dft_eV`` of the finalize row or of any document, else the
    ``electronic.band_gap_eV`` of an scf document (the gate's own scf included)."""
    if dft_row.get("gap_dft_eV") is not None:
        return dft_row["gap_dft_eV"]
    for d in docs:
        out = d.get("output") or {}
        if out.get("gap_dft_eV") is not None:
            return out["gap_dft_eV"]
        for holder in (out, out.get("scf") or {}):
            elec = holder.get("electronic") if isinstance(holder, Mapping) else None
            if isinstance(elec, Mapping) and elec.get("band_gap_eV") is not None:
                return elec["band_gap_eV"]
    return None


def candidate_row(rid: str, rec: CandidateRecord | None, docs: Sequence[Mapping[str, Any]],
                  dft_row: Mapping[str, Any] | None = None, failed: bool = False,
                  training_index: Any = None) -> CampaignRow:
    """The report row of one DFT candidate from its stored documents (and its finalize row,
    when the run has one)."""
    dft_row = dft_row or {}
    by_kind: dict[str, list] = {}
    for d in docs:
        by_kind.setdefault(doc_kind(d), []).append(d)
    elph = (_latest(by_kind.get("elph", [])) or {}).get("output") or {}
    hull = (_latest(by_kind.get("hull", [])) or {}).get("output") or {}
    gate = (_latest(by_kind.get("gate", [])) or {}).get("output") or {}
    row = CampaignRow(id=rid, state="waiting", formula=rec.formula if rec else dft_row.get("formula"),
                      material_id=dft_row.get("material_id"),
                      ml_tc_K=rec.predictions.get("tc_K") if rec else dft_row.get("ml_tc_K"),
                      n_jobs_stored=len(docs))
    for d in docs:
        row.material_id = row.material_id or (d.get("metadata") or {}).get("candidate_id")
    structure = _structure(elph.get("structure")) or _structure((gate.get("scf") or {}).get("structure")) \
        or (rec.get_structure() if rec and rec.structure else None)
    if elph:
        row.state = "done"
        row.formula = elph.get("formula_pretty") or row.formula
        row.lambda_, row.omega_log_K, row.tc_K = elph.get("lambda_"), elph.get("omega_log_K"), elph.get("tc_K")
        row.dynamically_stable = elph.get("dynamically_stable")
        row.min_frequency_cm1 = elph.get("min_frequency_cm1")
    elif gate and (gate.get("epc_allowed") is False or gate.get("stable") is False):
        row.state = "EPC skipped"
        row.note = str(gate.get("reason") or "unstable at the stability gate")
    elif failed or (dft_row and str(dft_row.get("note", "")).startswith("DFT failed")):
        row.state = "failed"
        row.note = str(dft_row.get("note") or "a job of this candidate failed")
    elif docs:
        row.state = "running"
    if gate and not elph:  # the gate's verdict is the only phonon information there is
        row.dynamically_stable = gate.get("stable")
        row.min_frequency_cm1 = gate.get("min_frequency_cm1")
    row.e_form_eV_per_atom = hull.get("e_form_eV_per_atom")
    row.e_above_hull_eV_per_atom = hull.get("e_above_hull_eV_per_atom")
    row.gap_dft_eV = _gap(docs, dft_row)
    row.spacegroup = spacegroup_label(structure)
    row.novelty = novelty_label(structure, training_index)
    for d in docs:
        if doc_kind(d) in ("elph", "pw", "ph-q", "gate"):
            cpu, _, measured = qe_cpu_seconds(d)
            row.cpu_s += cpu
            row.n_cpu_docs += 1
            row.n_cpu_measured += measured
    return row


# ------------------------------------------------------------------------------------------
# collecting a run
# ------------------------------------------------------------------------------------------
@dataclass
class CampaignData:
    """Everything the report shows, collected from a run folder and a job store."""

    root: Path
    manifest: dict
    generated: list[CandidateRecord]
    screened: list[CandidateRecord]
    rows: list[CampaignRow]
    skipped: list[dict] = field(default_factory=list)
    run_docs: list[dict] = field(default_factory=list)
    finalized: bool = False
    funnel_file: dict = field(default_factory=dict)
    store_note: str = ""

    @property
    def n_pending(self) -> int:
        return sum(r.state in ("running", "waiting") for r in self.rows)


def dft_candidate_ids(screened: Sequence[CandidateRecord], dft_rows: Sequence[Mapping],
                      tagged_ids: Iterable[str], top_k: int | None = None,
                      ) -> tuple[list[str], list[dict]]:
    """Ids sent to DFT, in rank order, and the rows skipped for a missing pseudopotential.

    After the finalize job: those of ``dft.json``. Before: the screen's ``selected`` survivors
    plus any record id the store holds DFT documents of (the DFT stage gives a survivor's slot
    to the next one when a pseudopotential is missing; that one shows up with its first job);
    with the run's ``top_k`` (run.json) the ``top_k`` best-ranked survivors, as the DFT stage
    picks them (a screen without its own top-k marks every survivor selected).
    """
    if dft_rows:
        sent = [r["id"] for r in dft_rows if not str(r.get("note", "")).startswith("skipped")]
        return sent, [dict(r) for r in dft_rows if str(r.get("note", "")).startswith("skipped")]
    ranked = sorted((r for r in screened if r.passed),
                    key=lambda r: (r.rank is None, r.rank or 0, r.id))
    ids = [r.id for r in ranked][:top_k] if top_k else [r.id for r in ranked if r.selected]
    tagged = set(tagged_ids)
    ids += [r.id for r in ranked if r.id in tagged and r.id not in ids]
    return ids, []


def fetch_docs(job_store: Any, criteria: dict) -> list[dict]:
    """Output documents (metadata, hosts, output) of a connected jobflow ``JobStore``."""
    props = ["uuid", "index", "name", "metadata", "hosts", "completed_at", "output"]
    return list(job_store.query(criteria=criteria, properties=props))


def collect_campaign(run_dir: str | Path, job_store: Any = None,
                     failed_ids: Iterable[str] = (), training_index: Any = None) -> CampaignData:
    """Rows, records and run-wide documents of a run folder; ``job_store`` (a connected
    jobflow ``JobStore``, None: the folder alone) supplies the DFT documents."""
    run = RunDir(Path(run_dir))
    if not run.root.is_dir():
        raise InputError(f"{run.root}: no such run folder")
    if not run.candidates.exists():
        raise InputError(f"{run.root}: not a run folder yet (no {run.candidates.name}; the "
                         "generate stage writes it when it finishes)")
    generated = load_records(run.candidates, keep_unreadable=True)
    screened = load_records(run.screened, keep_unreadable=True) if run.screened.exists() else []
    dft_rows = run.read_json(run.dft, default=[])
    by_id = {r.id: r for r in screened}
    cand_docs: list[dict] = []
    run_docs: list[dict] = []
    note = "job store: not read (run folder only)"
    if job_store is not None and screened:
        passed = [r.id for r in screened if r.passed]
        cand_docs = fetch_docs(job_store, {"metadata.record_id": {"$in": passed}}) if passed else []
        manifest_root = run.read_json(run.manifest, default={}).get("flow_uuid") if run.manifest.exists() else None
        if manifest_root:  # record ids repeat between runs of one seed: keep this run's
            cand_docs = [d for d in cand_docs if manifest_root in (d.get("hosts") or [])]
        roots = {manifest_root} if manifest_root else {d["hosts"][-1] for d in cand_docs if d.get("hosts")}
        run_docs = fetch_docs(job_store, {"hosts": {"$in": sorted(roots)}}) if roots else []
        note = f"job store: {len(cand_docs)} candidate documents, {len(run_docs)} documents of the run"
    top_k = (run.read_json(run.manifest, default={}).get("options") or {}).get("top_k") \
        if run.manifest.exists() else None
    ids, skipped = dft_candidate_ids(screened, dft_rows, {(d.get("metadata") or {}).get("record_id")
                                                          for d in cand_docs}, top_k)
    docs_of: dict[str, list[dict]] = {}
    for d in cand_docs:
        docs_of.setdefault((d.get("metadata") or {}).get("record_id"), []).append(d)
    dft_by_id = {r.get("id"): r for r in dft_rows}
    failed = set(failed_ids)
    if training_index is None and ids:
        from sc_inverse.screening.triage import jarvis_sc_index  # JARVIS-SC structures: once

        training_index = jarvis_sc_index()
    rows = [candidate_row(i, by_id.get(i), docs_of.get(i, []), dft_by_id.get(i), i in failed,
                          training_index) for i in ids]
    return CampaignData(
        root=run.root, manifest=run.read_json(run.manifest, default={}) if run.manifest.exists() else {},
        generated=generated, screened=screened, rows=rows, skipped=skipped, run_docs=run_docs,
        finalized=run.dft.exists(), funnel_file=run.read_json(run.funnel, default={}),
        store_note=note,
    )


# ------------------------------------------------------------------------------------------
# funnel, target, CPU
# ------------------------------------------------------------------------------------------
def screen_summary(data: CampaignData) -> dict:
    """The screen job's summary (counts per criterion, timings): from ``funnel.json`` once the
    run is finalized, else from the screen job's stored output."""
    if data.funnel_file.get("screen_summary"):
        return data.funnel_file["screen_summary"]
    for d in data.run_docs:
        out = d.get("output") or {}
        if isinstance(out, Mapping) and isinstance(out.get("summary"), Mapping) \
                and "criteria" in out["summary"]:
            return dict(out["summary"])
    return {}


def _not_a_metal(row: CampaignRow) -> bool:
    return (row.note or "").startswith(GAP_SKIP_NOTE)


def criterion_row(c: Mapping) -> tuple[str, int | None, None]:
    """One screen criterion's funnel row: how many passed of how many it judged (later stages
    judge only the earlier stages' survivors; a criterion judged for none - e.g. the ML gap
    without its model - shows "–", not 0 passes)."""
    mode = "" if c.get("mode", "filter") == "filter" else f", {c['mode']}"
    judged = int(c.get("n_pass") or 0) + int(c.get("n_fail") or 0)
    unjudged = int(c.get("n_not_evaluated") or 0)
    if unjudged and not judged:
        return f"screen: {c['criterion']} not evaluated (0 of {unjudged} records judged){mode}", \
            None, None
    extra = f" (of {judged} judged)" if unjudged else ""
    return f"screen: {c['criterion']} passes{extra}{mode}", c.get("n_pass"), None


def funnel_rows(data: CampaignData) -> list[tuple[str, int | None, int | None]]:
    """``(stage, ours, study)``: generated → valid → the screen's stages → sent to DFT →
    DFT done → T_c > 5 K → dynamically stable → stable & novel. ``ours`` None: not known yet."""
    scr = data.screened
    summary = screen_summary(data)
    screened = bool(scr)
    rows: list[tuple[str, int | None, int | None]] = [
        ("generated", len(data.generated), STUDY_FUNNEL["generated"]),
        ("structurally valid", sum(not r.flags for r in data.generated), None),
    ]
    if screened:
        # valid (no generator flag), not a duplicate, not a training structure/composition
        triaged = sum(set(r.flags) <= {"mlip_not_converged"} for r in scr)
        rows.append(("valid, unique, not in the training set (triage)", triaged, None))
        rows += [criterion_row(c) for c in summary.get("criteria", [])]
    rows.append(("passed ML screen", sum(bool(r.passed) for r in scr) if screened else None,
                 STUDY_FUNNEL["passed ML screen"]))
    done = [r for r in data.rows if r.state == "done"]
    hot = [r for r in done if (r.tc_K or 0.0) > TC_THRESHOLD_K]
    hot_stable = [r for r in hot if r.dynamically_stable]
    if not screened:  # the DFT stage has not chosen its candidates yet
        listed = {r[0] for r in rows}
        return rows + [(k, None, s) for k, s in STUDY_FUNNEL.items() if k not in listed]
    rows += [
        ("sent to DFT", len(data.rows), STUDY_FUNNEL["sent to DFT"]),
        ("EPC skipped: not a metal at the gate's scf (DFT gap)",
         sum(r.state == "EPC skipped" and _not_a_metal(r) for r in data.rows), None),
        ("EPC skipped: unstable at the stability gate",
         sum(r.state == "EPC skipped" and not _not_a_metal(r) for r in data.rows), None),
        ("DFT done (EPC)", len(done), STUDY_FUNNEL["DFT done (EPC)"]),
        (f"T_c > {TC_THRESHOLD_K:g} K", len(hot), STUDY_FUNNEL[f"T_c > {TC_THRESHOLD_K:g} K"]),
        (f"dynamically stable, T_c > {TC_THRESHOLD_K:g} K", len(hot_stable), None),
        ("dynamically stable & novel", sum(r.novelty == "novel" for r in hot_stable),
         STUDY_FUNNEL["dynamically stable & novel"]),
    ]
    return rows


def target_check(rows: Sequence[CampaignRow]) -> str:
    """Issue 11's target (≥ 30 % of the candidates sent to EPC dynamically stable with
    T_c > 5 K) on the EPC runs so far, and whether the pending ones can still change it."""
    epc = [r for r in rows if r.state in ("done", "running", "waiting")]
    done = [r for r in epc if r.state == "done"]
    good = sum(r.stable_hot for r in done)
    pending = len(epc) - len(done)
    if not epc:
        return "no candidate has been sent to EPC yet: the target cannot be judged."
    frac = good / len(done) if done else None
    best = (good + pending) / len(epc)
    worst = good / len(epc)
    head = (f"{good} of {len(done)} completed EPC runs are dynamically stable with "
            f"T_c > {TC_THRESHOLD_K:g} K" + (f" ({100 * frac:.0f} %)" if frac is not None else "")
            + f"; {pending} EPC run(s) pending. Target ≥ {100 * TARGET_FRACTION:.0f} % "
            f"(study: 20 of 62 = 32 %): ")
    if worst >= TARGET_FRACTION:
        return head + "**met**."
    if best < TARGET_FRACTION:
        return head + "**not met** (not reachable even if every pending run succeeds)."
    return head + (f"open — between {100 * worst:.0f} % and {100 * best:.0f} % once the pending "
                   "runs finish.")


def _doc_named(docs: Sequence[Mapping], name: str) -> dict | None:
    return _latest(d for d in docs if str(d.get("name") or "") == name)


def cpu_rows(data: CampaignData) -> list[tuple[str, float | None, float | None, str]]:
    """``(stage, cpu_s, wall_s, source)`` for generate, screen, the elemental references and
    the DFT candidates (per candidate and total)."""
    rows: list[tuple[str, float | None, float | None, str]] = []
    timings = data.funnel_file.get("timings_s", {})
    gen = (_doc_named(data.run_docs, "generate candidates") or {}).get("output") or {}
    if gen.get("cpu_time_s") is not None:
        rows.append(("generate", gen["cpu_time_s"], gen.get("wall_time_s"), "process CPU time of the job"))
    else:
        rows.append(("generate", None, timings.get("generate"),
                     "wall time between run start and candidates (funnel.json)" if "generate" in timings
                     else "not recorded yet"))
    stimes = screen_summary(data).get("timings", {})
    if stimes.get("cpu_total_s") is not None:
        rows.append(("screen (ML + MLIP)", stimes["cpu_total_s"], stimes.get("total_s"),
                     "process CPU time of the screen"))
    elif stimes.get("total_s") is not None:
        rows.append(("screen (ML + MLIP)", None, stimes["total_s"], "wall time of the screen (summary)"))
    else:
        rows.append(("screen (ML + MLIP)", None, None, "not recorded yet"))
    refs = [d for d in data.run_docs if (d.get("metadata") or {}).get("record_id") is None
            and doc_kind(d) == "pw"]
    ref_cpu, ref_measured = 0.0, 0
    if refs:
        times = [qe_cpu_seconds(d) for d in refs]
        ref_cpu, ref_measured = sum(t[0] for t in times), sum(t[2] for t in times)
        rows.append(("DFT elemental references", ref_cpu, sum(t[1] for t in times),
                     _qe_source(ref_measured, len(refs))))
    started = [r for r in data.rows if r.n_cpu_docs]
    for r in started:
        rows.append((f"DFT {r.id} ({r.formula}, {r.state})", r.cpu_s, None,
                     _qe_source(r.n_cpu_measured, r.n_cpu_docs)))
    if started or refs:
        rows.append(("DFT total so far", sum(r.cpu_s for r in started) + ref_cpu, None,
                     _qe_source(sum(r.n_cpu_measured for r in started) + ref_measured,
                                sum(r.n_cpu_docs for r in started) + len(refs))))
    return rows


def _qe_source(n_measured: int, n_docs: int) -> str:
    """Where a QE CPU number comes from: how many of its documents had their output files."""
    if n_measured == n_docs:
        return f"CPU clocks printed by the QE programs ({n_docs} documents)"
    return (f"CPU clocks of {n_measured} of {n_docs} documents; the others' output folders are "
            "gone: their recorded time (wall unless CPU was recorded)")


# ------------------------------------------------------------------------------------------
# Markdown
# ------------------------------------------------------------------------------------------
def _fmt(v: Any, nd: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def _record_seed(generated: Sequence[CandidateRecord]) -> int | None:
    """The generator seed the records carry, when they all carry one and the same."""
    seeds = {r.provenance.get("seed") for r in generated if r.origin == "generated"}
    return seeds.pop() if len(seeds) == 1 else None


def command_line(manifest: Mapping, run_name: str, screened: Sequence[CandidateRecord],
                 generated: Sequence[CandidateRecord]) -> tuple[str, str]:
    """``(command, where it comes from)``: the manifest's, or one reconstructed from the
    records for runs started before the manifest existed."""
    if manifest.get("command"):
        return " ".join(manifest["command"]), "run.json"
    seed = _record_seed(generated)
    n = sum(r.origin == "generated" for r in generated)
    top = sum(bool(r.selected) for r in screened) if screened else None
    parts = ["sc-inverse submit inverse-design", f"--n {n}"]
    parts += [f"--top {top}"] if top else []
    parts += [f"--seed {seed}"] if seed is not None else []
    parts.append(f"--run-name {run_name}")
    return " ".join(parts), ("reconstructed from the records (no run.json: started before the "
                             "manifest existed); preset and options not recorded")


def render_markdown(data: CampaignData, now: datetime | None = None) -> str:
    """The campaign report (``docs/campaigns/<date>.md``)."""
    now = now or datetime.now(timezone.utc)
    opts = data.manifest.get("options", {})
    cmd, cmd_source = command_line(data.manifest, data.root.name, data.screened, data.generated)
    n_done = sum(r.state == "done" for r in data.rows)
    states = {s: sum(r.state == s for r in data.rows) for s in STATES}
    lines = [
        f"# Discovery campaign `{data.root.name}`", "",
        f"Report built {now.isoformat(timespec='minutes')} from `{data.root}` "
        f"({data.store_note}).", "",
        f"Command ({cmd_source}):", "", "```", cmd, "```", "",
        "| setting | value |", "|---|---|",
        f"| preset | {opts.get('preset') or '–'} |",
        f"| n | {opts.get('n') or sum(r.origin == 'generated' for r in data.generated)} |",
        f"| top | {opts.get('top_k') or '–'} |",
        f"| seed | {_fmt(opts.get('seed') if 'seed' in opts else _record_seed(data.generated))} |",
        f"| code commit at start | {data.manifest.get('code_version') or 'not recorded'} |",
        f"| code commit of this report | {code_version() or 'unknown'} |", "",
        "**State:** " + (
            f"DFT stage not started yet ({len(data.generated)} generated, screen pending)."
            if not data.screened else
            f"{len(data.rows)} candidates sent to DFT: {n_done} done, "
            + ", ".join(f"{v} {k}" for k, v in states.items() if v and k != "done")
            + f"; **{data.n_pending} still pending**"
            + (" (finalize job ran)." if data.finalized else " (finalize job not run yet: numbers are partial).")),
        "",
        "## Table 1 — candidates sent to DFT", "",
        "T_c: Allen–Dynes, μ* = 0.1; novelty vs the JARVIS-SC training set as the screen's triage "
        "judges it, on the DFT-relaxed cell when there is one.", "",
        "| id | formula | space group | λ | ω_log (K) | T_c (K) | ML T_c (K) | dyn. stable "
        "| min freq (cm⁻¹) | E_form (eV/atom) | E_above_hull (eV/atom) | novelty | DFT gap (eV) "
        "| state | QE CPU (min) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(data.rows, key=lambda r: (r.tc_K is None, -(r.tc_K or 0.0))):
        state = r.state + (f": {r.note}" if r.note else "")
        lines.append(
            f"| {r.id} | {r.formula or '–'} | {r.spacegroup or '–'} | {_fmt(r.lambda_, 3)} "
            f"| {_fmt(r.omega_log_K, 1)} | {_fmt(r.tc_K)} | {_fmt(r.ml_tc_K)} "
            f"| {_fmt(r.dynamically_stable)} | {_fmt(r.min_frequency_cm1, 1)} "
            f"| {_fmt(r.e_form_eV_per_atom, 3)} | {_fmt(r.e_above_hull_eV_per_atom, 3)} "
            f"| {r.novelty or '–'} | {_fmt(r.gap_dft_eV)} | {state} "
            f"| {_fmt(r.cpu_s / 60 if r.n_cpu_docs else None, 1)} |")
    if not data.rows:
        lines.append("| – | no candidate sent to DFT yet |" + " |" * 13)
    for s in data.skipped:
        lines.append(f"\nNot sent: {s.get('id')} ({s.get('formula')}) — {s.get('note')}")
    lines += ["", "## Funnel", "", "| stage | this campaign | study (Wines et al. 2023) |", "|---|---|---|"]
    lines += [f"| {k} | {_fmt(v)} | {_fmt(s)} |" for k, v, s in funnel_rows(data)]
    lines += ["", "Target: " + target_check(data.rows), "",
              "## CPU time", "",
              "| stage | CPU (s) | wall (s) | source |", "|---|---|---|---|"]
    lines += [f"| {k} | {_fmt(c, 0)} | {_fmt(w, 0)} | {src} |" for k, c, w, src in cpu_rows(data)]
    lines.append("")
    return "\n".join(lines)
