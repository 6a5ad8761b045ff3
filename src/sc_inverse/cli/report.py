"""``sc-inverse report``."""

from __future__ import annotations

from pathlib import Path

import click

from sc_inverse.cli.preflight import check_output_dir
from sc_inverse.runs import latest_run


@click.command()
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder written by `sc-inverse run` (default: the latest under the data dir).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the PNG figures and summary.md.")
def report(run_dir: Path | None, out_dir: Path) -> None:
    """Paper-style figures (Fig. 1b, 2, 3), Table 1 and the funnel of a run."""
    from sc_inverse.report.summary import build_report  # matplotlib: only when a report is made

    check_output_dir(out_dir, "--out")
    summary = build_report(run_dir or latest_run(), out_dir)
    click.echo(f"report (figures + summary.md) -> {summary}")
