"""``sc-inverse run``: the whole inverse-design flow, locally."""

from __future__ import annotations

import sys
import time

import click

from sc_inverse.builders import query_results
from sc_inverse.cli.options import (
    STORE_KINDS,
    from_settings,
    inverse_design_options,
    run_name_option,
)
from sc_inverse.cli.preflight import (
    EPC_PROGRAMS,
    check_output_dir,
    check_preset,
    check_qe,
    check_store,
    say,
)
from sc_inverse.execution import run_flow_locally
from sc_inverse.pipeline.maker import make_inverse_design_flow
from sc_inverse.report.tables import format_rows
from sc_inverse.runs import new_run_dir, runs_root, write_manifest
from sc_inverse.settings import get_settings
from sc_inverse.stores import get_job_store


def print_run_results(dft_rows: list[dict], job_store) -> None:
    """This run's completed DFT candidates as the builders stored them, read back from the
    collections of the job store the flow wrote to; says so when one is missing there."""
    done = [r["material_id"] for r in dft_rows if r.get("tc_K") is not None and r.get("material_id")]
    rows = query_results(job_store=job_store, material_ids=done) if done else []
    click.echo(f"\nDFT results of this run (superconductors collection, {len(rows)} of "
               f"{len(done)} completed):")
    click.echo(format_rows(rows, "table") if rows else "(none)")
    missing = sorted(set(done) - {r["material_id"] for r in rows})
    if missing:
        click.echo(f"warning: DFT completed but no collection row for {', '.join(missing)}: "
                   "see the builders' log above, then `sc-inverse build`", err=True)


@click.command()
@inverse_design_options
@click.option("--store", type=click.Choice(STORE_KINDS), default=None,
              help=f"Results store ({from_settings('store')}).")
@run_name_option
def run(n, top_k, preset, seed, optimize_tc, include, pseudo_dir, criteria_file, keep_known, elements,
        epc_unstable, store, run_name) -> None:
    """Generate → screen → QE-validate → hull → builders, locally, then print the top results."""
    # --store picks the stores of this run only: the job store the flow writes to (and whose
    # collections its finalize job builds and the table below reads), never the environment
    settings = get_settings().model_copy(update={"store": store}) if store else get_settings()
    check_preset(preset, "run_qe_preset", settings)  # None stays None: the flow reads the setting
    if (settings.run_top_k if top_k is None else top_k) > 0:
        check_qe(EPC_PROGRAMS, settings)
    check_output_dir(runs_root(), "data dir")
    where = check_store(settings)
    run_dir = new_run_dir(run_name)
    say(f"run folder: {run_dir.root}; task documents and results -> {where}")
    flow = make_inverse_design_flow(
        run_dir.root, n, top_k, preset, seed, optimize_tc, include,
        pseudo_dir=str(pseudo_dir) if pseudo_dir else None, criteria_file=criteria_file,
        keep_known=keep_known, elements=elements, epc_unstable=epc_unstable,
    )
    write_manifest(run_dir, ["sc-inverse", *sys.argv[1:]], {
        "n": n, "top_k": top_k, "preset": preset, "seed": seed, "optimize_tc": optimize_tc,
        "include": str(include) if include else None, "criteria": str(criteria_file) if criteria_file else None,
        "keep_known": keep_known, "elements": elements, "epc_unstable": epc_unstable,
        "store": settings.store, "runner": "run (local)"}, flow.uuid)
    job_store = get_job_store(settings)
    t0 = time.perf_counter()
    # log=False: jobflow's own handler would print every line a second time (cli.output)
    responses = run_flow_locally(flow, store=job_store, root_dir=run_dir.root / "jobs", log=False)
    elapsed = time.perf_counter() - t0
    funnel = run_dir.read_json(run_dir.funnel, default={})
    if not funnel:
        raise click.ClickException(
            f"the flow did not finish ({len(responses)} jobs ran); see the log above and {run_dir.root}"
        )
    click.echo("\nFunnel: " + " → ".join(f"{k} {v}" for k, v in funnel["counts"].items()))
    click.echo(f"wall time: {elapsed:.0f} s")
    print_run_results(run_dir.read_json(run_dir.dft, default=[]), job_store)
    click.echo(f"\nreport: sc-inverse report --run {run_dir.root} --out {run_dir.root / 'report'}")
