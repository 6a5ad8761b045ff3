"""``sc-inverse build`` and ``sc-inverse query``."""

from __future__ import annotations

from pathlib import Path

import click

from sc_inverse.builders import query_results, run_builders
from sc_inverse.cli.preflight import check_store, say
from sc_inverse.report.tables import format_rows
from sc_inverse.settings import get_settings
from sc_inverse.stores.health import embedded_store_exists


@click.command("build")
@click.option("--entries", "entries_file", type=click.Path(path_type=Path, exists=True),
              default=None, help="Extra reference entries (JSON list of ComputedEntry) for the hull.")
@click.option("--only", type=click.Choice(["TcBuilder", "HullBuilder"]), multiple=True,
              help="Run only these builders (default: both).")
def build(entries_file, only):
    """Build/refresh the superconductors and thermo collections from the job store."""
    say(f"building superconductors and thermo in the {check_store(write=True)}")
    summary = run_builders(entries_file=str(entries_file) if entries_file else None,
                           only=list(only) or None, progress=True)
    for name, s in summary.items():
        click.echo(f"{name}: {s['source_docs']} source docs, {s['skipped_docs']} skipped "
                   f"(malformed), {s['missing_blobs']} skipped (blobs missing), "
                   f"{s['processed']} processed, {s['errors']} errors, {s['written']} written")


@click.command("query")
@click.option("--tc-min", type=float, default=None, help="Minimum T_c (K).")
@click.option("--ehull-max", type=float, default=None, help="Maximum E_above_hull (eV/atom).")
@click.option("--stable-only", is_flag=True,
              help="Only dynamically stable materials on/below the hull (or within --ehull-max).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True)
def query(tc_min, ehull_max, stable_only, fmt):
    """Query the superconductors/thermo collections of the configured store.

    One row per material whose electron-phonon calculation completed; E_above_hull is >= 0
    (0 = on the hull) and e_phase_separation_eV_per_atom < 0 says by how much a material is
    below the hull of the other phases. Read-only: works on a store this process cannot write."""
    settings = get_settings()
    where = check_store(settings, write=False)
    exists = settings.store != "embedded" or embedded_store_exists(settings)
    rows = query_results(tc_min=tc_min, ehull_max=ehull_max, stable_only=stable_only) if exists else []
    click.echo(format_rows(rows, fmt))
    if fmt == "table":
        say(f"{len(rows)} material(s) in the {where}" if exists else
            f"no results yet: {where} does not exist (run `sc-inverse epc` or `sc-inverse run`, "
            "or set SC_INVERSE_DATA_DIR to the data dir that holds them)")
