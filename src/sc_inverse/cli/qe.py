"""``sc-inverse epc``: DFT-PT electron-phonon T_c of one structure, run locally."""

from __future__ import annotations

import json
from pathlib import Path

import click

from sc_inverse.cli.options import preset_option, pseudo_dir_option
from sc_inverse.cli.preflight import (
    EPC_PROGRAMS,
    check_output_dir,
    check_output_file,
    check_preset,
    check_qe,
    check_store,
    say,
)
from sc_inverse.pipeline.epc import MAX_EPC_ATOMS, check_epc_size, epc_summary, run_epc
from sc_inverse.qe.pseudos import find_pseudopotentials
from sc_inverse.qe.sets import clean_structure, get_preset
from sc_inverse.records import load_structure
from sc_inverse.settings import get_settings
from sc_inverse.stores import get_job_store


@click.command("epc")
@click.argument("structure_file", metavar="STRUCTURE", type=click.Path(path_type=Path))
@preset_option("qe_preset", "QE settings: 'paper' (JARVIS/Wines) or 'test' (QE's Al example)")
@pseudo_dir_option
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
@click.option("--force", is_flag=True,
              help=f"Run cells above the size limit ({MAX_EPC_ATOMS} atoms) anyway.")
def epc(structure_file, preset, pseudo_dir, pseudo_pattern, out_file, workdir, fanout, relax,
        use_store, force):
    """Electron-phonon λ, ω_log and T_c of STRUCTURE (pw.x input, CIF, POSCAR or record JSON).

    Everything that could fail later is checked first (output paths, QE executables, the
    preset, the structure and its size, pseudopotentials, the store), so a mistake costs no
    compute and a finished calculation is never lost to an unwritable --out.
    """
    settings = get_settings()
    preset_obj = get_preset(check_preset(preset, "qe_preset", settings))
    check_output_file(out_file, "--out")
    check_output_dir(workdir, "--workdir")
    check_qe(EPC_PROGRAMS, settings)
    store_where = check_store(settings) if use_store else None
    structure, sid = load_structure(structure_file)
    check_epc_size(structure, force)
    structure = clean_structure(structure)
    pseudos = find_pseudopotentials(structure, pseudo_dir, pseudo_pattern or preset_obj.pseudo_pattern)
    workdir = Path(workdir or Path(settings.data_dir).expanduser() / "epc" / sid).resolve()
    say(f"{structure.composition.reduced_formula}: preset {preset_obj.name}, pseudopotentials "
        + ", ".join(f"{k}={v.name}" for k, v in pseudos.items()))
    say(f"QE runs in {workdir}; task documents -> {store_where or 'not stored (--no-store)'}")
    doc = run_epc(
        structure, workdir, store=get_job_store(settings) if use_store else None,
        log=False, preset=preset_obj, pseudo_dir=str(pseudo_dir) if pseudo_dir else None,
        pseudo_pattern=pseudo_pattern, fanout=fanout, relax=relax,
    )
    result = epc_summary(doc)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(result, indent=1, default=str))
    click.echo(
        f"lambda = {result['lambda']:.4f} at sigma = {result['selected_sigma_Ry']} Ry, "
        f"omega_log = {result['omega_log_K']:.1f} K, T_c(Allen-Dynes, mu*={result['mu_star']}) = "
        f"{result['tc_K']:.2f} K, dynamically stable: {result['dynamically_stable']} -> {out_file}"
    )
