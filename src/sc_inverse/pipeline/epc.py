"""The electron-phonon T_c of one structure, run locally (what ``sc-inverse epc`` does).

A run is identified by its material: :func:`epc_identity` hashes the standardised structure
and the calculation settings (:func:`sc_inverse.metadata.material_id`). The id tags every job
(``metadata.candidate_id``, so the builders keep one row per material), seeds the job uuids
(:func:`with_stable_uuids`, so the job store upserts a re-run's documents over the earlier
ones) and names the work folder ``<workdir>/<material id>/<job name>``. Running the same
structure with the same settings again therefore *continues* in that folder
(:func:`run_epc_flow`): jobs whose output is stored and whose folder is still there are reused,
and an interrupted ph.x restarts at its first unfinished q-point
(:func:`sc_inverse.qe.jobs.run_ph_resuming`). ``fresh=True`` starts over.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from jobflow import Flow, Job, JobStore
from maggma.stores import MemoryStore
from monty.json import MontyDecoder, MontyEncoder
from pymatgen.core import Structure

from sc_inverse.builders.jobs import build_collections
from sc_inverse.errors import CalculationError, InputError
from sc_inverse.metadata import material_id, tag_candidate
from sc_inverse.qe.flows import ElectronPhononTcMaker
from sc_inverse.qe.pseudos import find_pseudopotentials
from sc_inverse.qe.rescue import rescue_summary_from_output
from sc_inverse.qe.sets import QePreset, clean_structure, get_preset

logger = logging.getLogger(__name__)

#: namespace of the job uuids derived from a material id (uuid5)
UUID_NAMESPACE = uuid.UUID("6f1d2b8e-63a4-4f0e-9d0c-5c3e0f7a9b21")

#: Largest cell (atoms) ``epc`` runs without ``--force``. DFPT electron-phonon cost grows
#: steeply with the cell; measured on fcc-Al supercells (docs/reliability.md, "size guard"),
#: a cell of this size already needs days of one core per q-point set.
MAX_EPC_ATOMS = 40


def check_epc_size(structure: Structure, force: bool = False,
                   max_atoms: int = MAX_EPC_ATOMS) -> None:
    """Refuse (InputError) a cell above ``max_atoms`` unless ``force``: before any structure
    cleaning, symmetry analysis or pw.x run is paid for."""
    n = len(structure)
    if n > max_atoms and not force:
        raise InputError(
            f"{structure.composition.reduced_formula}: {n} atoms is above the EPC size limit "
            f"({max_atoms} atoms: DFPT cost grows ~N^3-N^4, see docs/reliability.md); use the "
            "primitive cell, or pass --force to run it anyway")


def _file_md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()  # noqa: S324 - a content fingerprint


def epc_settings(structure: Structure, preset: str | QePreset | None = None,
                 pseudo_dir: str | None = None, pseudo_pattern: str | None = None,
                 relax: bool | None = None) -> dict[str, Any]:
    """What decides an EPC result besides the structure: the preset (name and every value),
    the pseudopotential of each element (file name and content, hence the functional) and
    whether the cell is relaxed first."""
    preset_obj = get_preset(preset)
    fields = json.dumps(dataclasses.asdict(preset_obj), sort_keys=True, default=str)
    # the preset's library when no directory is given (as the QE jobs resolve it: `--preset
    # test` without --pseudo-dir uses the Debian LDA files, not settings.pseudo_dir)
    pseudos = find_pseudopotentials(structure, pseudo_dir, pseudo_pattern, preset_obj)
    return {
        "preset": preset_obj.name,
        "preset_sha256": hashlib.sha256(fields.encode()).hexdigest(),
        "pseudopotentials": {el: f"{p.name}:{_file_md5(p)}" for el, p in sorted(pseudos.items())},
        "relax": bool(preset_obj.relax if relax is None else relax),
    }


def epc_identity(structure: Structure, preset: str | QePreset | None = None,
                 pseudo_dir: str | None = None, pseudo_pattern: str | None = None,
                 relax: bool | None = None) -> str:
    """The material id of an EPC calculation of ``structure`` with these settings."""
    structure = clean_structure(structure)
    return material_id(structure, epc_settings(structure, preset, pseudo_dir, pseudo_pattern, relax))


def with_stable_uuids(flow: Flow, key: str) -> Flow:
    """A copy of ``flow`` whose job and flow uuids derive from ``key`` and each job's place
    (name path), references included: the same flow made again gets the same uuids, so a
    re-run upserts its documents (keyed by uuid and index) and finds its earlier outputs."""
    names: dict[str, str] = {}
    seen: dict[str, int] = {}

    def visit(item: Flow | Job, path: str) -> None:
        here = f"{path}/{item.name}"
        seen[here] = seen.get(here, 0) + 1
        names[item.uuid] = f"{here}#{seen[here]}"
        for child in item.jobs if isinstance(item, Flow) else ():
            visit(child, here)

    visit(flow, "")
    text = json.dumps(flow.as_dict(), cls=MontyEncoder)
    for old, place in names.items():
        text = text.replace(old, str(uuid.uuid5(UUID_NAMESPACE, f"{key}{place}")))
    return json.loads(text, cls=MontyDecoder)


def make_epc_flow(structure: Structure, origin: str = "user", build: bool = True,
                  **maker_kwargs) -> tuple[Flow, str]:
    """``(flow, material id)``: the :class:`ElectronPhononTcMaker` flow of ``structure``
    tagged with its material id, with stable uuids, ending (``build``) with the builders on
    the store it runs with.

    ``epc_unstable``/``stability_gate`` (maker fields) are not part of the material id: a
    re-run with ``epc_unstable=True`` reuses the relax and the gate, and its EPC job (named
    ``qe epc (epc-unstable)``, so it has uuids of its own) runs the EPC."""
    structure = clean_structure(structure)
    mid = epc_identity(structure, maker_kwargs.get("preset"), maker_kwargs.get("pseudo_dir"),
                       maker_kwargs.get("pseudo_pattern"), maker_kwargs.get("relax"))
    epc = ElectronPhononTcMaker(**maker_kwargs).make(structure)
    tag_candidate(epc, mid, origin=origin)
    jobs: list[Flow | Job] = [epc]
    if build:
        jobs.append(build_collections(wait_for=[epc.output]))
    return with_stable_uuids(Flow(jobs, output=epc.output, name=f"epc {mid}"), mid), mid


def _folder_name(job: Job) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", job.name or "job").strip("-")
    return name if job.index == 1 else f"{name}-{job.index}"


def _finished(store: JobStore, job: Job) -> bool:
    """Is ``job``'s output (or that of the flow it was replaced by) in the store?"""
    docs = store.query({"uuid": job.uuid}, properties=["index", "output"])
    return any(d.get("index", 1) >= job.index and d.get("output") is not None for d in docs)


@dataclasses.dataclass
class EpcRun:
    """What :func:`run_epc_flow` did: the ElphTaskDoc, the run folder and the jobs it reused
    from an earlier run there."""

    doc: Any
    folder: Path
    reused: list[str] = dataclasses.field(default_factory=list)


def _run_job(job: Job, store: JobStore, folder: Path, reused: list[str]) -> None:
    here = folder / _folder_name(job)
    if here.is_dir() and _finished(store, job):
        logger.info("%s: finished in an earlier run (%s), reused", job.name, here)
        reused.append(job.name)
        return
    here.mkdir(parents=True, exist_ok=True)
    logger.debug("%s: running in %s", job.name, here)  # jobflow logs the step itself (INFO)
    with contextlib.chdir(here):
        response = job.run(store=store)
    if response.stop_jobflow or response.stop_children:
        raise CalculationError(f"{job.name} stopped the flow (see {here})")
    for more in (response.replace, response.detour, response.addition):
        if more is not None:
            _run_flow(more, store, folder, reused)


def _run_flow(flow: Flow | Job, store: JobStore, folder: Path, reused: list[str]) -> None:
    flow = flow if isinstance(flow, Flow) else Flow([flow])
    for job, _ in flow.iterflow():
        _run_job(job, store, folder, reused)


def run_epc_flow(flow: Flow, folder: Path, store: JobStore | None = None,
                 fresh: bool = False) -> EpcRun:
    """Run ``flow`` (from :func:`make_epc_flow`) locally, each job in ``folder/<job name>``.

    Jobs finished by an earlier run in ``folder`` (output stored, folder present) are reused;
    the rest run, an interrupted ph.x from its first unfinished q-point. ``fresh``: delete
    ``folder`` first. ``store=None``: an in-memory JobStore (with the ``"data"`` store for α²F).
    """
    if store is None:
        store = JobStore(MemoryStore(), additional_stores={"data": MemoryStore()})
    if fresh and folder.exists():
        shutil.rmtree(folder)
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    reused: list[str] = []
    store.connect()
    try:
        _run_flow(flow, store, folder, reused)
        doc = flow.output.resolve(store)
    finally:
        store.close()
    if doc is None:
        raise CalculationError(f"electron-phonon flow produced no output (see {folder})")
    return EpcRun(doc, folder, reused)


def run_epc(structure: Structure, workdir: Path, store: JobStore | None = None,
            fresh: bool = False, build: bool | None = None, **maker_kwargs):
    """Make and run the EPC flow of ``structure`` in ``workdir/<material id>``; return its
    ElphTaskDoc, or the StabilityGateDoc when the stability gate stopped the EPC
    (:func:`run_epc_flow`). ``build`` (default: when a store is given) ends the
    flow with the builders."""
    flow, mid = make_epc_flow(structure, build=store is not None if build is None else build,
                              **maker_kwargs)
    return run_epc_flow(flow, Path(workdir) / mid, store, fresh=fresh).doc


def gate_summary(d: dict) -> dict:
    """The JSON ``sc-inverse epc`` writes for a structure the stability gate stopped: its
    verdict, lowest mode, the unstable modes (q, frequency, displacement pattern) and timings."""
    structure = d.get("structure")
    if isinstance(structure, Structure):
        structure = structure.as_dict()
    return {
        "formula": d.get("formula_pretty"),
        "epc_run": False,
        "epc_skipped_reason": d.get("epc_skipped_reason"),
        "lambda": None,
        "tc_K": None,
        "dynamically_stable": d.get("stable"),
        "stability_reason": d.get("reason"),
        "min_frequency_cm1": d.get("min_frequency_cm1"),
        "min_frequency_raw_cm1": d.get("min_frequency_raw_cm1"),
        "softest_q_frac": d.get("softest_q_frac"),
        "imaginary_threshold_cm1": d.get("threshold_cm1"),
        "gate_qpoints_grid": d.get("qpoints_grid"),
        "epc_qpoints_grid": d.get("epc_qpoints_grid"),
        "unstable_modes": d.get("unstable_modes"),
        "energy_eV": d.get("energy_eV"),
        "cpu_time_s": d.get("cpu_time_s"),
        "timings": d.get("timings"),
        "qe_version": d.get("qe_version"),
        "dir_name": d.get("dir_name"),
        "structure": structure,
    }


def epc_summary(doc: Any) -> dict:
    """The JSON ``sc-inverse epc`` writes: headline numbers, the per-smearing table, timings
    (:func:`gate_summary` when the stability gate stopped the EPC)."""
    d = doc if isinstance(doc, dict) else doc.model_dump()
    rescue = rescue_summary_from_output(d)
    if rescue is not None:  # the gate stopped it and the soft-mode rescue ran (docs/rescue.md)
        return {**epc_summary(d.get("final") or {}), "soft_mode_rescue": rescue,
                "structure": d["structure"].as_dict() if isinstance(d.get("structure"), Structure)
                else d.get("structure")}
    if d.get("calc_type") == "stability-gate":
        return gate_summary(d)
    structure = d.get("structure")
    if isinstance(structure, Structure):
        structure = structure.as_dict()
    return {
        "epc_run": True,
        "formula": d.get("formula_pretty"),
        "lambda": d.get("lambda_"),
        "omega_log_K": d.get("omega_log_K"),
        "tc_K": d.get("tc_K"),
        "tc_mcmillan_K": d.get("tc_mcmillan_K"),
        "mu_star": d.get("mu_star"),
        "selected_sigma_Ry": d.get("selected_sigma_Ry"),
        "selection_rule": d.get("selection_rule"),
        "dos_ef_states_per_Ry": d.get("dos_ef_states_per_Ry"),
        "lambda_matdyn": d.get("lambda_matdyn"),
        "dynamically_stable": d.get("dynamically_stable"),
        "stability_reason": d.get("stability_reason"),
        "min_frequency_cm1": d.get("min_frequency_cm1"),
        "min_frequency_qgrid_cm1": d.get("min_frequency_qgrid_cm1"),
        "min_frequency_mesh_cm1": d.get("min_frequency_mesh_cm1"),
        "min_frequency_raw_cm1": d.get("min_frequency_raw_cm1"),
        "softest_qpoint_2pi_alat": d.get("softest_qpoint_2pi_alat"),
        "imaginary_threshold_cm1": d.get("imaginary_threshold_cm1"),
        "debye_temperature_K": d.get("debye_temperature_K"),
        "undefined_reasons": d.get("undefined_reasons"),
        "energy_eV": d.get("energy_eV"),
        "kpoints_grid": d.get("kpoints_grid"),
        "qpoints_grid": d.get("qpoints_grid"),
        "n_q_irreducible": d.get("n_q_irreducible"),
        "fanout": d.get("fanout"),
        "smearing_table": [
            {("lambda" if k == "lambda_" else k): v for k, v in dict(r).items()}
            for r in d.get("smearing_table", [])
        ],
        "corrections": d.get("corrections"),
        "timings": d.get("timings"),
        "qe_version": d.get("qe_version"),
        "dir_name": d.get("dir_name"),
        "structure": structure,
    }
