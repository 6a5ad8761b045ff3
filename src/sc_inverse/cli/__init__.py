"""The ``sc-inverse`` command line: every click command of the project lives in this package.

Thin by design: one module per concern (:mod:`.generative`, :mod:`.screening`, :mod:`.qe`,
:mod:`.builders`, :mod:`.report`, :mod:`.run`, :mod:`.submit`, :mod:`.pseudos`; shared options in
:mod:`.options`) and this group imports them only when called, so ``sc-inverse --help`` does not
import torch or QE code.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from sc_inverse.errors import ScInverseError

#: command name -> "module:attribute" of a click command
COMMANDS: dict[str, str] = {
    "epc": "sc_inverse.cli.qe:epc",
    "pseudos": "sc_inverse.cli.pseudos:pseudos",
    "train-generator": "sc_inverse.cli.generative:train_generator",
    "generate": "sc_inverse.cli.generative:generate",
    "evaluate-generator": "sc_inverse.cli.generative:evaluate_generator",
    "train-predictor": "sc_inverse.cli.screening:train_predictor",
    "predict": "sc_inverse.cli.screening:predict",
    "screen": "sc_inverse.cli.screening:screen",
    "build": "sc_inverse.cli.builders:build",
    "query": "sc_inverse.cli.builders:query",
    "submit": "sc_inverse.cli.submit:submit",
    "rlaunch": "sc_inverse.cli.launch:rlaunch",
    "qlaunch": "sc_inverse.cli.launch:qlaunch",
    "lpad": "sc_inverse.cli.launch:lpad",
    "run": "sc_inverse.cli.run:run",
    "report": "sc_inverse.cli.report:report",
}

COMMAND_HELP: dict[str, str] = {
    "epc": "DFT-PT electron-phonon T_c of one structure with Quantum ESPRESSO.",
    "pseudos": "Build and list the PBEsol pseudopotential library (ld1.x).",
    "train-generator": "Train the CDVAE generator.",
    "generate": "Sample new crystals from a CDVAE checkpoint.",
    "evaluate-generator": "Validity, uniqueness, novelty and coverage metrics of generated crystals.",
    "train-predictor": "Train an ALIGNN property model.",
    "predict": "Predict properties (T_c, ...) of structures.",
    "screen": "Screen candidates with ML criteria and rank survivors.",
    "build": "Run the maggma builders (superconductors, thermo).",
    "query": "Query the superconductors/thermo collections.",
    "submit": "Submit a flow to the FireWorks LaunchPad.",
    "rlaunch": "FireWorks' rlaunch, safe on the embedded LaunchPad.",
    "qlaunch": "FireWorks' qlaunch, safe on the embedded LaunchPad.",
    "lpad": "FireWorks' lpad, safe on the embedded LaunchPad.",
    "run": "Run the whole inverse-design flow locally.",
    "report": "Paper-style figures and summary of a run.",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            if ctx.resilient_parsing or "--help" in sys.argv:
                return click.Command(name, help=f"(unavailable: {exc})")
            raise click.ClickException(f"command {name!r} is not available: {exc}") from exc

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMAND_HELP.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.version_option(package_name="sc-inverse")
def cli(verbose: int) -> None:
    """sc-inverse: generate, screen and DFT-validate conventional superconductors."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main() -> None:
    """Console entry point: turn expected errors into one clear line and exit code 2."""
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ScInverseError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)

