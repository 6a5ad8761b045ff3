"""Running QE executables under custodian, with commands and MPI prefix from settings."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from custodian.custodian import Custodian, CustodianError, ErrorHandler, Job

from sc_inverse.errors import CalculationError
from sc_inverse.qe.parsers import JOB_DONE, qe_errors
from sc_inverse.qe.schemas import QeCorrection, RunTiming
from sc_inverse.qe.sets import QeInputSet

logger = logging.getLogger(__name__)

#: settings attribute holding each executable
EXECUTABLES = {"pw": "pw_cmd", "ph": "ph_cmd", "q2r": "q2r_cmd", "matdyn": "matdyn_cmd",
               "lambda": "lambda_cmd"}
#: which executables are parallel (get the MPI prefix); q2r/matdyn/lambda are cheap and serial
PARALLEL = {"pw", "ph"}


def qe_command(program: str, settings=None, parallel: bool | None = None) -> list[str]:
    """argv of ``program`` (pw, ph, q2r, matdyn, lambda) from settings, with MPI prefix."""
    from sc_inverse.settings import get_settings

    settings = settings or get_settings()
    exe = getattr(settings, EXECUTABLES[program])
    use_mpi = program in PARALLEL if parallel is None else parallel
    prefix = shlex.split(settings.mpi_prefix) if use_mpi and settings.mpi_prefix else []
    return prefix + shlex.split(exe)


class QeJob(Job):
    """One executable call: ``cmd -in input > output``; earlier attempts' outputs are kept."""

    def __init__(self, cmd: list[str], input_file: str, output_file: str, env: dict | None = None):
        self.cmd = list(cmd)
        self.input_file = input_file
        self.output_file = output_file
        self.env = env or {}
        self.attempt = 0

    def setup(self, directory="./"):
        pass

    def run(self, directory="./"):
        directory = Path(directory)
        out = directory / self.output_file
        if out.exists():
            self.attempt += 1
            out.rename(directory / f"{self.output_file}.attempt{self.attempt}")
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), **self.env}
        with open(out, "w") as fout, open(directory / f"{self.output_file}.stderr", "w") as ferr:
            return subprocess.Popen(
                self.cmd + ["-in", self.input_file], cwd=directory, stdout=fout, stderr=ferr,
                env=env,
            )

    def postprocess(self, directory="./"):
        pass


def run_problems(text: str) -> list[str]:
    """Why an output does not count as a finished run ([] = fine).

    pw.x and ph.x print JOB DONE even after "convergence NOT achieved", "Maximum CPU time
    exceeded" or "Program stopped by user request", so these are checked explicitly.
    """
    problems = qe_errors(text)
    if "convergence NOT achieved" in text:
        problems.append("scf convergence NOT achieved")
    if "Maximum CPU time exceeded" in text:
        problems.append("stopped at max_seconds (Maximum CPU time exceeded)")
    if "stopped by user request" in text:
        problems.append("stopped by a prefix.EXIT file (walltime)")
    if JOB_DONE not in text:
        problems.append("no 'JOB DONE' in output (truncated or killed)")
    return problems


@dataclass
class QeRunResult:
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


def run_qe(
    program: str,
    input_set: QeInputSet,
    directory: str | Path,
    handlers: list[ErrorHandler] | None = None,
    output_file: str | None = None,
    max_errors: int = 5,
    settings=None,
    polling_time_step: float = 2,
) -> QeRunResult:
    """Write ``input_set`` into ``directory`` and run ``program`` there under custodian.

    Raises CalculationError (naming step, directory and QE's own error message) when the run
    does not end with JOB DONE after the handlers' corrections.
    """
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    input_set.write_input(directory, overwrite=True)
    input_file = input_set.filename
    output_file = output_file or input_file.rsplit(".", 1)[0] + ".out"
    job = QeJob(qe_command(program, settings), input_file, output_file)
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
        run_log = cust.run()
        failure = None
    except CustodianError as exc:
        run_log = cust.run_log
        failure = str(exc)
    wall = time.perf_counter() - t0
    corrections = _corrections(run_log, program)
    out = directory / output_file
    text = out.read_text(errors="replace") if out.is_file() else ""
    problems = run_problems(text)
    if problems or failure:
        errs = "; ".join(problems) or failure
        stderr = directory / f"{output_file}.stderr"
        tail = stderr.read_text(errors="replace")[-300:] if stderr.is_file() else ""
        raise CalculationError(
            f"{program}.x failed in {directory} ({output_file}): {errs}"
            + (f" [corrections tried: {[c.errors for c in corrections]}]" if corrections else "")
            + (f" stderr: {tail.strip()}" if tail.strip() else "")
        )
    return QeRunResult(out, corrections, RunTiming(step=program, command=" ".join(job.cmd), wall_time_s=wall))
