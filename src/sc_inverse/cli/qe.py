"""``sc-inverse epc``: DFT-PT electron-phonon T_c of one structure, run locally."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click
from pymatgen.core import Structure

from sc_inverse.errors import CalculationError, InputError

logger = logging.getLogger(__name__)


def load_structure(path: str | Path) -> tuple[Structure, str]:
    """One structure and its id from any input :func:`sc_inverse.records.load_records` reads
    (pw.x input, CIF, POSCAR, record JSON)."""
    from sc_inverse.records import load_records

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    records = load_records(path)
    if len(records) != 1:
        raise InputError(f"{path}: holds {len(records)} structures; epc takes exactly one")
    return records[0].get_structure(), records[0].id


def run_epc(structure: Structure, workdir: Path, store=None, log: bool = False, **maker_kwargs):
    """Run :class:`ElectronPhononTcMaker` locally; return the flow's ElphTaskDoc.

    ``store=None`` uses an in-memory JobStore (with the ``"data"`` additional store the elph
    jobs route α²F to); the CLI passes the project's store (:func:`sc_inverse.stores.get_job_store`).
    """
    from jobflow import JobStore, run_locally
    from maggma.stores import MemoryStore

    from sc_inverse.qe.flows import ElectronPhononTcMaker

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


def summary(doc) -> dict:
    """The JSON the CLI writes: headline numbers, the per-smearing table, timings."""
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


@click.command("epc")
@click.argument("structure_file", metavar="STRUCTURE", type=click.Path(path_type=Path))
@click.option("--preset", type=click.Choice(["test", "paper"]), default=None,
              help="QE settings: 'paper' (JARVIS/Wines) or 'test' (QE's Al example). Default: settings.")
@click.option("--pseudo-dir", type=click.Path(path_type=Path), default=None,
              help="Pseudopotential directory (default: settings.pseudo_dir).")
@click.option("--pseudo-pattern", default=None,
              help="Per-element filename glob with {el}; default: preset's or settings'.")
@click.option("--out", "out_file", type=click.Path(path_type=Path), default=Path("epc.json"),
              show_default=True, help="Result JSON.")
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="Where the QE job folders go (default: <data_dir>/epc/<id>).")
@click.option("--fanout/--no-fanout", default=False, help="One job per irreducible q-point.")
@click.option("--relax/--no-relax", default=None, help="Force/skip the vc-relax (default: preset).")
@click.option("--store/--no-store", "use_store", default=True, show_default=True,
              help="Save the task documents in the configured job store (settings.store).")
def epc(structure_file, preset, pseudo_dir, pseudo_pattern, out_file, workdir, fanout, relax,
        use_store):
    """Electron-phonon λ, ω_log and T_c of STRUCTURE (pw.x input, CIF, POSCAR or record JSON)."""
    from sc_inverse.qe.pseudos import find_pseudopotentials
    from sc_inverse.qe.sets import clean_structure, get_preset
    from sc_inverse.settings import get_settings

    settings = get_settings()
    preset_obj = get_preset(preset or settings.qe_preset)
    structure, sid = load_structure(structure_file)
    structure = clean_structure(structure)
    pseudos = find_pseudopotentials(structure, pseudo_dir, pseudo_pattern or preset_obj.pseudo_pattern)
    click.echo(f"{structure.composition.reduced_formula}: preset {preset_obj.name}, pseudopotentials "
               + ", ".join(f"{k}={v.name}" for k, v in pseudos.items()), err=True)
    workdir = workdir or Path(settings.data_dir) / "epc" / sid
    store = None
    if use_store:
        from sc_inverse.stores import get_job_store

        store = get_job_store(settings)
    doc = run_epc(
        structure, Path(workdir).resolve(), store=store, log=True, preset=preset_obj,
        pseudo_dir=str(pseudo_dir) if pseudo_dir else None, pseudo_pattern=pseudo_pattern,
        fanout=fanout, relax=relax,
    )
    result = summary(doc)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(result, indent=1, default=str))
    click.echo(
        f"lambda = {result['lambda']:.4f} at sigma = {result['selected_sigma_Ry']} Ry, "
        f"omega_log = {result['omega_log_K']:.1f} K, T_c(Allen-Dynes, mu*={result['mu_star']}) = "
        f"{result['tc_K']:.2f} K, dynamically stable: {result['dynamically_stable']} -> {out_file}"
    )
