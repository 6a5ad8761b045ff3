"""The electron-phonon T_c of one structure, run locally (what ``sc-inverse epc`` does)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobflow import JobStore, run_locally
from maggma.stores import MemoryStore
from pymatgen.core import Structure

from sc_inverse.errors import CalculationError, InputError
from sc_inverse.qe.flows import ElectronPhononTcMaker

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


def run_epc(structure: Structure, workdir: Path, store: JobStore | None = None, log: bool = False,
            **maker_kwargs):
    """Run :class:`ElectronPhononTcMaker` locally; return the flow's ElphTaskDoc.

    ``store=None`` uses an in-memory JobStore (with the ``"data"`` additional store the elph
    jobs route α²F to); the CLI passes the project's store (:func:`sc_inverse.stores.get_job_store`).
    """
    flow = ElectronPhononTcMaker(**maker_kwargs).make(structure)
    if store is None:
        store = JobStore(MemoryStore(), additional_stores={"data": MemoryStore()})
    workdir.mkdir(parents=True, exist_ok=True)
    responses = run_locally(flow, store=store, create_folders=True, root_dir=workdir, log=log,
                            raise_immediately=True)
    if not responses:
        raise CalculationError(f"electron-phonon flow produced no output (see {workdir})")
    with store:
        return flow.output.resolve(store)


def epc_summary(doc: Any) -> dict:
    """The JSON ``sc-inverse epc`` writes: headline numbers, the per-smearing table, timings."""
    d = doc if isinstance(doc, dict) else doc.model_dump()
    structure = d.get("structure")
    if isinstance(structure, Structure):
        structure = structure.as_dict()
    return {
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
        "min_frequency_cm1": d.get("min_frequency_cm1"),
        "imaginary_threshold_cm1": d.get("imaginary_threshold_cm1"),
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
