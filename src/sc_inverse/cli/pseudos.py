"""``sc-inverse pseudos build|list``: the PBEsol pseudopotential library built with QE's ld1.x."""

from __future__ import annotations

from pathlib import Path

import click

from sc_inverse.cli.options import ElementList
from sc_inverse.errors import CalculationError
from sc_inverse.qe.pslibrary import (
    build_library,
    default_library_dir,
    format_listing,
    list_library,
    not_covered,
)
from sc_inverse.qe.pslibrary.builder import print_progress
from sc_inverse.qe.pslibrary.table import FUNCTIONALS, TIERS
from sc_inverse.settings import get_settings

functional_option = click.option("--functional", type=click.Choice(FUNCTIONALS),
                                 default="pbesol", show_default=True)
tier_option = click.option(
    "--tier", type=click.Choice(TIERS), default="standard", show_default=True,
    help="standard: pslibrary's recommended files; low: lower-cutoff variants (fast preset).")


@click.group("pseudos")
def pseudos() -> None:
    """Build and list the pseudopotential library (PBEsol, generated with QE's ld1.x)."""


@pseudos.command("build")
@functional_option
@tier_option
@click.option("--dest", type=click.Path(path_type=Path), default=None,
              help="Library directory (default: ~/.local/share/sc-inverse/pseudos/pbesol[-low]; "
                   "SC_INVERSE_PSEUDO_DIR for the standard tier).")
@click.option("--elements", type=ElementList(), default=None,
              help="Comma-separated elements (default: every element of the table).")
@click.option("--workers", type=int, default=2, show_default=True,
              help="ld1.x processes in parallel.")
@click.option("--force", is_flag=True, help="Rebuild files already present.")
@click.option("--quiet", is_flag=True, help="Report failures and the summary only.")
@click.option("--reuse-from", type=click.Path(path_type=Path), default=None,
              help="Copy files built from the same input from this library (default for "
                   "--tier low: the default standard library).")
def build(functional, tier, dest, elements, workers, force, quiet, reuse_from) -> None:
    """Generate the library's UPF files with ld1.x and check each (about 1 min on 2 cores)."""
    dest = dest or default_library_dir(functional, tier)

    def progress(row: dict) -> None:
        if not quiet or row["status"] == "failed":
            print_progress(row)

    manifest = build_library(dest, functional, elements, tier, workers, force,
                             progress=progress, reuse_from=reuse_from)
    rows = [r for r in manifest["elements"] if elements is None or r["element"] in elements]
    failed = [r["element"] for r in rows if r["status"] != "ok"]
    click.echo(f"{len(rows) - len(failed)}/{len(rows)} elements ready in {dest}", err=True)
    if failed:
        raise CalculationError(f"pseudopotentials of {', '.join(failed)} did not build; see "
                               f"`sc-inverse pseudos list --dir {dest}` and {dest / 'ld1'}")


@pseudos.command("list")
@functional_option
@tier_option
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None,
              help="Library directory (default: settings.pseudo_dir, else the built library "
                   "of --functional/--tier).")
def list_(functional, tier, directory) -> None:
    """Element, file, suggested ecutwfc/ecutrho (Ry) and status of every pseudopotential."""
    directory = directory or get_settings().pseudo_dir or default_library_dir(functional, tier)
    rows = list_library(directory, functional, tier)
    click.echo(format_listing(rows))
    ok = sorted({r["element"] for r in rows if r["status"] == "ok" and r.get("element")})
    click.echo(f"\n{len(ok)} elements usable in {directory}", err=True)
    uncovered = not_covered(functional)
    if uncovered and (Path(directory) / "manifest.json").is_file():
        click.echo(f"not covered by the {functional} table: {', '.join(uncovered)}", err=True)
