"""``sc-inverse epc``: DFT-PT electron-phonon T_c of one structure, run locally."""

from __future__ import annotations

import json
from pathlib import Path

import click

from sc_inverse.builders import query_results
from sc_inverse.cli.options import epc_unstable_option, preset_option, pseudo_dir_option
from sc_inverse.cli.preflight import (
    EPC_PROGRAMS,
    check_output_dir,
    check_output_file,
    check_preset,
    check_qe,
    check_store,
)
from sc_inverse.errors import CalculationError
from sc_inverse.pipeline.epc import (
    MAX_EPC_ATOMS,
    check_epc_size,
    epc_summary,
    make_epc_flow,
    run_epc_flow,
)
from sc_inverse.qe.pseudos import resolve_pseudopotentials
from sc_inverse.qe.sets import clean_structure, get_preset
from sc_inverse.records import load_structure
from sc_inverse.report.tables import format_rows
from sc_inverse.settings import get_settings
from sc_inverse.stores import describe_store, get_job_store


def _fmt(value: float | None, spec: str) -> str:
    """A number for the summary line; an undefined one (null in the JSON, with its reason) as n/a."""
    return "n/a" if value is None else format(value, spec)


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
              help="Parent of the run folder <material id>/ (default: <data_dir>/epc); the same "
                   "structure and settings continue there after an interruption.")
@click.option("--fresh", is_flag=True,
              help="Start over: delete this structure's run folder instead of continuing it.")
@click.option("--fanout/--no-fanout", default=False, help="One job per irreducible q-point.")
@click.option("--relax/--no-relax", default=None, help="Force/skip the vc-relax (default: preset).")
@click.option("--store/--no-store", "use_store", default=True, show_default=True,
              help="Save the task documents in the configured job store (settings.store).")
@click.option("--force", is_flag=True,
              help=f"Run cells above the size limit ({MAX_EPC_ATOMS} atoms) anyway.")
@epc_unstable_option
def epc(structure_file, preset, pseudo_dir, pseudo_pattern, out_file, workdir, fresh, fanout,
        relax, use_store, force, epc_unstable):
    """Electron-phonon λ, ω_log and T_c of STRUCTURE (pw.x input, CIF, POSCAR or record JSON).

    The material id (standardised structure + settings) names the run folder and the stored
    row: running the same structure again continues an interrupted run (ph.x from its first
    unfinished q-point) or reuses a finished one, and updates its row instead of adding one.

    A stability gate (scf + phonons at Γ and the zone boundary of the q grid) runs before the
    EPC; a structure with imaginary modes below the preset's threshold stops there (its modes
    are written to --out) unless --epc-unstable. Setting: epc_stability_gate.

    Everything that could fail later is checked first (output paths, QE executables, the
    preset, the store, the structure and its size, pseudopotentials), so a mistake costs no
    compute and a finished calculation is never lost to an unwritable --out."""
    settings = get_settings()
    preset_obj = get_preset(check_preset(preset, "qe_preset", settings))
    check_output_file(out_file, "--out")
    check_output_dir(workdir, "--workdir")
    check_qe(EPC_PROGRAMS, settings)
    if use_store:
        check_store(settings)
    structure, sid = load_structure(structure_file)
    check_epc_size(structure, force)
    structure = clean_structure(structure)
    pseudos, resolved = resolve_pseudopotentials(structure, preset_obj, pseudo_dir, pseudo_pattern)
    click.echo(f"{structure.composition.reduced_formula}: preset {preset_obj.name}, pseudopotentials "
               + ", ".join(f"{k}={v.name}" for k, v in pseudos.items())
               + f" in {next(iter(pseudos.values())).parent}, cutoffs "
               + (resolved.cutoff_rule or f"{resolved.ecutwfc:g}/{resolved.ecutrho} Ry"), err=True)
    flow, mid = make_epc_flow(
        structure, build=use_store, preset=preset_obj,
        pseudo_dir=str(Path(pseudo_dir).resolve()) if pseudo_dir else None,
        pseudo_pattern=pseudo_pattern, fanout=fanout, relax=relax, epc_unstable=epc_unstable,
    )
    folder = Path(workdir or Path(settings.data_dir) / "epc").resolve() / mid
    job_store = get_job_store(settings, quiet=True) if use_store else None
    click.echo(f"material {mid} ({sid}): run folder {folder}"
               + (f", results in {describe_store(job_store)}" if job_store else ""), err=True)
    done = run_epc_flow(flow, folder, job_store, fresh=fresh)
    if done.reused:
        click.echo(f"reused from an earlier run in {folder}: {', '.join(done.reused)}", err=True)
    result = {"material_id": mid, **epc_summary(done.doc)}
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(result, indent=1, default=str, allow_nan=False))
    rescue = result.get("soft_mode_rescue")
    if rescue:
        click.echo(f"soft-mode rescue: {rescue['rescue_reason']}"
                   + (f" (child {rescue['rescue_child_id']}, {rescue['rescue_spacegroup']})"
                      if rescue["rescued"] else ""), err=True)
    if not result["epc_run"]:
        click.echo(f"{result['epc_skipped_reason']} -> {out_file}")
    else:
        click.echo(
            f"lambda = {_fmt(result['lambda'], '.4f')} at sigma = {result['selected_sigma_Ry']} Ry, "
            f"omega_log = {_fmt(result['omega_log_K'], '.1f')} K, T_c(Allen-Dynes, "
            f"mu*={result['mu_star']}) = {_fmt(result['tc_K'], '.2f')} K, dynamically stable: "
            f"{result['dynamically_stable']} -> {out_file}"
        )
    if job_store is not None:
        rows = query_results(job_store=job_store, material_ids=[mid])
        if not rows:
            raise CalculationError(f"{mid}: the calculation finished but the builders stored no "
                                   "superconductors row (see the log; `sc-inverse build` retries)")
        click.echo(format_rows(rows, "table"))
