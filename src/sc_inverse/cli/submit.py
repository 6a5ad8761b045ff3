"""``sc-inverse submit ...``: flows to the FireWorks LaunchPad (run them with rlaunch/qlaunch)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from jobflow import Flow, Job
from monty.serialization import loadfn

from sc_inverse.cli.options import (
    category_option,
    epc_unstable_option,
    inverse_design_options,
    launchpad_option,
    preset_option,
    pseudo_dir_option,
    run_name_option,
)
from sc_inverse.cli.preflight import check_launchpad, say
from sc_inverse.errors import InputError
from sc_inverse.execution import fworker_category, recover_lost_runs, submit_flow
from sc_inverse.pipeline.epc import MAX_EPC_ATOMS, check_epc_size, make_epc_flow
from sc_inverse.records import load_structure
from sc_inverse.runs import new_run_dir, write_manifest


@click.group("submit")
def submit() -> None:
    """Submit flows to the FireWorks LaunchPad (run them with rlaunch/qlaunch)."""


@submit.command("epc")
@click.argument("structure_file", metavar="STRUCTURE", type=click.Path(path_type=Path))
@preset_option("qe_preset")
@pseudo_dir_option
@click.option("--pseudo-pattern", default=None)
@click.option("--fanout/--no-fanout", default=False, help="One Firework per irreducible q-point.")
@click.option("--relax/--no-relax", default=None)
@launchpad_option
@category_option
@click.option("--force", is_flag=True, help=f"Submit cells above {MAX_EPC_ATOMS} atoms anyway.")
@epc_unstable_option
def submit_epc(structure_file, preset, pseudo_dir, pseudo_pattern, fanout, relax,
               launchpad_file, category, force, epc_unstable):
    """The QE electron-phonon T_c flow of STRUCTURE (relax → scf → ph/q2r/matdyn → T_c →
    builders), tagged with its material id (structure + settings, as `epc` does)."""
    say(f"workflows -> {check_launchpad(launchpad_file)}")
    structure, sid = load_structure(structure_file)
    check_epc_size(structure, force)
    flow, mid = make_epc_flow(
        structure, preset=preset, pseudo_dir=str(pseudo_dir.resolve()) if pseudo_dir else None,
        pseudo_pattern=pseudo_pattern, fanout=fanout, relax=relax, epc_unstable=epc_unstable,
    )
    ids = submit_flow(flow, launchpad_file, qe_category=category, name=f"epc {sid}")
    click.echo(f"submitted {len(ids)} fireworks for {sid}, material {mid} "
               f"(fw_ids {sorted(ids.values())})")


@submit.command("flow")
@click.argument("flow_file", type=click.Path(path_type=Path))
@launchpad_option
@category_option
def submit_flow_file(flow_file, launchpad_file, category):
    """Any jobflow Flow/Job serialised to JSON/YAML (monty ``dumpfn(flow, FILE)``)."""
    if not flow_file.is_file():
        raise InputError(f"{flow_file}: no such file")
    say(f"workflows -> {check_launchpad(launchpad_file)}")
    try:
        flow = loadfn(flow_file)
    except Exception as exc:  # noqa: BLE001 - monty/json raise many types
        raise InputError(f"{flow_file}: not a serialised jobflow Flow ({exc})") from exc
    if not isinstance(flow, (Flow, Job)):
        raise InputError(f"{flow_file}: holds a {type(flow).__name__}, not a jobflow Flow or Job")
    ids = submit_flow(flow, launchpad_file, qe_category=category)
    click.echo(f"submitted {len(ids)} fireworks (fw_ids {sorted(ids.values())})")


@submit.command("recover")
@click.option("--expiration-secs", type=float, default=4 * 3600, show_default=True,
              help="A RUNNING Firework without a ping for this long is lost.")
@click.option("--fizzled/--no-fizzled", default=False, help="Also re-run FIZZLED Fireworks.")
@launchpad_option
def submit_recover(expiration_secs, fizzled, launchpad_file):
    """Re-run Fireworks of killed rockets (and optionally fizzled ones)."""
    say(f"LaunchPad: {check_launchpad(launchpad_file)}")
    ids = recover_lost_runs(launchpad_file, expiration_secs, fizzled)
    click.echo(f"re-running {len(ids)} fireworks: {ids}")


@submit.command("inverse-design")
@inverse_design_options
@launchpad_option
@category_option
@run_name_option
def submit_inverse_design(n, top_k, preset, seed, optimize_tc, include, pseudo_dir, criteria_file,
                          keep_known, elements, epc_unstable, launchpad_file, category,
                          run_name) -> None:
    """The whole inverse-design flow to the LaunchPad; QE jobs tagged for `qlaunch` workers.

    The run folder must live on a filesystem the workers share (SC_INVERSE_DATA_DIR).
    """
    # the pipeline pulls in matplotlib (pymatgen's phase diagram); the other submit commands don't
    from sc_inverse.pipeline.maker import make_inverse_design_flow

    say(f"workflows -> {check_launchpad(launchpad_file)}")
    run_dir = new_run_dir(run_name)
    category = category or fworker_category()
    flow = make_inverse_design_flow(
        run_dir.root, n, top_k, preset, seed, optimize_tc, include,
        pseudo_dir=str(pseudo_dir) if pseudo_dir else None, qe_category=category,
        criteria_file=criteria_file, keep_known=keep_known, elements=elements,
        epc_unstable=epc_unstable,
    )
    write_manifest(run_dir, ["sc-inverse", *sys.argv[1:]], {
        "n": n, "top_k": top_k, "preset": preset, "seed": seed, "optimize_tc": optimize_tc,
        "include": str(include) if include else None,
        "criteria": str(criteria_file) if criteria_file else None, "keep_known": keep_known,
        "elements": elements, "epc_unstable": epc_unstable, "qe_category": category,
        "runner": "FireWorks"}, flow.uuid)
    ids = submit_flow(flow, launchpad=launchpad_file, qe_category=category)
    click.echo(f"submitted {len(ids)} fireworks (run folder {run_dir.root}); "
               "QE jobs are added at run time by the DFT stage and inherit the QE category")
