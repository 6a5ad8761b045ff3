"""``sc-inverse rlaunch|qlaunch|lpad ARGS``: FireWorks' scripts, safe on the embedded LaunchPad.

Same arguments as FireWorks' own commands (``sc-inverse rlaunch -h`` shows FireWorks' help).
On an embedded LaunchPad (``MONGOMOCK_SERVERSTORE_FILE``) every LaunchPad operation works on
the shared file under its lock, so concurrent workers never run a Firework twice and Ctrl-C
never rolls the LaunchPad back. ``rapidfire`` stops when nothing is READY for the worker and
nothing is RUNNING or RESERVED (Fireworks created at run time included); ``--until-idle``
(first, before FireWorks' arguments) also waits while READY work of other categories is left,
for workers of several categories started together
(:func:`sc_inverse.execution.run_fireworks_script`).
"""

from __future__ import annotations

import click

from sc_inverse.execution import run_fireworks_script

_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True,
                 "allow_interspersed_args": False, "help_option_names": []}


_UNTIL_IDLE_HELP = (" rapidfire stops when nothing is READY for this worker and nothing RUNNING; "
                    "with `--until-idle` (before FireWorks' arguments) only when nothing is READY "
                    "for any worker either (workers of several categories started together).")


def _fireworks_command(name: str, summary: str, until_idle: bool) -> click.Command:
    help_text = (f"{summary} FireWorks' `{name}` with the same arguments (`-h`: its help), safe "
                 "with concurrent workers on the embedded LaunchPad."
                 + (_UNTIL_IDLE_HELP if until_idle else ""))

    @click.command(name, context_settings=_PASS_THROUGH, add_help_option=False, help=help_text)
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    @click.pass_context
    def command(ctx: click.Context, args: tuple[str, ...]) -> None:
        wait = bool(args) and args[0] == "--until-idle"
        if wait and not until_idle:
            raise click.UsageError(f"--until-idle applies to rlaunch and qlaunch, not {name}")
        ctx.exit(run_fireworks_script(name, args[wait:], until_idle=wait))

    return command


rlaunch = _fireworks_command("rlaunch", "Run Fireworks in this process:", until_idle=True)
qlaunch = _fireworks_command("qlaunch", "Submit Fireworks as queue jobs:", until_idle=True)
lpad = _fireworks_command("lpad", "Inspect and manage the LaunchPad:", until_idle=False)
