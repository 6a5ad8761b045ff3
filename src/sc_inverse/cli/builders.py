"""``sc-inverse build`` and ``sc-inverse query``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import click

COLUMNS = ("material_id", "formula", "spacegroup", "tc_K", "tc_mcmillan_K", "lambda",
           "omega_log_K", "dynamically_stable", "e_form_eV_per_atom", "e_above_hull_eV_per_atom",
           "origin", "ml_tc_K", "dft_minus_ml_tc_K")


@click.command("build")
@click.option("--entries", "entries_file", type=click.Path(path_type=Path, exists=True),
              default=None, help="Extra reference entries (JSON list of ComputedEntry) for the hull.")
@click.option("--only", type=click.Choice(["TcBuilder", "HullBuilder"]), multiple=True,
              help="Run only these builders (default: both).")
def build(entries_file, only):
    """Build/refresh the superconductors and thermo collections from the job store."""
    from sc_inverse.builders import run_builders

    summary = run_builders(entries_file=str(entries_file) if entries_file else None,
                           only=list(only) or None, progress=True)
    for name, s in summary.items():
        click.echo(f"{name}: {s['source_docs']} source docs, {s['skipped_docs']} skipped "
                   f"(malformed), {s['processed']} processed, {s['errors']} errors, "
                   f"{s['written']} written")


def format_rows(rows: list[dict], fmt: str) -> str:
    """Render query rows as an aligned table, JSON or CSV."""
    if fmt == "json":
        return json.dumps(rows, indent=1, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue().rstrip("\n")

    def cell(v):
        if isinstance(v, float):
            return f"{v:.3f}"
        return "-" if v is None else str(v)

    table = [list(COLUMNS)] + [[cell(r.get(c)) for c in COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
                     for row in table)


@click.command("query")
@click.option("--tc-min", type=float, default=None, help="Minimum T_c (K).")
@click.option("--ehull-max", type=float, default=None, help="Maximum E_above_hull (eV/atom).")
@click.option("--stable-only", is_flag=True,
              help="Only dynamically stable materials on/below the hull (or within --ehull-max).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True)
def query(tc_min, ehull_max, stable_only, fmt):
    """Query the superconductors/thermo collections of the configured store."""
    from sc_inverse.builders import query_results

    rows = query_results(tc_min=tc_min, ehull_max=ehull_max, stable_only=stable_only)
    click.echo(format_rows(rows, fmt))
    if fmt == "table":
        click.echo(f"{len(rows)} material(s)", err=True)
