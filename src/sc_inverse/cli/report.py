"""``sc-inverse report`` (figures + summary of a run) and ``sc-inverse report campaign``."""

from __future__ import annotations

from pathlib import Path

import click

from sc_inverse.cli.options import STORE_KINDS, from_settings
from sc_inverse.cli.preflight import check_output_dir, check_store, say
from sc_inverse.runs import latest_run
from sc_inverse.settings import get_settings


@click.group(invoke_without_command=True)
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder written by `sc-inverse run` (default: the latest under the data dir).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the PNG figures and summary.md.")
@click.pass_context
def report(ctx: click.Context, run_dir: Path | None, out_dir: Path | None) -> None:
    """Paper-style figures (Fig. 1b, 2, 3), Table 1 and the funnel of a run
    (`report --out DIR`), or the report of a campaign still running (`report campaign RUN_DIR`)."""
    if ctx.invoked_subcommand is not None:
        return
    if out_dir is None:
        raise click.UsageError("Missing option '--out' (or use `sc-inverse report campaign RUN_DIR`).")
    from sc_inverse.report.summary import build_report  # matplotlib: only when a report is made

    check_output_dir(out_dir, "--out")
    summary = build_report(run_dir or latest_run(), out_dir)
    click.echo(f"report (figures + summary.md) -> {summary}")


@report.command("campaign")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Markdown file to write, e.g. docs/campaigns/2026-12-03.md (default: print).")
@click.option("--store", type=click.Choice(STORE_KINDS), default=None,
              help=f"Job store holding the run's task documents ({from_settings('store')}).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Data dir of the embedded store to read (default: settings.data_dir), e.g. a "
                   "copy of a campaign's data dir.")
@click.option("--no-store", is_flag=True, help="Report from the run folder alone.")
def campaign(run_dir: Path, out_file: Path | None, store: str | None, data_dir: Path | None,
             no_store: bool) -> None:
    """Campaign report of RUN_DIR, buildable while its DFT stage still runs: Table 1 of the
    candidates sent to DFT (done, running, waiting, failed, EPC skipped), the funnel beside
    the study's 62 → 32 → 20, the ≥ 30 % target, CPU time per stage. Reads the store only."""
    from sc_inverse.report.campaign import collect_campaign, render_markdown  # pymatgen

    if out_file is not None:
        check_output_dir(out_file.parent if str(out_file.parent) else Path("."), "--out")
    settings = get_settings()
    updates = {k: v for k, v in (("store", store), ("data_dir", data_dir)) if v is not None}
    settings = settings.model_copy(update=updates) if updates else settings
    job_store = None
    if not no_store:
        from sc_inverse.stores import get_job_store
        from sc_inverse.stores.health import embedded_store_exists

        where = check_store(settings, write=False)
        if settings.store == "embedded" and not embedded_store_exists(settings):
            say(f"{where} does not exist: reporting from the run folder alone")
        else:
            say(f"reading task documents from the {where}")
            job_store = get_job_store(settings, quiet=True)
            job_store.connect()
    try:
        data = collect_campaign(run_dir, job_store)
    finally:
        if job_store is not None:
            job_store.close()
    text = render_markdown(data)
    if out_file is None:
        click.echo(text)
        return
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(text)
    click.echo(f"campaign report ({len(data.rows)} DFT candidates, {data.n_pending} pending) -> {out_file}")
