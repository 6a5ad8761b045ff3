"""``sc-inverse epc``: DFT-PT electron-phonon T_c of one structure, run locally."""

from __future__ import annotations

import json
from pathlib import Path

import click

from sc_inverse.cli.options import preset_option, pseudo_dir_option
from sc_inverse.pipeline.epc import epc_summary, run_epc
from sc_inverse.qe.pseudos import resolve_pseudopotentials
from sc_inverse.qe.sets import clean_structure, get_preset
from sc_inverse.records import load_structure
from sc_inverse.settings import get_settings
from sc_inverse.stores import get_job_store


@click.command("epc")
@click.argument("structure_file", metavar="STRUCTURE", type=click.Path(path_type=Path))
@preset_option("qe_preset", "QE settings: 'paper' (JARVIS/Wines), 'fast' (cheaper, validated "
               "against paper) or 'test' (QE's Al example, CI only)")
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
def epc(structure_file, preset, pseudo_dir, pseudo_pattern, out_file, workdir, fanout, relax,
        use_store):
    """Electron-phonon λ, ω_log and T_c of STRUCTURE (pw.x input, CIF, POSCAR or record JSON)."""
    settings = get_settings()
    preset_obj = get_preset(preset)
    structure, sid = load_structure(structure_file)
    structure = clean_structure(structure)
    pseudos, resolved = resolve_pseudopotentials(structure, preset_obj, pseudo_dir, pseudo_pattern)
    click.echo(f"{structure.composition.reduced_formula}: preset {preset_obj.name}, pseudopotentials "
               + ", ".join(f"{k}={v.name}" for k, v in pseudos.items())
               + f" in {next(iter(pseudos.values())).parent}, cutoffs "
               + (resolved.cutoff_rule or f"{resolved.ecutwfc:g}/{resolved.ecutrho} Ry"), err=True)
    workdir = workdir or Path(settings.data_dir) / "epc" / sid
    doc = run_epc(
        structure, Path(workdir).resolve(), store=get_job_store(settings) if use_store else None,
        log=True, preset=preset_obj, pseudo_dir=str(pseudo_dir) if pseudo_dir else None,
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
