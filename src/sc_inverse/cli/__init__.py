"""The ``sc-inverse`` command line: every click command of the project lives in this package.

Thin by design: one module per concern (:mod:`.generative`, :mod:`.screening`, :mod:`.qe`,
:mod:`.builders`, :mod:`.report`, :mod:`.run`, :mod:`.submit`, :mod:`.pseudos`; shared options in
:mod:`.options`) and this group imports them only when called, so ``sc-inverse --help`` does not
import torch or QE code.
"""

from __future__ import annotations

import importlib
import signal
import sys

import click

from sc_inverse.cli.output import configure_output
from sc_inverse.errors import ScInverseError, Terminated
from sc_inverse.settings import get_settings, legacy_data_dir_notice

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
@click.option("-v", "--verbose", count=True,
              help="More output: -v every INFO line, library warnings and tracebacks; -vv debug.")
@click.version_option(package_name="sc-inverse")
def cli(verbose: int) -> None:
    """sc-inverse: generate, screen and DFT-validate conventional superconductors."""
    configure_output(verbose)
    try:
        notice = legacy_data_dir_notice(get_settings())
    except ScInverseError:
        return  # the command itself reports a broken setting (this keeps `CMD --help` working)
    if notice:
        click.echo(notice, err=True)


def _one_line(exc: BaseException) -> str:
    return " | ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())


def _verbosity(argv: list[str]) -> int:
    """-v count of the group options (before the subcommand), for error reporting in main."""
    n = 0
    for arg in argv:
        if arg == "--verbose":
            n += 1
        elif arg.startswith("-") and not arg.startswith("--") and set(arg[1:]) == {"v"}:
            n += len(arg) - 1
        elif not arg.startswith("-"):
            break
    return n


def _raise_terminated(signum, frame) -> None:
    raise Terminated(signum)


def main() -> None:
    """Console entry point: every failure is one line on stderr, never a traceback (``-v``
    shows the traceback of unexpected errors).

    Exit status: 2 for errors the user can fix (:class:`ScInverseError`, files, store),
    1 for unexpected errors, 130 on Ctrl-C, 143 on SIGTERM (child QE processes are stopped on
    the way out, see :mod:`sc_inverse.qe.run`).
    """
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        cli(standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Terminated:
        click.echo("Terminated (SIGTERM); child processes stopped.", err=True)
        sys.exit(143)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ScInverseError as exc:
        click.echo(f"Error: {_one_line(exc)}", err=True)
        sys.exit(2)
    except OSError as exc:  # disk full, permissions, read-only file system
        where = f": {exc.filename}" if exc.filename else ""
        click.echo(f"Error: {exc.strerror or _one_line(exc)}{where}", err=True)
        sys.exit(2)
    except Exception as exc:
        if _verbosity(sys.argv[1:]):
            raise
        if type(exc).__name__ == "DatabaseError":  # sqlite3: a damaged embedded-store file
            click.echo(f"Error: a store file is damaged ({_one_line(exc)}); see `sc-inverse "
                       "query` for which one", err=True)
            sys.exit(2)
        click.echo(f"Error: unexpected {type(exc).__name__}: {_one_line(exc)[:300]} (run with "
                   "-v for the traceback)", err=True)
        sys.exit(1)
