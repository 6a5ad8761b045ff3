"""``sc-inverse run``: the whole inverse-design flow, locally."""

from __future__ import annotations

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
from sc_inverse.runs import new_run_dir, runs_root
from sc_inverse.settings import get_settings
from sc_inverse.stores import SUPERCONDUCTORS, THERMO, get_job_store, get_store


def print_top(rows: list[dict], n: int = 10) -> None:
    click.echo(f"\nTop of the superconductors collection ({min(n, len(rows))} of {len(rows)}):")
    click.echo(format_rows(rows[:n], "table") if rows else "(empty)")


@click.command()
@inverse_design_options
@click.option("--store", type=click.Choice(STORE_KINDS), default=None,
              help=f"Results store ({from_settings('store')}).")
@run_name_option
def run(n, top_k, preset, seed, optimize_tc, include, pseudo_dir, criteria_file, keep_known, elements,
        store, run_name) -> None:
    """Generate → screen → QE-validate → hull → builders, locally, then print the top results."""
    # --store picks the stores of this run only: handed to the job store, the finalize job's
    # builders and the query below, never written to the environment
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
        keep_known=keep_known, elements=elements, store=store,
    )
    t0 = time.perf_counter()
    # log=False: jobflow's own handler would print every line a second time (cli.output)
    responses = run_flow_locally(flow, store=get_job_store(settings), root_dir=run_dir.root / "jobs",
                                 log=False)
    elapsed = time.perf_counter() - t0
    funnel = run_dir.read_json(run_dir.funnel, default={})
    if not funnel:
        raise click.ClickException(
            f"the flow did not finish ({len(responses)} jobs ran); see the log above and {run_dir.root}"
        )
    click.echo("\nFunnel: " + " → ".join(f"{k} {v}" for k, v in funnel["counts"].items()))
    click.echo(f"wall time: {elapsed:.0f} s")
    print_top(query_results(superconductors=get_store(SUPERCONDUCTORS, settings),
                            thermo=get_store(THERMO, settings)))
    click.echo(f"\nreport: sc-inverse report --run {run_dir.root} --out {run_dir.root / 'report'}")
