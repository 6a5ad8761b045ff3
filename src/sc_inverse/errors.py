"""One exception hierarchy for the whole package.

Every message names the offending file, element, field or model so a user can fix the input
without reading a traceback.
"""

from __future__ import annotations


class ScInverseError(Exception):
    """Base class of every error raised on purpose by sc-inverse."""


class InputError(ScInverseError, ValueError):
    """A user-supplied file, record or option is malformed."""


class SettingsError(InputError):
    """A setting (environment variable, settings file) or another configuration file
    (LaunchPad, FWorker, jobflow.yaml) is malformed or holds a bad value."""


class MissingPseudopotentialError(ScInverseError):
    """One or more elements have no pseudopotential in the configured library."""

    def __init__(self, elements: list[str], pseudo_dir: str, pattern: str):
        self.elements = sorted(set(elements))
        self.pseudo_dir = pseudo_dir
        self.pattern = pattern
        super().__init__(
            f"no pseudopotential for {', '.join(self.elements)} in {pseudo_dir!s} "
            f"(filename pattern {pattern!r})"
        )


class CalculationError(ScInverseError, RuntimeError):
    """An external calculation (QE, training, relaxation) failed beyond recovery."""


class ParseError(ScInverseError, ValueError):
    """An output file is truncated or not what it claims to be."""


class ModelLoadError(ScInverseError):
    """A model (checkpoint, ALIGNN directory, registry name) cannot be loaded."""


class StoreError(ScInverseError):
    """The configured results store cannot be reached or is misconfigured."""


class Terminated(BaseException):
    """The process received SIGTERM.

    Raised from a signal handler so that ``finally`` blocks (stopping child QE processes) run
    before the process exits; a BaseException like KeyboardInterrupt, so that code catching
    ``Exception`` (jobflow, custodian) does not swallow it.
    """

    def __init__(self, signum: int = 15):
        self.signum = signum
        super().__init__(f"terminated by signal {signum}")
