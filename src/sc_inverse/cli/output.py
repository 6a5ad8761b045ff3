"""What the command line prints besides results: logging, library warnings, spglib's C output.

Quiet by default (``verbosity`` 0): one line per job step (jobflow's "Starting job" lines,
shortened), the pipeline's stage summaries, sc-inverse's warnings and errors; a failed job is
one line (its exception) instead of jobflow's multi-line traceback; libraries' Python warnings
(FutureWarning, deprecations, ...) are hidden. ``-v`` shows every INFO line (timestamps,
logger names, full tracebacks, library warnings), ``-vv`` DEBUG and spglib's own messages.

Each line is printed once: the one handler lives on the root logger, and the CLI runs jobflow
with ``log=False`` (``run_locally(log=True)`` adds a second handler on the ``jobflow`` logger
that re-prints every line the root handler prints).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

#: loggers whose INFO lines a plain command shows: the pipeline's progress, the stability gate's
#: verdicts and a re-run taking over a killed attempt's work
QUIET_INFO_LOGGERS = ("sc_inverse.pipeline", "sc_inverse.qe.gate", "sc_inverse.qe.attempts")

_HANDLER_NAME = "sc-inverse"


class JobStepFilter(logging.Filter):
    """At the default verbosity: jobflow's "Starting job - NAME (uuid)" becomes "job: NAME",
    "Finished job"/"executing jobs locally" lines are dropped, and a job's traceback is cut
    to its last line (the exception)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("jobflow"):
            return True
        msg = record.getMessage()
        if msg.startswith("Starting job - "):
            name = msg[len("Starting job - "):].rsplit(" (", 1)[0]
            record.msg, record.args = f"job: {name}", None
            return True
        if " failed with exception:" in msg:
            name, _, tb = msg.partition(" failed with exception:")
            last = [line for line in tb.strip().splitlines() if line.strip()]
            record.msg = f"job {name} failed: {last[-1].strip() if last else 'unknown error'} (-v: traceback)"
            record.args, record.levelno, record.levelname = None, logging.WARNING, "WARNING"
            return True
        return record.levelno >= logging.WARNING


class QuietFormatter(logging.Formatter):
    """``HH:MM:SS message``; warnings and errors get their level in front of the message."""

    def __init__(self):
        super().__init__("%(asctime)s %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            stamp, _, rest = text.partition(" ")
            text = f"{stamp} {record.levelname.lower()}: {rest}"
        return text


def configure_output(verbosity: int = 0) -> None:
    """Set up logging, warning filters and spglib's switch for one command-line process."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == _HANDLER_NAME:
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    logging.getLogger("jobflow").handlers = []  # a library that configured itself earlier
    if verbosity == 0:
        handler.setFormatter(QuietFormatter())
        handler.addFilter(JobStepFilter())
        root.setLevel(logging.WARNING)
        for name in (*QUIET_INFO_LOGGERS, "jobflow"):
            logging.getLogger(name).setLevel(logging.INFO)
        # libraries' warnings (FutureWarning, deprecations, "No Pauling electronegativity",
        # torch tensor copies, ...) only with -v; sc-inverse's own warnings stay visible
        warnings.filterwarnings("ignore")
        warnings.filterwarnings("default", module=r"sc_inverse(\.|$)")
        # spglib (>= 2.x) reads this switch on every call; an explicit user value wins
        os.environ.setdefault("SPGLIB_WARNING", "OFF")
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        level = logging.INFO if verbosity == 1 else logging.DEBUG
        root.setLevel(level)
        for name in ("sc_inverse", "jobflow"):
            logging.getLogger(name).setLevel(level)
        if verbosity == 1:
            os.environ.setdefault("SPGLIB_WARNING", "OFF")
    root.addHandler(handler)
    logging.captureWarnings(True)


def say(message: str) -> None:
    """One informational line on stderr (where a command writes, what it found)."""
    print(message, file=sys.stderr, flush=True)
