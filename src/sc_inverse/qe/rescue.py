"""Soft-mode rescue after the DFT stability gate (issue 11, deliverable 3; docs/rescue.md).

A candidate the gate finds unstable at Γ or at a zone-boundary point of its q grid is a saddle
point: freezing the unstable mode in (supercell ≤ 2 per axis) and relaxing usually lands in a
nearby, lower-symmetry minimum (bcc Zr's N-point mode → the Burgers path towards hcp). Instead
of ending the branch with the gate's document, the gated EPC job hands over to
:class:`QeSoftModeRescueMaker`, which replaces it by the child's sub-flow

    vc-relax (child) → stability gate (child) → gated EPC job (child, rounds − 1)

whose gated EPC job first *judges* the child: kept only if its gate-scf energy per atom is
lower than the parent's by more than :data:`~sc_inverse.softmodes.MIN_ENERGY_GAIN_EV_PER_ATOM`;
a kept child that is stable gets the EPC, one still unstable the next round (if any).

Every branch that went through a rescue ends with a :class:`SoftModeRescueDoc` (``calc_type``
``soft-mode-rescue``): parent and child ids, the :class:`~sc_inverse.softmodes.RescueStep` of
every trial, the energies, and a summary of the final document (the child's elph or gate
document, or the parent's gate document when no child was kept). The builders ignore that
calc_type, so the parent's gate document (parent's material id) and the child's own documents
(child's material id, ``origin = "rescue"``, ``parent_id``) stay two materials.

Phase convention: matdyn.x builds D(q) with phases exp(-i q·R) on lattice vectors R only
(``frc_blk``: ``arg = 2π q·R``, atomic positions enter only the Wigner-Seitz weights), so its
displacement patterns are already in softmodes' lattice-vector convention (no exp(i q·τ)
factor, unlike phonopy). At the gate's q points (components 0 or ½) exp(±i2π q·R) = ±1, so the
sign convention does not matter either.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from jobflow import CURRENT_JOB, Flow, Maker, Response, job
from pydantic import BaseModel, Field
from pymatgen.core import Structure

from sc_inverse.metadata import material_id
from sc_inverse.qe.gate import GATED_UUID_NAMESPACE, QeStabilityGateMaker
from sc_inverse.qe.jobs import QeRelaxMaker
from sc_inverse.qe.kpoints import as_mesh
from sc_inverse.qe.schemas import StabilityGateDoc
from sc_inverse.qe.sets import QePreset, get_preset
from sc_inverse.softmodes import (
    MIN_ENERGY_GAIN_EV_PER_ATOM,
    PhononMode,
    RescueStep,
    commensurate_supercell,
    modulated_structure,
    softest_mode,
)

logger = logging.getLogger(__name__)

#: rescue rounds per candidate in the DFT flow: each round costs a vc-relax and a gate (scf +
#: ph.x) of a cell up to 8× larger, so one round by default (bcc Zr needs one)
DFT_RESCUE_ROUNDS = 1
#: trials per round, tried in order while none is lower (largest atomic displacement, Å; the
#: sign follows the mode). One: each trial is a vc-relax + gate; 0.2 Å is mid-range of the MLIP
#: rescue's 0.1-0.3 Å, well outside pw.x's force tolerance and inside the nearby basin
DFT_RESCUE_AMPLITUDES_A: tuple[float, ...] = (0.2,)
#: largest child cell (atoms): ph.x on the child costs ~N³; 16 keeps the child's EPC far
#: below the 40-atom EPC guard (pipeline.epc.MAX_EPC_ATOMS)
MAX_RESCUE_ATOMS = 16
#: the gate's q points are Γ or zone boundary: a supercell of ≤ 2 per axis freezes any of them
GATE_SUPERCELL_N = 2
#: calc_type of the rescue's summary document (the builders do not read it as a result)
RESCUE_CALC_TYPE = "soft-mode-rescue"
#: metadata keys that say which material a job belongs to (sc_inverse.metadata.tag_candidate)
_IDENTITY_KEYS = ("candidate_id", "origin", "predictions", "parent_id", "rescue_round")


def gate_phonon_modes(gate: StabilityGateDoc) -> list[PhononMode]:
    """The gate's unstable modes as :class:`~sc_inverse.softmodes.PhononMode` (same q_frac,
    frequency and Cartesian pattern; matdyn's phases already follow softmodes' convention)."""
    return [PhononMode(q_frac=tuple(m.q_frac), frequency_cm1=m.frequency_cm1,
                       displacements=np.asarray(m.displacements_re)
                       + 1j * np.asarray(m.displacements_im))
            for m in gate.unstable_modes]


@dataclass(frozen=True)
class RescuePlan:
    """What a rescue round would freeze in, or why it cannot (``mode`` None, ``reason``)."""

    mode: PhononMode | None
    dims: tuple[int, int, int] | None = None
    n_atoms: int | None = None
    reason: str = ""


def plan_rescue(gate: StabilityGateDoc, rounds_left: int,
                max_atoms: int = MAX_RESCUE_ATOMS) -> RescuePlan:
    """Decide whether the gated-out ``gate`` gets a rescue round: rounds left, unstable with
    a known energy, a mode at a commensurate q, a child cell of at most ``max_atoms``."""
    if rounds_left <= 0:
        return RescuePlan(None, reason="no soft-mode rescue rounds left")
    if gate.stable is not False:
        return RescuePlan(None, reason="not unstable at the gate")
    if gate.energy_per_atom_eV is None or gate.structure is None:
        return RescuePlan(None, reason="the gate's scf energy or structure is missing")
    modes = [m for m in gate_phonon_modes(gate) if len(m.displacements) == len(gate.structure)]
    mode = softest_mode(modes, max_n=GATE_SUPERCELL_N)
    if mode is None:
        return RescuePlan(None, reason="no unstable mode at a q commensurate with a 2×2×2 cell")
    dims = commensurate_supercell(mode.q_frac, GATE_SUPERCELL_N)
    n_atoms = len(gate.structure) * int(np.prod(dims))
    if n_atoms > max_atoms:
        return RescuePlan(None, dims, n_atoms,
                          f"child cell of {n_atoms} atoms is above the rescue cap ({max_atoms})")
    return RescuePlan(mode, dims, n_atoms, "")


def child_kpoint_preset(preset: QePreset, parent: Structure, parent_kgrid) -> QePreset:
    """The preset the child runs with: a fixed k grid (``test``) becomes the k-point length of
    the parent's grid (a supercell with the parent's grid would be sampled more densely, and
    the energies compared); a fixed q/la2F grid is dropped for the same reason (q from k, la2F
    twice k). Presets that already use a length are returned unchanged."""
    if preset.kpoints_grid is None:
        return preset
    grid = as_mesh(parent_kgrid or preset.kpoints_grid, "kpoints_grid")
    recip = parent.lattice.reciprocal_lattice_crystallographic.abc
    length = max(n / b for n, b in zip(grid, recip, strict=True))
    return preset.with_updates(kpoints_grid=None, kpoint_length_A=round(length, 3),
                               qpoints_grid=None, la2f_kpoints_grid=None,
                               la2f_kpoints_factor=2 if preset.la2f_kpoints_grid else
                               preset.la2f_kpoints_factor)


def _final_summary(doc: dict) -> dict[str, Any]:
    """The fields of the final (elph or gate) document a run's row reads; big arrays stay in
    the final job's own document."""
    keys = ("calc_type", "formula_pretty", "nsites", "dir_name", "lambda_", "omega_log_K",
            "tc_K", "tc_mcmillan_K", "dynamically_stable", "min_frequency_cm1", "stable",
            "epc_allowed", "epc_skipped_reason", "softest_q_frac", "reason", "energy_per_atom_eV")
    out = {k: doc.get(k) for k in keys if k in doc}
    scf = doc.get("scf")
    if isinstance(scf, dict) and scf.get("electronic") is not None:
        out["scf"] = {"electronic": scf["electronic"]}
    return out


def _spacegroup(structure: Structure | None) -> str | None:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer  # heavy: only when a row is built

    if structure is None:
        return None
    try:
        sga = SpacegroupAnalyzer(structure, symprec=0.01, angle_tolerance=-1)
        return f"{sga.get_space_group_symbol()} ({sga.get_space_group_number()})"
    except Exception:  # noqa: BLE001 - a row without a space group is still a row
        return None


class SoftModeRescueDoc(BaseModel):
    """How a gated-out candidate's soft-mode rescue ended; the output of its EPC branch.

    ``rescued``: a child was kept (lower than its parent by more than
    ``min_energy_gain_eV_per_atom``); then ``final`` summarises the child's last document
    (elph when its gate passed, else its gate) and ``formula_pretty``/``structure``/
    ``spacegroup`` are the child's. Not rescued: ``final`` is the parent's gate document."""

    calc_type: str = RESCUE_CALC_TYPE
    task_label: str = "soft-mode rescue"
    rescued: bool
    reason: str
    parent_id: str = Field(description="Material id of the candidate the gate found unstable.")
    child_id: str | None = Field(None, description="Material id of the kept child (last round).")
    rescued_from: str | None = Field(None, description="= parent_id when a child was kept.")
    rounds: int = 0
    rescue_steps: list[dict] = Field(default_factory=list,
                                     description="softmodes.RescueStep of every trial.")
    parent_energy_per_atom_eV: float | None = None
    child_energy_per_atom_eV: float | None = None
    energy_gain_eV_per_atom: float | None = Field(
        None, description="parent − kept child (gate scf energies, same composition).")
    formula_pretty: str | None = None
    structure: Structure | None = None
    spacegroup: str | None = None
    final: dict = Field(default_factory=dict, description="Row fields of the final document.")

    model_config = {"arbitrary_types_allowed": True}


def _identity_updates(updates: list[dict], child: dict[str, Any]) -> list[dict]:
    """``metadata_updates`` of the running job with the candidate identity replaced by the
    child's: jobflow applies them to every job the response creates (dynamically), which would
    otherwise tag the child's jobs with the parent's material id. New dicts: the originals are
    shared with the parent's other jobs."""
    out = []
    for u in updates:
        upd = u.get("update") or {}
        if "candidate_id" in upd:
            upd = {k: v for k, v in upd.items() if k not in _IDENTITY_KEYS} | child
            u = {**u, "update": upd}
        out.append(u)
    return out


def _parent_id(gate: StabilityGateDoc) -> str:
    md = CURRENT_JOB.job.metadata if CURRENT_JOB.job is not None else {}
    if md.get("candidate_id"):
        return str(md["candidate_id"])
    uid = CURRENT_JOB.job.uuid if CURRENT_JOB.job is not None else "local"
    return f"{gate.formula_pretty}-{uid[:8]}"


@dataclass
class QeSoftModeRescueMaker(Maker):
    """The rescue steps of :class:`~sc_inverse.qe.gate.QeGatedElphMaker` (its ``rescue_maker``).

    Not a job itself: the gated EPC job calls :meth:`respond` first, which returns a
    ``Response``/document to end or replace the job with, or None to go on as without a
    rescue. ``rounds``: rounds left (0 = off); ``trial``: set on the child's gated EPC job
    (parent id, energy and structure, the mode, steps so far), None on a root candidate.
    """

    name: str = "soft-mode rescue"
    preset: str | QePreset | None = None
    pseudo_dir: str | None = None
    pseudo_pattern: str | None = None
    max_seconds: float | None = None
    walltime_s: float | None = None
    rounds: int = DFT_RESCUE_ROUNDS
    amplitudes_A: tuple[float, ...] = DFT_RESCUE_AMPLITUDES_A
    max_atoms: int = MAX_RESCUE_ATOMS
    min_energy_gain_eV_per_atom: float = MIN_ENERGY_GAIN_EV_PER_ATOM
    trial: dict | None = field(default=None, repr=False)

    # -- decisions -------------------------------------------------------------------------
    def respond(self, gated_maker, gate: StabilityGateDoc, structure: Structure, kpoints_grid=None,
                kpoint_length_A: float | None = None):
        """What the gated EPC job does instead of its usual branch, or None for the usual."""
        if self.trial is not None:
            return self._judge_child(gated_maker, gate, structure)
        if gate.epc_allowed or gated_maker.epc_unstable:
            return None
        plan = plan_rescue(gate, self.rounds, self.max_atoms)
        if plan.mode is None:
            logger.info("%s: no soft-mode rescue (%s)", gate.formula_pretty, plan.reason)
            return None
        parent_id = _parent_id(gate)
        context = {"parent_id": parent_id, "root_id": parent_id, "round": 1, "steps": [],
                   "parent_gate": _final_summary(gate.model_dump()),
                   "parent_energy_per_atom_eV": gate.energy_per_atom_eV,
                   "parent_structure": gate.structure.as_dict(), "mode": _mode_dict(plan.mode),
                   "trial_index": 0, "parent_kgrid": gate.scf.input.kpoints_grid}
        return self._child_response(gated_maker, context)

    def _judge_child(self, gated_maker, gate: StabilityGateDoc, structure: Structure):
        """The child's gated EPC job: keep it only if lower than its parent; then EPC (stable),
        the next round (unstable, rounds left) or the end of the rescue."""
        ctx = self.trial
        step = dict(ctx["steps"][-1])
        step["energy_after_eV_per_atom"] = gate.energy_per_atom_eV
        step["child_min_frequency_cm1"] = gate.min_frequency_cm1
        gain = (None if gate.energy_per_atom_eV is None
                else ctx["parent_energy_per_atom_eV"] - gate.energy_per_atom_eV)
        steps = [*ctx["steps"][:-1], step]
        if gain is None or not gain > self.min_energy_gain_eV_per_atom:
            step["verdict"] = "not_lower" if gain is not None else "failed"
            nxt = ctx["trial_index"] + 1
            if nxt < len(self.amplitudes_A):
                return self._child_response(gated_maker, {**ctx, "steps": steps, "trial_index": nxt})
            why = (f"no displacement along the softest mode lowered the energy by more than "
                   f"{self.min_energy_gain_eV_per_atom * 1e3:.1f} meV/atom (best child "
                   f"{gain * 1e3:+.1f} meV/atom)" if gain is not None
                   else "the child's gate has no scf energy")
            kept_before = bool(ctx.get("child_id"))  # a child of an earlier round stays
            return self._summary(ctx, steps, rescued=kept_before, reason=why,
                                 final=ctx.get("kept_final") or ctx["parent_gate"],
                                 structure=Structure.from_dict(ctx["parent_structure"])
                                 if kept_before else None)
        step["child_id"] = step["trial_id"]
        step["verdict"] = {True: "stable", False: "unstable", None: "not_evaluated"}[gate.stable]
        kept = {**ctx, "steps": steps, "child_id": step["child_id"],
                "child_energy_per_atom_eV": gate.energy_per_atom_eV,
                "kept_final": _final_summary(gate.model_dump())}
        plain = dataclasses.replace(gated_maker, rescue_maker=None)
        if gate.stable is False:
            plan = plan_rescue(gate, self.rounds, self.max_atoms)
            if plan.mode is not None:
                nxt_ctx = {**kept, "parent_id": step["child_id"], "round": ctx["round"] + 1,
                           "parent_gate": kept["kept_final"],
                           "parent_energy_per_atom_eV": gate.energy_per_atom_eV,
                           "parent_structure": gate.structure.as_dict(),
                           "mode": _mode_dict(plan.mode), "trial_index": 0,
                           "parent_kgrid": gate.scf.input.kpoints_grid}
                return self._child_response(gated_maker, nxt_ctx)
            why = f"child kept but still unstable ({plan.reason})"
            if gated_maker.epc_unstable:
                return self._epc_then_summary(plain, gate, structure, kept, why)
            return self._summary(kept, steps, rescued=True, reason=why, final=kept["kept_final"],
                                 structure=gate.structure)
        why = "child kept, " + ("stable at its gate: EPC run on it" if gate.stable
                                else "stability undecided: EPC run on it")
        return self._epc_then_summary(plain, gate, structure, kept, why)

    # -- jobs ------------------------------------------------------------------------------
    def _epc_then_summary(self, plain, gate, structure, ctx, why) -> Response:
        """The kept child's EPC (the gated job without rescue) and the summary after it."""
        epc = plain.make(gate, structure, kpoint_length_A=gate.scf.input.kpoint_length_A)
        epc.name = f"{plain.name} (rescued child)"
        summ = rescue_summary_job(epc.output, ctx, why, self.name)
        return Response(replace=Flow([epc, summ], output=summ.output, name=self.name))

    def _summary(self, ctx, steps, rescued, reason, final, structure=None) -> SoftModeRescueDoc:
        return _summary_doc(ctx, steps, rescued, reason, final, structure, self.name)

    def _child_response(self, gated_maker, ctx: dict) -> Response:
        """Replace the running job by the child's vc-relax → gate → gated EPC job."""
        parent_structure = Structure.from_dict(ctx["parent_structure"])
        mode = PhononMode(q_frac=tuple(ctx["mode"]["q_frac"]), frequency_cm1=ctx["mode"]["frequency_cm1"],
                          displacements=np.asarray(ctx["mode"]["re"]) + 1j * np.asarray(ctx["mode"]["im"]))
        amplitude = self.amplitudes_A[ctx["trial_index"]]
        trial = modulated_structure(parent_structure, mode, amplitude, max_n=GATE_SUPERCELL_N)
        trial_id = material_id(trial, {"rescued_from": ctx["parent_id"]})
        step = RescueStep(round=ctx["round"], parent_id=ctx["parent_id"], child_id=None,
                          q_frac=mode.q_frac, frequency_cm1=mode.frequency_cm1,
                          amplitude_A=amplitude,
                          energy_before_eV_per_atom=ctx["parent_energy_per_atom_eV"],
                          n_atoms=len(trial)).as_dict()
        step["trial_id"] = trial_id
        ctx = {**ctx, "steps": [*ctx["steps"], step]}
        preset = child_kpoint_preset(get_preset(self.preset), parent_structure, ctx["parent_kgrid"])
        common = {"preset": preset, "pseudo_dir": self.pseudo_dir,
                  "pseudo_pattern": self.pseudo_pattern, "max_seconds": self.max_seconds,
                  "walltime_s": self.walltime_s}
        # each uuid is fixed before the next job references its output (a reference keeps the
        # uuid it was made with)
        relax = QeRelaxMaker(name="qe vc-relax (rescue child)", **common).make(trial)
        _seed_uuids([relax], trial_id)
        gate = QeStabilityGateMaker(name="qe stability gate (rescue child)", **common).make(
            relax.output.structure_standardized,
            kpoint_length_A=relax.output.input.kpoint_length_A)
        _seed_uuids([gate], trial_id)
        child_rescue = dataclasses.replace(self, rounds=self.rounds - 1, trial=ctx)
        child_gated = dataclasses.replace(
            gated_maker, name="qe epc (rescue child)",
            scf_maker=dataclasses.replace(gated_maker.scf_maker, preset=preset),
            elph_maker=dataclasses.replace(gated_maker.elph_maker, preset=preset),
            rescue_maker=child_rescue,
        ).make(gate.output, relax.output.structure_standardized,
               kpoint_length_A=relax.output.input.kpoint_length_A)
        _seed_uuids([child_gated], trial_id)
        flow = Flow([relax, gate, child_gated], output=child_gated.output,
                    name=f"soft-mode rescue r{ctx['round']} {trial.composition.reduced_formula}")
        identity = {"candidate_id": trial_id, "origin": "rescue", "predictions": {},
                    "parent_id": ctx["parent_id"], "rescue_round": ctx["round"]}
        flow.update_metadata(identity, dynamic=True)
        if CURRENT_JOB.job is not None:
            CURRENT_JOB.job.metadata_updates = _identity_updates(
                CURRENT_JOB.job.metadata_updates, identity)
        logger.info("%s: soft-mode rescue round %d: mode %.1f cm⁻¹ at q = %s frozen in "
                    "(%.2f Å, %d atoms) → %s", parent_structure.composition.reduced_formula,
                    ctx["round"], mode.frequency_cm1, list(mode.q_frac), amplitude, len(trial),
                    trial_id)
        return Response(replace=flow)


def _seed_uuids(jobs, trial_id: str) -> None:
    """uuids derived from the running job's uuid and the trial (as the gated job's scf/elph):
    a re-run of a stored flow finds the child's outputs again."""
    host = CURRENT_JOB.job.uuid if CURRENT_JOB.job is not None else None
    if host is None:
        return
    for j in jobs:
        j.set_uuid(str(uuid.uuid5(GATED_UUID_NAMESPACE, f"{host}/rescue/{trial_id}/{j.name}")))


def _mode_dict(mode: PhononMode) -> dict:
    return {"q_frac": list(mode.q_frac), "frequency_cm1": mode.frequency_cm1,
            "re": mode.displacements.real.tolist(), "im": mode.displacements.imag.tolist()}


def _summary_doc(ctx: dict, steps: list[dict], rescued: bool, reason: str, final: dict,
                 structure: Structure | None, label: str) -> SoftModeRescueDoc:
    child_id = ctx.get("child_id") if rescued else None
    parent_e = ctx["steps"][0]["energy_before_eV_per_atom"] if ctx["steps"] else None
    child_e = ctx.get("child_energy_per_atom_eV") if rescued else None
    return SoftModeRescueDoc(
        task_label=label, rescued=rescued, reason=reason, parent_id=ctx["root_id"],
        child_id=child_id, rescued_from=ctx["root_id"] if rescued else None,
        rounds=max((s["round"] for s in steps), default=0),
        rescue_steps=steps,
        parent_energy_per_atom_eV=parent_e, child_energy_per_atom_eV=child_e,
        energy_gain_eV_per_atom=(parent_e - child_e) if rescued and None not in (parent_e, child_e)
        else None,
        formula_pretty=final.get("formula_pretty"), structure=structure,
        spacegroup=_spacegroup(structure), final=final,
    )


@job
def rescue_summary_job(final_doc, ctx: dict, reason: str, label: str = "soft-mode rescue"):
    """The summary after a kept child's EPC (the EPC's document summarised in ``final``)."""
    doc = final_doc.model_dump() if hasattr(final_doc, "model_dump") else dict(final_doc)
    s = doc.get("structure")
    structure = s if isinstance(s, Structure) else Structure.from_dict(s) if s else None
    return _summary_doc(ctx, ctx["steps"], True, reason, _final_summary(doc), structure, label)


def rescue_summary_from_output(out: dict) -> dict | None:
    """Row fields of a :class:`SoftModeRescueDoc` (as a dict), None for any other document."""
    if not isinstance(out, dict) or out.get("calc_type") != RESCUE_CALC_TYPE:
        return None
    return {"rescued": out.get("rescued"), "rescued_from": out.get("rescued_from"),
            "rescue_child_id": out.get("child_id"), "rescue_reason": out.get("reason"),
            "rescue_steps": out.get("rescue_steps"),
            "rescue_energy_gain_eV_per_atom": out.get("energy_gain_eV_per_atom"),
            "rescue_spacegroup": out.get("spacegroup")}


__all__ = ["DFT_RESCUE_AMPLITUDES_A", "DFT_RESCUE_ROUNDS", "MAX_RESCUE_ATOMS", "RESCUE_CALC_TYPE",
           "QeSoftModeRescueMaker", "RescuePlan", "SoftModeRescueDoc", "child_kpoint_preset",
           "gate_phonon_modes", "plan_rescue", "rescue_summary_from_output"]
