"""Soft-mode rescue in the DFT flow (``sc_inverse.qe.rescue``): the gate's modes as softmodes'
PhononMode, the decisions (rounds, atom cap, energy gain), replay on the recorded bcc-Zr gate
run, and a real-QE rescue of bcc Zr (slow)."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from jobflow import Flow, Maker, Response, job
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from qe_testutils import have_qe, requires_qe
from test_gate import ZR_PRESET, _gate_doc, bcc_zr

from sc_inverse.pipeline.epc import epc_summary
from sc_inverse.pipeline.jobs import dft_row
from sc_inverse.qe.gate import GATED_UUID_NAMESPACE, QeGatedElphMaker
from sc_inverse.qe.jobs import QeScfMaker
from sc_inverse.qe.rescue import (
    RESCUE_CALC_TYPE,
    QeSoftModeRescueMaker,
    SoftModeRescueDoc,
    child_kpoint_preset,
    gate_phonon_modes,
    plan_rescue,
    rescue_summary_job,
)
from sc_inverse.softmodes import modulated_structure


@pytest.fixture(scope="module")
def zr_gate():
    return _gate_doc("zr_bcc", ZR_PRESET)


def test_gate_modes_become_phonon_modes(zr_gate):
    modes = gate_phonon_modes(zr_gate)
    assert len(modes) == len(zr_gate.unstable_modes) > 0
    for m, g in zip(modes, zr_gate.unstable_modes, strict=True):
        assert m.q_frac == tuple(g.q_frac) and m.frequency_cm1 == g.frequency_cm1 and m.unstable
        assert m.displacements.shape == (1, 3)
        assert m.displacements.real == pytest.approx(np.array(g.displacements_re))
        assert m.displacements.imag == pytest.approx(np.array(g.displacements_im))


def test_zr_n_point_mode_frozen_in_is_the_burgers_shuffle(zr_gate):
    """The N-point mode in the 2-atom cell: the two atoms (neighbouring (110) planes) move by
    the same amount in opposite directions along <1-10> ⟂ q - the shuffle of the bcc → hcp
    (Burgers) path. The lattice-vector phase exp(iπ) = -1 of the second cell does it."""
    plan = plan_rescue(zr_gate, rounds_left=1)
    assert plan.mode is not None and plan.n_atoms == 2 and sorted(plan.dims) == [1, 1, 2]
    child = modulated_structure(zr_gate.structure, plan.mode, 0.2, max_n=2)
    d = _displacements(zr_gate.structure, child, plan.dims)
    assert np.linalg.norm(d, axis=1) == pytest.approx([0.2, 0.2], abs=1e-9)
    assert d[0] == pytest.approx(-d[1], abs=1e-9)
    direction = d[0] / np.linalg.norm(d[0])
    assert sorted(abs(direction)) == pytest.approx([0, 1 / math.sqrt(2), 1 / math.sqrt(2)], abs=1e-4)
    q = np.asarray(plan.mode.q_frac) @ zr_gate.structure.lattice.reciprocal_lattice.matrix
    assert abs(direction @ q) < 1e-8
    sg = SpacegroupAnalyzer(child, symprec=1e-3).get_space_group_number()
    assert sg == 63  # Cmcm: the common subgroup of bcc and hcp along the Burgers path


def _displacements(parent: Structure, child: Structure, dims) -> np.ndarray:
    """Cartesian displacement of each child site from the ideal supercell site (same order)."""
    n = len(parent)
    cells = [(i, j, k) for i in range(dims[0]) for j in range(dims[1]) for k in range(dims[2])]
    ideal = np.array([parent.lattice.get_cartesian_coords(parent.frac_coords[a] + np.array(c))
                      for c in cells for a in range(n)])
    return child.cart_coords - ideal


def test_plan_rescue_decisions(zr_gate):
    assert plan_rescue(zr_gate, 0).reason == "no soft-mode rescue rounds left"
    capped = plan_rescue(zr_gate, 1, max_atoms=1)
    assert capped.mode is None and capped.n_atoms == 2 and "rescue cap" in capped.reason
    stable = zr_gate.model_copy(update={"stable": True})
    assert plan_rescue(stable, 1).mode is None
    no_energy = zr_gate.model_copy(update={"energy_per_atom_eV": None})
    assert "energy" in plan_rescue(no_energy, 1).reason
    incommensurate = zr_gate.model_copy(update={"unstable_modes": [
        m.model_copy(update={"q_frac": [0.25, 0, 0]}) for m in zr_gate.unstable_modes]})
    assert "commensurate" in plan_rescue(incommensurate, 1).reason


def test_child_kpoint_preset_keeps_the_parents_density(zr_gate):
    child = child_kpoint_preset(ZR_PRESET, zr_gate.structure, [8, 8, 8])
    assert child.kpoints_grid is None and child.qpoints_grid is None
    sc = zr_gate.structure.copy()
    sc.make_supercell((1, 1, 2))
    from sc_inverse.qe.kpoints import mesh_from_length
    assert mesh_from_length(zr_gate.structure, child.kpoint_length_A) == (8, 8, 8)
    assert mesh_from_length(sc, child.kpoint_length_A) == (8, 8, 4)
    assert child_kpoint_preset(ZR_PRESET.with_updates(kpoints_grid=None, kpoint_length_A=18.0),
                               zr_gate.structure, [6, 6, 6]).kpoint_length_A == 18.0


def _gated(rounds=1, **kw) -> QeGatedElphMaker:
    return QeGatedElphMaker(scf_maker=QeScfMaker(preset=ZR_PRESET),
                            rescue_maker=QeSoftModeRescueMaker(preset=ZR_PRESET, rounds=rounds), **kw)


def _tagged_run(maker: QeGatedElphMaker, gate, structure, candidate_id="Zr-229-parent"):
    """Run ``maker``'s job function as jobflow would (CURRENT_JOB set, metadata tagged)."""
    from jobflow import CURRENT_JOB

    j = maker.make(gate, structure)
    j.update_metadata({"candidate_id": candidate_id, "origin": "user", "predictions": {"tc_K": 3.0}})
    CURRENT_JOB.job = j
    try:
        return j, maker.make.original(maker, gate, structure)
    finally:
        CURRENT_JOB.job = None


def test_unstable_parent_is_replaced_by_the_child_subflow(zr_gate):
    parent_job, resp = _tagged_run(_gated(), zr_gate, bcc_zr())
    assert isinstance(resp, Response) and isinstance(resp.replace, Flow)
    relax, gate, child = resp.replace.jobs
    assert [relax.name, gate.name, child.name] == [
        "qe vc-relax (rescue child)", "qe stability gate (rescue child)", "qe epc (rescue child)"]
    trial = relax.function_args[0]
    assert len(trial) == 2 and trial.composition.reduced_formula == "Zr"
    assert relax.maker.preset.kpoints_grid is None and relax.maker.preset.kpoint_length_A > 0
    child_id = relax.metadata["candidate_id"]
    assert child_id != "Zr-229-parent" and child_id.startswith("Zr-63-")
    for j in (relax, gate, child):
        assert j.metadata["candidate_id"] == child_id and j.metadata["origin"] == "rescue"
        assert j.metadata["parent_id"] == "Zr-229-parent" and j.metadata["predictions"] == {}
    # jobflow re-applies the running job's dynamic metadata updates to the new jobs: they now
    # carry the child's identity, not the parent's
    assert relax.uuid == str(uuid.uuid5(GATED_UUID_NAMESPACE,  # a re-run finds the child
                                        f"{parent_job.uuid}/rescue/{child_id}/{relax.name}"))
    # every reference points at the uuid its job runs with (seeded before being referenced)
    uuids = {j.uuid for j in (relax, gate, child)}
    assert {r.uuid for r in gate.input_references} == {relax.uuid}
    assert {r.uuid for r in child.input_references} <= uuids
    upd = parent_job.metadata_updates[-1]["update"]
    assert upd["candidate_id"] == child_id and upd["parent_id"] == "Zr-229-parent"
    ctx = child.maker.rescue_maker.trial
    assert child.maker.rescue_maker.rounds == 0 and ctx["round"] == 1
    assert ctx["steps"][0]["amplitude_A"] == 0.2 and ctx["steps"][0]["n_atoms"] == 2
    assert ctx["parent_energy_per_atom_eV"] == pytest.approx(zr_gate.energy_per_atom_eV)


def test_no_rescue_when_off_capped_or_forced(zr_gate):
    assert _gated(rounds=0).make.original(_gated(rounds=0), zr_gate, bcc_zr()) is zr_gate
    capped = QeGatedElphMaker(rescue_maker=QeSoftModeRescueMaker(preset=ZR_PRESET, max_atoms=1))
    assert capped.make.original(capped, zr_gate, bcc_zr()) is zr_gate
    forced = _gated(epc_unstable=True)  # --epc-unstable: the parent's EPC, no rescue
    resp = forced.make.original(forced, zr_gate, bcc_zr())
    assert [j.name for j in resp.replace.jobs] == ["qe scf", "qe elph"]


def _child_gate(zr_gate, child: Structure, gain_eV: float, stable: bool | None):
    return zr_gate.model_copy(update={
        "structure": child, "formula_pretty": "Zr", "nsites": len(child), "stable": stable,
        "epc_allowed": stable is not False, "min_frequency_cm1": 50.0 if stable else -40.0,
        "energy_per_atom_eV": zr_gate.energy_per_atom_eV - gain_eV,
        "unstable_modes": [] if stable else [m.model_copy(update={
            "q_frac": [0.5, 0, 0], "displacements_re": m.displacements_re * len(child),
            "displacements_im": m.displacements_im * len(child)}) for m in zr_gate.unstable_modes]})


def _judge(zr_gate, gain_eV, stable, rounds=1):
    _, resp = _tagged_run(_gated(rounds=rounds), zr_gate, bcc_zr())
    child_job = resp.replace.jobs[2]
    trial = resp.replace.jobs[0].function_args[0]
    maker = child_job.maker
    _, out = _tagged_run(maker, _child_gate(zr_gate, trial, gain_eV, stable), trial,
                         candidate_id=child_job.metadata["candidate_id"])
    return child_job, out


def test_child_not_lower_ends_the_branch_with_the_parent(zr_gate):
    child_job, out = _judge(zr_gate, gain_eV=0.5e-3, stable=True)
    assert isinstance(out, SoftModeRescueDoc) and out.calc_type == RESCUE_CALC_TYPE
    assert not out.rescued and out.child_id is None and out.rescued_from is None
    assert "lowered the energy by more than 1.0 meV/atom" in out.reason and "+0.5" in out.reason
    (step,) = out.rescue_steps
    assert step["verdict"] == "not_lower" and step["child_id"] is None
    assert step["trial_id"] == child_job.metadata["candidate_id"]
    assert out.final["calc_type"] == "stability-gate" and out.final["stable"] is False
    row = dft_row(None, "zr", out.model_dump(), None, "Zr-229-parent")
    assert row["dynamically_stable"] is False and row["epc_run"] is False
    assert row["rescued"] is False and "lowered the energy" in row["rescue_reason"]
    assert row["material_id"] == "Zr-229-parent"
    summary = epc_summary(out)  # what `sc-inverse epc` writes
    assert summary["epc_run"] is False and summary["dynamically_stable"] is False
    assert summary["soft_mode_rescue"]["rescued"] is False


def test_lower_stable_child_gets_the_epc_and_a_summary(zr_gate):
    child_job, resp = _judge(zr_gate, gain_eV=0.05, stable=True)
    epc, summary = resp.replace.jobs
    assert epc.name == "qe epc (rescue child) (rescued child)" and epc.maker.rescue_maker is None
    ctx = summary.function_args[1]
    assert ctx["child_id"] == child_job.metadata["candidate_id"]
    assert ctx["steps"][-1]["verdict"] == "stable"
    elph = {"calc_type": "elph", "formula_pretty": "Zr", "structure": epc.function_args[1],
            "lambda_": 0.4, "omega_log_K": 150.0, "tc_K": 2.0, "tc_mcmillan_K": 1.5,
            "dynamically_stable": True, "min_frequency_cm1": 60.0, "a2f": {"big": [0.0] * 10}}
    out = rescue_summary_job.original(elph, *summary.function_args[1:])
    assert isinstance(out, SoftModeRescueDoc) and out.rescued
    assert out.rescued_from == "Zr-229-parent" and out.child_id == ctx["child_id"]
    assert out.energy_gain_eV_per_atom == pytest.approx(0.05)
    assert "a2f" not in out.final and out.final["tc_K"] == 2.0
    row = dft_row(None, "zr", out.model_dump(), {"e_form_eV_per_atom": 0.0,
                                                 "e_above_hull_eV_per_atom": 0.0,
                                                 "e_phase_separation_eV_per_atom": 0.02},
                  "Zr-229-parent")
    assert row["tc_K"] == 2.0 and row["epc_run"] and row["dynamically_stable"] is True
    assert row["material_id"] == ctx["child_id"] and row["rescued_from"] == "Zr-229-parent"
    assert row["e_form_eV_per_atom"] == pytest.approx(-0.05)
    assert row["e_phase_separation_eV_per_atom"] == pytest.approx(-0.03)
    assert row["e_above_hull_eV_per_atom"] == 0.0
    assert row["spacegroup_after"] == out.spacegroup


def test_lower_unstable_child_without_rounds_is_kept_and_reported(zr_gate):
    _, out = _judge(zr_gate, gain_eV=0.01, stable=False)
    assert isinstance(out, SoftModeRescueDoc) and out.rescued
    assert "still unstable" in out.reason and out.rescue_steps[-1]["verdict"] == "unstable"
    assert out.final["stable"] is False and out.structure is not None


def test_lower_unstable_child_with_rounds_left_starts_round_two(zr_gate):
    child_job, resp = _judge(zr_gate, gain_eV=0.01, stable=False, rounds=2)
    relax, _, grandchild = resp.replace.jobs
    ctx = grandchild.maker.rescue_maker.trial
    assert ctx["round"] == 2 and ctx["parent_id"] == child_job.metadata["candidate_id"]
    assert ctx["root_id"] == "Zr-229-parent" and len(relax.function_args[0]) == 4
    assert relax.metadata["parent_id"] == child_job.metadata["candidate_id"]


# --------------------------------------------------------------------------------------------
# real QE (slow): bcc Zr → child along the N-point mode
# --------------------------------------------------------------------------------------------
@dataclass
class _NoScf(Maker):
    """Stands in for the la2F scf of the child's EPC (the test stops at the child's gate)."""

    name: str = "qe scf"
    preset: Any = None

    @job
    def make(self, structure, kpoints_grid=None, kpoint_length_A=None):
        return {"outdir": None, "prefix": "pwscf", "input": {"kpoints_grid": [1, 1, 1]},
                "structure": structure, "energy_eV": None}


@dataclass
class _NoElph(Maker):
    name: str = "qe elph"
    preset: Any = None

    @job
    def make(self, scf_outdir, prefix="pwscf", kpoints_grid=None, qpoints_grid=None,
             structure=None, energy_eV=None):
        return {"calc_type": "elph", "formula_pretty": structure.composition.reduced_formula,
                "structure": structure, "lambda_": None, "tc_K": None, "dynamically_stable": None}


@requires_qe
@pytest.mark.qe
@pytest.mark.slow
@pytest.mark.skipif(not have_qe("pw.x"), reason="QE missing")
def test_real_qe_zr_rescued_along_the_n_point_mode(tmp_path, monkeypatch):
    """bcc Zr (vc-relaxed, gate unstable at N) → N-point shuffle frozen in (2 atoms, 0.2 Å) →
    vc-relax → gate: the child is 44 meV/atom lower, kept and recorded with its parent; after
    one round it is still (less) unstable (measured numbers in docs/rescue.md; ≈ 35 min wall
    on a loaded core). The child's EPC is replaced by stubs (cost)."""
    from jobflow import JobStore
    from maggma.stores import MemoryStore

    from sc_inverse.pipeline.epc import run_epc
    from sc_inverse.qe.pslibrary import default_library_dir
    from sc_inverse.settings import get_settings

    lib = get_settings().pseudo_dir or default_library_dir("pbesol", "standard")
    if lib is None or not any(lib.glob("Zr.pbesol-*.UPF")):
        pytest.skip("PBEsol library with Zr not found (set SC_INVERSE_PSEUDO_DIR)")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    preset = ZR_PRESET.with_updates(pseudo_dir=str(lib), la2f_kpoints_grid=None, relax=True)
    store = JobStore(MemoryStore(), additional_stores={"data": MemoryStore()})
    out = run_epc(bcc_zr(), tmp_path, store=store, build=False, preset=preset,
                  stability_gate=True, rescue_rounds=1, scf_maker=_NoScf(), elph_maker=_NoElph())
    out = out if isinstance(out, dict) else out.model_dump()
    assert out["calc_type"] == RESCUE_CALC_TYPE
    store.connect()
    docs = list(store.query({}, properties=["uuid", "name", "metadata", "output"]))
    gates = {d["metadata"]["candidate_id"]: d["output"] for d in docs
             if (d.get("output") or {}).get("calc_type") == "stability-gate"}
    parent_id, = [k for k, v in gates.items() if v["nsites"] == 1]
    (child_id,) = [k for k in gates if k != parent_id]
    parent, child = gates[parent_id], gates[child_id]
    print("rescue:", {k: out[k] for k in ("rescued", "reason", "parent_energy_per_atom_eV",
                                          "child_energy_per_atom_eV", "energy_gain_eV_per_atom",
                                          "spacegroup")},
          "parent min", parent["min_frequency_cm1"], "child min", child["min_frequency_cm1"],
          "child sg", out["spacegroup"], "steps", out["rescue_steps"])
    assert parent["stable"] is False and parent["min_frequency_cm1"] < -50
    assert out["parent_id"] == parent_id and out["rescue_steps"][0]["parent_id"] == parent_id
    relax_docs = [d for d in docs if d["name"] == "qe vc-relax (rescue child)"]
    assert relax_docs and relax_docs[0]["metadata"]["parent_id"] == parent_id
    assert out["rescued"] is True, out["reason"]
    assert out["child_id"] == child_id and out["rescued_from"] == parent_id
    assert out["energy_gain_eV_per_atom"] > 1e-3
    assert child["energy_per_atom_eV"] < parent["energy_per_atom_eV"] - 1e-3
    # measured: one round stops part-way along the Burgers path (Cmcm), still unstable at one of
    # its 6 gate q points (−54.6 cm⁻¹); hcp needs a second round (docs/rescue.md). Asserted:
    # the child was judged, and its instability is weaker than the parent's
    assert child["stable"] is False and child["min_frequency_cm1"] > parent["min_frequency_cm1"]
    assert child["qpoints_grid"] and child["unstable_modes"], child["reason"]
