"""Running QE executables under custodian, with commands and MPI prefix from settings.

:func:`run_qe` is the one way any QE executable (pw.x, ph.x, q2r.x, matdyn.x, lambda.x) runs:
it writes the input set, runs the program under custodian with the caller's error handlers,
times it, and raises :class:`~sc_inverse.errors.CalculationError` when the run did not finish.

Child processes never outlive the Python process that started them: each QE command runs in
its own process group (so stopping it reaches the ranks an ``mpirun`` prefix starts) with
Linux's parent-death signal set (SIGTERM when the parent dies, even by SIGKILL), and
:func:`run_qe` stops the group on any exit, including SIGTERM (turned into
:class:`~sc_inverse.errors.Terminated` while a run is in progress) and Ctrl-C.
:func:`check_executables` is the start-up check that every configured command exists.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from custodian.custodian import Custodian, CustodianError, ErrorHandler, Job

from sc_inverse.errors import CalculationError, SettingsError, Terminated
from sc_inverse.qe.parsers import JOB_DONE, qe_errors
from sc_inverse.qe.schemas import QeCorrection, RunTiming
from sc_inverse.qe.sets import QeInputSet
from sc_inverse.settings import get_settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QeProgram:
    """How one QE executable is called and how its finish is recognised."""

    settings_attr: str  # settings field holding the command, e.g. "pw_cmd"
    parallel: bool = False  # gets the MPI prefix (q2r/matdyn/lambda are cheap and serial)
    reads_stdin: bool = False  # lambda.x reads its input from stdin; the others take -in
    prints_job_done: bool = True  # lambda.x prints no JOB DONE: its exit status decides


PROGRAMS: dict[str, QeProgram] = {
    "pw": QeProgram("pw_cmd", parallel=True),
    "ph": QeProgram("ph_cmd", parallel=True),
    "q2r": QeProgram("q2r_cmd"),
    "matdyn": QeProgram("matdyn_cmd"),
    "lambda": QeProgram("lambda_cmd", reads_stdin=True, prints_job_done=False),
}


def qe_command(program: str, settings=None, parallel: bool | None = None) -> list[str]:
    """argv of ``program`` (pw, ph, q2r, matdyn, lambda) from settings, with MPI prefix."""
    settings = settings or get_settings()
    spec = PROGRAMS[program]
    exe = getattr(settings, spec.settings_attr)
    use_mpi = spec.parallel if parallel is None else parallel
    prefix = shlex.split(settings.mpi_prefix) if use_mpi and settings.mpi_prefix else []
    return prefix + shlex.split(exe)


def check_executables(programs: Iterable[str] = tuple(PROGRAMS), settings=None) -> None:
    """Raise :class:`SettingsError` naming the first configured command (and its setting) that
    is not an executable on ``PATH``; the MPI launcher of ``mpi_prefix`` is checked too."""
    settings = settings or get_settings()
    for program in programs:
        attr = PROGRAMS[program].settings_attr
        argv = shlex.split(getattr(settings, attr) or "")
        if not argv or shutil.which(argv[0]) is None:
            raise SettingsError(
                f"{program}.x: executable {argv[0] if argv else '(empty)'!r} not found (setting "
                f"{attr}: install Quantum ESPRESSO, or set SC_INVERSE_{attr.upper()} to its path)")
    if settings.mpi_prefix and any(PROGRAMS[p].parallel for p in programs):
        launcher = shlex.split(settings.mpi_prefix)[0]
        if shutil.which(launcher) is None:
            raise SettingsError(f"MPI launcher {launcher!r} of setting mpi_prefix not found "
                                "(install it, or set SC_INVERSE_MPI_PREFIX='' to run serially)")


_PR_SET_PDEATHSIG = 1
_prctl = getattr(ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True), "prctl", None) \
    if sys.platform.startswith("linux") else None


def _die_with_parent(parent_pid: int) -> None:
    """In the forked child, before exec: SIGTERM when the parent dies (Linux only); exit at
    once if it died before the signal was armed."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(1)


def stop_process_group(process: subprocess.Popen | None, grace_s: float = 5.0) -> None:
    """SIGTERM to the process group of ``process`` (it leads its own group), SIGKILL after
    ``grace_s``; no-op when it has already finished."""
    if process is None or process.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, grace_s)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _raise_terminated(signum, frame) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While a QE program runs: SIGTERM raises :class:`Terminated` (so ``finally`` blocks stop
    the children) when nothing else handles SIGTERM; only in the main thread."""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


class QeJob(Job):
    """One executable call: ``cmd -in input > output`` (``cmd < input > output`` with
    ``reads_stdin``); earlier attempts' outputs are kept, the last process is ``self.process``."""

    def __init__(self, cmd: list[str], input_file: str, output_file: str, env: dict | None = None,
                 reads_stdin: bool = False):
        self.cmd = list(cmd)
        self.input_file = input_file
        self.output_file = output_file
        self.env = env or {}
        self.reads_stdin = reads_stdin
        self.attempt = 0
        self.process: subprocess.Popen | None = None

    def setup(self, directory="./"):
        pass

    def run(self, directory="./"):
        directory = Path(directory)
        out = directory / self.output_file
        if out.exists():
            self.attempt += 1
            out.rename(directory / f"{self.output_file}.attempt{self.attempt}")
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), **self.env}
        argv = self.cmd if self.reads_stdin else [*self.cmd, "-in", self.input_file]
        stdin = open(directory / self.input_file) if self.reads_stdin else None  # noqa: SIM115
        try:
            with open(out, "w") as fout, open(directory / f"{self.output_file}.stderr", "w") as ferr:
                # own process group: stopping it reaches ranks an mpirun prefix starts
                self.process = subprocess.Popen(argv, cwd=directory, stdin=stdin, stdout=fout,
                                                stderr=ferr, env=env, process_group=0,
                                                preexec_fn=functools.partial(_die_with_parent, os.getpid()))
        finally:
            if stdin is not None:
                stdin.close()  # the child holds its own descriptor
        return self.process

    def terminate(self, directory="./") -> None:
        """What custodian calls to stop a run for a correction: the whole process group."""
        stop_process_group(self.process)

    def postprocess(self, directory="./"):
        pass


def run_problems(text: str, expect_job_done: bool = True) -> list[str]:
    """Why an output does not count as a finished run ([] = fine).

    pw.x and ph.x print JOB DONE even after "convergence NOT achieved", "Maximum CPU time
    exceeded" or "Program stopped by user request", so these are checked explicitly.
    ``expect_job_done=False`` for programs that never print it (lambda.x).
    """
    problems = qe_errors(text)
    if "convergence NOT achieved" in text:
        problems.append("scf convergence NOT achieved")
    if "Maximum CPU time exceeded" in text:
        problems.append("stopped at max_seconds (Maximum CPU time exceeded)")
    if "stopped by user request" in text:
        problems.append("stopped by a prefix.EXIT file (walltime)")
    if expect_job_done and JOB_DONE not in text:
        problems.append("no 'JOB DONE' in output (truncated or killed)")
    return problems


@dataclass
class QeRunResult:
    """A finished run: its output file, the handlers' corrections and its wall time."""

    output: Path
    corrections: list[QeCorrection] = field(default_factory=list)
    timing: RunTiming | None = None


def _corrections(run_log: list[dict], step: str) -> list[QeCorrection]:
    out = []
    for entry in run_log:
        for corr in entry.get("corrections", []):
            handler = corr.get("handler")
            name = type(handler).__name__ if not isinstance(handler, (str, dict)) else str(handler)
            out.append(QeCorrection(handler=name, errors=[str(e) for e in corr.get("errors") or []],
                                    actions=list(corr.get("actions") or []), step=step))
    return out


def _problems(program: str, job: QeJob, directory: Path, failure: str | None) -> list[str]:
    """Everything that says the last attempt did not finish ([] = it did)."""
    spec = PROGRAMS[program]
    out = directory / job.output_file
    text = out.read_text(errors="replace") if out.is_file() else ""
    problems = run_problems(text, expect_job_done=spec.prints_job_done)
    code = job.process.returncode if job.process is not None else None
    if not spec.prints_job_done and code != 0:
        problems.append(f"exit status {code}")
    if failure and not problems:
        problems.append(failure)
    return problems


def run_qe(
    program: str,
    input_set: QeInputSet,
    directory: str | Path,
    handlers: list[ErrorHandler] | None = None,
    output_file: str | None = None,
    max_errors: int = 5,
    settings=None,
    polling_time_step: float = 2,
    step: str | None = None,
) -> QeRunResult:
    """Write ``input_set`` into ``directory`` and run ``program`` there under custodian.

    ``step`` names the run in its :class:`RunTiming` (default: the program). Raises
    CalculationError (naming program, directory and QE's own error message) when the run does
    not finish (no JOB DONE, or a non-zero exit for lambda.x) after the handlers' corrections.
    """
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    input_set.write_input(directory, overwrite=True)
    input_file = input_set.filename
    output_file = output_file or input_file.rsplit(".", 1)[0] + ".out"
    job = QeJob(qe_command(program, settings), input_file, output_file,
                reads_stdin=PROGRAMS[program].reads_stdin)
    handlers = list(handlers or [])
    monitors = any(h.is_monitor for h in handlers)
    cust = Custodian(
        handlers,
        [job],
        max_errors=max_errors,
        polling_time_step=polling_time_step if monitors else 1,
        monitor_freq=1,
        directory=str(directory),
        terminate_on_nonzero_returncode=False,
    )
    t0 = time.perf_counter()
    logger.info("running %s in %s", " ".join(job.cmd), directory)
    try:
        with sigterm_raises():
            run_log = cust.run()
        failure = None
    except CustodianError as exc:
        run_log = cust.run_log
        failure = str(exc)
    finally:  # also on Terminated / KeyboardInterrupt: no QE process outlives this call
        stop_process_group(job.process)
    wall = time.perf_counter() - t0
    corrections = _corrections(run_log, program)
    problems = _problems(program, job, directory, failure)
    if problems:
        stderr = directory / f"{output_file}.stderr"
        tail = stderr.read_text(errors="replace")[-300:] if stderr.is_file() else ""
        raise CalculationError(
            f"{program}.x failed in {directory} ({output_file}): {'; '.join(problems)}"
            + (f" [corrections tried: {[c.errors for c in corrections]}]" if corrections else "")
            + (f" stderr: {tail.strip()}" if tail.strip() else "")
        )
    timing = RunTiming(step=step or program, command=" ".join(job.cmd), wall_time_s=wall)
    return QeRunResult(directory / output_file, corrections, timing)
