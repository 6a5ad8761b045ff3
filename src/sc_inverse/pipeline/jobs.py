"""The jobs of the inverse-design flow that are not a concern's own Maker.

generate (CDVAE, optional latent T_c optimisation, symmetry recovery)
  → :func:`collect_candidates` (+ user-supplied structures; writes ``candidates.json``)
  → screen (ALIGNN criteria, CHGNet pre-relaxation, triage, ranking)
  → :func:`dft_stage` (``Response(replace=...)``): for the top-K survivors that the
    pseudopotential library can run, QE elemental references + one :class:`ElectronPhononTcMaker`
    flow (stability gate → EPC only when the gate allows) and one convex-hull job per candidate
    (on the gate's scf, so a candidate stopped at the gate still gets its hull); survivors
    lacking a pseudopotential are recorded as skipped
  → :func:`finalize_run`: ``dft.json`` + ``funnel.json`` in the run folder, then the builders
    on the flow's own job store into that store's ``superconductors``/``thermo`` collections.

Every stage writes its result into the run folder (:mod:`sc_inverse.runs`) as soon as it has it,
so a failure later never loses what was computed. A failed QE candidate does not stop the
others: the finalize job accepts missing outputs.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from jobflow import CURRENT_JOB, Flow, Job, JobConfig, OnMissing, Response, job
from pydantic import TypeAdapter
from pymatgen.core import Structure

from sc_inverse.builders import run_builders
from sc_inverse.metadata import set_categories, tag_candidate
from sc_inverse.pipeline.chemical_space import missing_pseudopotentials
from sc_inverse.pipeline.epc import epc_identity
from sc_inverse.pipeline.funnel import (
    dft_gap_criterion,
    funnel_counts,
    select_for_dft,
    stage_timings,
)
from sc_inverse.qe.categories import qe_category_rules
from sc_inverse.qe.flows import ElectronPhononTcMaker
from sc_inverse.qe.gate import QeStabilityGateMaker
from sc_inverse.qe.jobs import QeScfMaker
from sc_inverse.qe.pseudos import resolve_pseudopotentials
from sc_inverse.qe.rescue import rescue_summary_from_output
from sc_inverse.qe.schemas import GATE_SKIP_NOTE
from sc_inverse.qe.sets import QePreset, get_preset
from sc_inverse.records import CandidateRecord, load_records
from sc_inverse.runs import RunDir
from sc_inverse.screening.jobs import ScreenOutput
from sc_inverse.screening.triage import jarvis_sc_index
from sc_inverse.thermo.jobs import ConvexHullMaker, QeElementalReferenceMaker

logger = logging.getLogger(__name__)

#: k-point length (Å) of the ``test`` preset's fcc-Al phonon grid (8 × 2.81 Å = 22.4 Å, rounded down so Al keeps 8), reused to size
#: the grids of arbitrary candidate cells in the inverse-design flow
TEST_K_LENGTH_A = 22.0


#: validates a stage's records whether jobflow hands them over as models or as their JSON dicts
RECORD_LIST = TypeAdapter(list[CandidateRecord])


def scaled_test_preset(structure: Structure, base: Any = "test") -> QePreset:
    """The ``test`` preset with k/q grids sized for ``structure`` instead of fcc Al (the flow
    calls it for ``--preset test`` only; ``fast``/``paper`` size their grids themselves).

    The fixed 8³/16³/4³ grids of the Al example would be far too dense for a larger generated
    cell; here n_k = ceil(L/a) with L = :data:`TEST_K_LENGTH_A`, la2F and matdyn grids twice
    that, and q the largest divisor of n_k not above ceil(n_k/4) (ph.x needs q | k; a coarse q
    grid keeps ph.x cheap).
    """
    preset = get_preset(base)
    if preset.kpoints_grid is None:  # k from a length or converged: already adapts to the cell
        return preset
    k = tuple(max(1, math.ceil(TEST_K_LENGTH_A / a)) for a in structure.lattice.abc)
    dense = tuple(2 * n for n in k)
    q = tuple(max(d for d in range(1, n + 1) if n % d == 0 and d <= math.ceil(n / 4)) for n in k)
    # same name: energies stay comparable with references of this preset (same functional,
    # cutoffs and pseudopotentials; k grids always differ between cells)
    return preset.with_updates(
        kpoints_grid=k, la2f_kpoints_grid=dense, qpoints_grid=q,
        matdyn_nk=dense,
    )


@job(data=["records"])
def collect_candidates(generated: list[CandidateRecord], run_dir: str,
                       extra: list[CandidateRecord] | None = None) -> dict:
    """Generated + user-supplied records → ``candidates.json``; records go on to screening."""
    records = [r.model_dump(mode="json") for r in RECORD_LIST.validate_python([*generated, *(extra or [])])]
    run = RunDir(Path(run_dir))
    run.write_json(run.candidates, records)
    logger.info("collected %d candidates (%d user-supplied)", len(records), len(extra or []))
    return {"records": records, "n": len(records), "completed_at": time.time()}


def candidate_preset(structure: Structure, preset: str, pseudo_dir: str | None,
                     pseudo_pattern: str | None) -> QePreset:
    """The preset one candidate runs with: the ``test`` grids scaled to its cell, the cutoffs
    of its elements fixed (reads its pseudopotentials: a corrupt file fails here, by name)."""
    base = scaled_test_preset(structure, preset) if preset == "test" else get_preset(preset)
    return resolve_pseudopotentials(structure, base, pseudo_dir, pseudo_pattern)[1]


def reference_preset(preset: str, candidate: QePreset) -> QePreset:
    """The run's preset (grids not scaled to any cell) at a candidate's cutoffs, so that the
    hull compares energies computed alike (:mod:`sc_inverse.thermo.jobs`)."""
    return get_preset(preset).with_updates(
        ecutwfc=candidate.ecutwfc, ecutrho=candidate.ecutrho, cutoffs_from_library=False,
        cutoff_rule=candidate.cutoff_rule, relax_system=candidate.relax_system,
    )


def reference_flow(chosen: list[CandidateRecord], preset: str | QePreset, pseudo_dir: str | None,
                   pseudo_pattern: str | None) -> Flow:
    """QE elemental references of every element of the chosen candidates (for their hulls)."""
    elements = sorted({el.symbol for r in chosen for el in r.get_structure().composition.elements})
    return QeElementalReferenceMaker(
        preset=preset, pseudo_dir=pseudo_dir, pseudo_pattern=pseudo_pattern
    ).make(elements)


def reference_flows(chosen: list[CandidateRecord], presets: dict[str, QePreset], preset: str,
                    pseudo_dir: str | None, pseudo_pattern: str | None) -> dict[str, Flow]:
    """One reference flow per set of cutoffs among the chosen candidates: {candidate id: flow}.

    Candidates whose elements give the same cutoffs share references; an element needed at
    two cutoffs is computed twice (energies at different cutoffs are not comparable).
    """
    groups: dict[tuple, list[CandidateRecord]] = {}
    for rec in chosen:
        p = presets[rec.id]
        groups.setdefault((p.ecutwfc, p.ecutrho), []).append(rec)
    flows = {}
    for recs in groups.values():
        flow = reference_flow(recs, reference_preset(preset, presets[recs[0].id]), pseudo_dir,
                              pseudo_pattern)
        flows.update({r.id: flow for r in recs})
    return flows


def candidate_jobs(rec: CandidateRecord, preset: QePreset, pseudo_dir: str | None,
                   pseudo_pattern: str | None, references: Flow | None,
                   epc_unstable: bool = False) -> tuple[list, Any, Any, str, Any]:
    """One candidate's EPC flow (and hull job when ``references`` are computed), tagged with
    its material id (structure + settings, :func:`~sc_inverse.pipeline.epc.epc_identity`, so a
    structure found again is the same material) and its record id:
    ``(jobs, epc output, hull output or None, material id, gate output or None)``."""
    structure = rec.get_structure()
    mid = epc_identity(structure, preset, pseudo_dir, pseudo_pattern)
    epc = ElectronPhononTcMaker(
        preset=preset, pseudo_dir=pseudo_dir, pseudo_pattern=pseudo_pattern,
        epc_unstable=epc_unstable,
    ).make(structure)
    gate = gate_output(epc)
    sym = rec.symmetry
    tag_candidate(
        epc, mid, origin=rec.origin, predictions=rec.predictions, record_id=rec.id,
        spacegroup_before=sym.spacegroup_before if sym else None,
        spacegroup_after=sym.spacegroup_after if sym else None,
    )
    if references is None:
        return [epc], epc.output, None, mid, gate
    hull = ConvexHullMaker(use_store_references=False).make(
        task_doc=scf_output(epc), references=references.output, entry_id=rec.id
    )
    tag_candidate(hull, mid, origin=rec.origin, predictions=rec.predictions, record_id=rec.id)
    return [epc, hull], epc.output, hull.output, mid, gate


@job
def dft_stage(
    screen_output: Any,
    run_dir: str,
    top_k: int,
    preset: str,
    pseudo_dir: str | None = None,
    pseudo_pattern: str | None = None,
    hull: bool = True,
    build: bool = True,
    started_at: float | None = None,
    collected_at: float | None = None,
    qe_category: str | None = None,
    epc_unstable: bool = False,
) -> Response:
    """Choose the DFT set and replace this job by the QE + hull fan-out and a finalize job.

    ``qe_category``: FireWorks category put on the QE jobs created here (they are born at run
    time, after ``submit`` tagged the static jobs), so a cluster's QE worker picks them up.
    ``epc_unstable``: run the EPC of candidates the stability gate finds unstable too.
    """
    out = ScreenOutput.model_validate(screen_output)
    records = out.records
    run = RunDir(Path(run_dir))
    run.write_json(run.screened, [r.model_dump(mode="json") for r in records])
    screened_at = time.time()
    chosen, skipped = select_for_dft(
        records, top_k,
        lambda r: missing_pseudopotentials(r.get_structure(), pseudo_dir, pseudo_pattern, preset),
    )
    logger.info("DFT stage: %d chosen, %d skipped (no pseudopotential)", len(chosen), len(skipped))
    presets = {r.id: candidate_preset(r.get_structure(), preset, pseudo_dir, pseudo_pattern)
               for r in chosen}
    refs = reference_flows(chosen, presets, preset, pseudo_dir, pseudo_pattern) if hull else {}
    jobs: list[Flow | Job] = list({id(f): f for f in refs.values()}.values())
    epc_outputs, hull_outputs, material_ids, gate_outputs = [], [], [], []
    for rec in chosen:
        cand_jobs, epc_output, hull_output, mid, gate = candidate_jobs(
            rec, presets[rec.id], pseudo_dir, pseudo_pattern, refs.get(rec.id), epc_unstable)
        jobs += cand_jobs
        epc_outputs.append(epc_output)
        hull_outputs.append(hull_output)
        material_ids.append(mid)
        gate_outputs.append(gate)
    fin = finalize_job(
        run_dir, [r.id for r in chosen], epc_outputs, hull_outputs, skipped, build=build,
        timestamps={"start": started_at, "collected": collected_at, "screened": screened_at},
        screen_summary=out.summary, material_ids=material_ids, gate_outputs=gate_outputs,
    )
    jobs.append(fin)
    replacement = Flow(jobs, output=fin.output, name="DFT validation")
    if qe_category:
        set_categories(replacement, qe_category_rules(qe_category))
    return Response(replace=replacement)


def gate_output(epc_flow: Flow):
    """Output of the EPC flow's stability-gate job (None when the flow has no gate)."""
    for j in epc_flow.jobs:
        if isinstance(getattr(j, "maker", None), QeStabilityGateMaker):
            return j.output
    return None


def scf_output(epc_flow: Flow):
    """The scf document the hull compares: the stability gate's scf when the flow has a gate
    (it always runs, also for a candidate the gate stops; normal k grid, the settings of the
    EPC's phonon-grid scf), else the EPC flow's scf job.

    The elph document carries the scf energy too, but its ``input`` is ph.x's, so the hull's
    settings check (functional, cutoffs) must read the scf document.
    """
    gate = gate_output(epc_flow)
    if gate is not None:
        return gate.scf
    for j in epc_flow.jobs:
        if isinstance(getattr(j, "maker", None), QeScfMaker):
            return j.output
    raise ValueError(f"flow {epc_flow.name!r} has no scf job")


def _dump(x: Any) -> dict | None:
    if x is None:
        return None
    return x.model_dump() if hasattr(x, "model_dump") else dict(x)


def _electronic(scf: Any) -> dict[str, float | None]:
    """DFT gap and DOS at E_F of an scf document's ``electronic`` summary (the field the
    electronic-structure work adds to PwTaskDoc; None while a document has none)."""
    el = scf.get("electronic") if isinstance(scf, dict) else getattr(scf, "electronic", None)
    el = _dump(el) if el is not None and not isinstance(el, dict) else el
    return {"gap_dft_eV": (el or {}).get("band_gap_eV"),
            "dos_at_fermi_states_per_eV": (el or {}).get("dos_at_fermi_states_per_eV")}


def _gate_note(gate: dict) -> str:
    """Why the gate stopped the EPC: the softest mode, or its own reason (e.g. not a metal)."""
    if gate.get("min_frequency_cm1") is None:
        return str(gate.get("epc_skipped_reason") or gate.get("reason") or GATE_SKIP_NOTE)
    return (f"{GATE_SKIP_NOTE}: lowest mode {gate['min_frequency_cm1']:.1f} cm⁻¹ at q = "
            f"{gate.get('softest_q_frac')} (reciprocal-lattice units)")


def _gate_fields(gate: dict) -> dict[str, Any]:
    """Row fields of the stability gate: its verdict, lowest mode and why, and the scf's gap."""
    return {"gate_stable": gate.get("stable"),
            "gate_min_frequency_cm1": gate.get("min_frequency_cm1"),
            "gate_reason": gate.get("reason"),
            **_electronic(gate.get("scf") or {})}


def dft_row(rec: CandidateRecord | None, rid: str, epc: dict | None, hull: dict | None,
            mid: str | None = None, gate: dict | None = None) -> dict:
    """One Table-1 row: DFT T_c quantities, hull energies and the symmetry of the candidate
    (``mid``: its material id in the ``superconductors``/``thermo`` collections).

    ``gate``: the stability gate's document (verdict, gap). A candidate the gate stopped has
    the gate's document as its EPC output: dynamically unstable, no T_c, and a note saying why
    the EPC did not run (its hull is still there)."""
    sym = rec.symmetry if rec else None
    row: dict[str, Any] = {
        "id": rid,
        "material_id": mid,
        "formula": rec.formula if rec else None,
        "spacegroup_before": sym.spacegroup_before if sym else None,
        "spacegroup_after": sym.spacegroup_after if sym else None,
        "ml_tc_K": rec.predictions.get("tc_K") if rec else None,
    }
    rescue = rescue_summary_from_output(epc) if epc is not None else None
    if rescue is not None:  # the gate stopped it and the soft-mode rescue ran
        row.update(rescue)
        if rescue["rescued"]:  # the row is the kept child's, a material of its own
            row.update({"material_id": epc.get("child_id"), "parent_material_id": mid,
                        "spacegroup_after": epc.get("spacegroup")})
        epc = epc.get("final") or None
    if epc is not None and epc.get("calc_type") == "stability-gate":
        gate = epc
    if gate:
        row.update(_gate_fields(gate))
    if epc is None:
        row["note"] = "DFT failed (see the job store / run folder for the error)"
    elif epc.get("calc_type") == "stability-gate":
        row.update({"lambda_": None, "omega_log_K": None, "tc_K": None, "tc_mcmillan_K": None,
                    "dynamically_stable": epc.get("stable"),
                    "min_frequency_cm1": epc.get("min_frequency_cm1"),
                    "dir_name": epc.get("dir_name"), "epc_run": False,
                    "note": _gate_note(epc)})
        row["formula"] = epc.get("formula_pretty") or row["formula"]
    else:
        row.update({k: epc.get(k) for k in ("lambda_", "omega_log_K", "tc_K", "tc_mcmillan_K",
                                            "dynamically_stable", "min_frequency_cm1",
                                            "dir_name")})
        row["epc_run"] = True
        row["formula"] = epc.get("formula_pretty") or row["formula"]
    if hull:
        row["e_form_eV_per_atom"] = hull.get("e_form_eV_per_atom")
        row["e_above_hull_eV_per_atom"] = hull.get("e_above_hull_eV_per_atom")
        row["e_phase_separation_eV_per_atom"] = hull.get("e_phase_separation_eV_per_atom")
        if rescue is not None and rescue["rescue_energy_gain_eV_per_atom"] is not None:
            _shift_hull_to_child(row, rescue["rescue_energy_gain_eV_per_atom"])
    return row


def _shift_hull_to_child(row: dict, gain_eV_per_atom: float) -> None:
    """The hull job compared the parent's gate scf; the kept child has the same composition
    and is lower by ``gain``, so its formation and phase-separation energies are the parent's
    minus ``gain`` exactly (same references), and its energy above the hull is the positive
    part of the latter (the k grids of parent and child differ; docs/rescue.md)."""
    for key in ("e_form_eV_per_atom", "e_phase_separation_eV_per_atom"):
        if row.get(key) is not None:
            row[key] -= gain_eV_per_atom
    if row.get("e_phase_separation_eV_per_atom") is not None:
        row["e_above_hull_eV_per_atom"] = max(row["e_phase_separation_eV_per_atom"], 0.0)
    row["hull_note"] = "child's hull: the parent's hull energies shifted by the rescue's energy gain"


@job
def finalize_run(
    run_dir: str,
    ids: list[str],
    epc_outputs: list,
    hull_outputs: list,
    skipped: list[dict],
    build: bool = True,
    timestamps: dict | None = None,
    screen_summary: dict | None = None,
    material_ids: list[str] | None = None,
    gate_outputs: list | None = None,
) -> dict:
    """Write ``dft.json`` and ``funnel.json``, then run the builders on this job's store.

    The paper's gap criterion is evaluated from each DFT row's scf gap
    (:func:`~sc_inverse.pipeline.funnel.dft_gap_criterion`, ``funnel["dft_criteria"]``); it
    enters the counts when the screen could not evaluate it (no ML gap model).

    The builders read the flow's task documents from the job store the job runs with
    (``expose_store``) and write that store's own ``superconductors``/``thermo`` collections
    (:func:`~sc_inverse.stores.collection_store`), so ``run`` prints what was built; settings
    are not re-read here (a relative ``data_dir`` would resolve inside this job's folder).
    """
    run = RunDir(Path(run_dir))
    screened = {r.id: r for r in load_records(run.screened)}
    generated = load_records(run.candidates)
    mids = material_ids or [None] * len(ids)
    gates = gate_outputs or [None] * len(ids)
    rows = [dft_row(screened.get(i), i, _dump(e), _dump(h), m, _dump(g))
            for i, e, h, m, g in zip(ids, epc_outputs, hull_outputs, mids, gates, strict=True)]
    rows += skipped
    gap = dft_gap_criterion(rows, screen_summary)  # adds each row's gap_verdict
    run.write_json(run.dft, rows)
    # "novel" as the screen's triage defines it: no composition of the packaged JARVIS-SC set
    training_formulas = set(jarvis_sc_index().by_formula)
    timings = stage_timings(timestamps or {}, time.time())
    funnel = {
        "counts": funnel_counts(generated, list(screened.values()), rows, training_formulas,
                                gap["threshold_eV"] if gap["applied"] else None),
        "timings_s": timings,
        "screen_summary": screen_summary or {},
        "dft_criteria": [gap],
    }
    run.write_json(run.funnel, funnel)
    builders = run_builders(CURRENT_JOB.store) if build else {}
    return {"run_dir": run_dir, "funnel": funnel["counts"], "timings_s": timings,
            "dft": rows, "builders": builders}


def finalize_job(*args, **kwargs) -> Job:
    """The :func:`finalize_run` job as the flow runs it: it accepts missing outputs (a failed
    QE candidate must not stop the report) and is handed the flow's job store, whose
    collections its builders write."""
    fin = finalize_run(*args, **kwargs)
    fin.config = JobConfig(on_missing_references=OnMissing.NONE, expose_store=True)
    return fin
