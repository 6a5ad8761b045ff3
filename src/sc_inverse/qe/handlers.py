"""Custodian error handlers for pw.x and ph.x.

Each handler looks at the output of the last attempt and edits the namelist input in place
(via :func:`sc_inverse.qe.sets.update_namelist`); custodian then reruns the executable and
records the correction, which the task document keeps (``corrections``).

* :class:`PwScfConvergenceHandler` - "convergence NOT achieved": halve ``mixing_beta``
  (down to 0.05) and double ``electron_maxstep`` (up to 800).
* :class:`PwDiagonalizationHandler` - cdiaghg/rdiaghg/Cholesky/"S matrix not positive definite"
  failures: switch ``diagonalization`` david → cg → ppcg.
* :class:`PhRecoverHandler` - ph.x killed, truncated or stopped at ``max_seconds`` ("Maximum CPU
  time exceeded", after which ph.x still prints JOB DONE): restart at the first unfinished
  q-point (``start_q``, finished q-points kept, no ``max_seconds``); QE's ``recover=.true.`` is
  available as ``strategy="recover"`` but corrupts the interrupted q-point in QE 6.7 EPC runs.
* :class:`QeWalltimeHandler` - monitor: shortly before the job's wall time, write
  ``prefix.EXIT`` in the run directory so QE stops at a clean checkpoint (QE's own mechanism);
  the run then ends with a CalculationError naming the directory, whose input the other
  handlers have already set up to continue.
"""

from __future__ import annotations

import time
from pathlib import Path

from custodian.custodian import ErrorHandler

from sc_inverse.qe.parsers import JOB_DONE, qe_errors
from sc_inverse.qe.sets import parse_fortran_value, read_namelist, update_namelist

DIAG_ERRORS = (
    "cdiaghg",
    "rdiaghg",
    "cdiagh",
    "S matrix not positive definite",
    "problems computing cholesky",
    "too many bands are not converged",
    "eigenvectors failed to converge",
)
DIAG_ORDER = ("david", "cg", "ppcg")


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.is_file() else ""


class _QeHandler(ErrorHandler):
    """Common plumbing: the input/output pair in the run directory."""

    def __init__(self, input_file: str = "pw.in", output_file: str = "pw.out"):
        self.input_file = input_file
        self.output_file = output_file

    def _paths(self, directory: str) -> tuple[Path, Path]:
        return Path(directory) / self.input_file, Path(directory) / self.output_file

    def _update(self, directory: str, namelist: str, updates: dict) -> dict:
        inp, _ = self._paths(directory)
        inp.write_text(update_namelist(inp.read_text(), namelist, updates))
        return {"file": self.input_file, "action": {"_set": {f"{namelist}.{k}": v for k, v in updates.items()}}}


class PwScfConvergenceHandler(_QeHandler):
    """SCF not converged: gentler mixing, more iterations."""

    is_monitor = False
    max_num_corrections = 4

    def __init__(self, input_file="pw.in", output_file="pw.out", min_beta=0.05, max_steps=800):
        super().__init__(input_file, output_file)
        self.min_beta = min_beta
        self.max_steps = max_steps

    def check(self, directory="./") -> bool:
        return "convergence NOT achieved" in _text(self._paths(directory)[1])

    def correct(self, directory="./") -> dict:
        inp, _ = self._paths(directory)
        electrons = read_namelist(inp.read_text(), "electrons")
        beta = float(parse_fortran_value(electrons.get("mixing_beta", "0.7")))
        steps = int(parse_fortran_value(electrons.get("electron_maxstep", "100")))
        updates = {}
        if beta > self.min_beta:
            updates["mixing_beta"] = round(max(self.min_beta, beta / 2), 4)
        if steps < self.max_steps:
            updates["electron_maxstep"] = min(self.max_steps, steps * 2)
        if not updates:
            return {"errors": ["scf not converged"], "actions": None}
        return {"errors": ["scf not converged"], "actions": [self._update(directory, "electrons", updates)]}


class PwDiagonalizationHandler(_QeHandler):
    """Davidson (or cg) diagonalisation failure: switch to the next, more robust algorithm."""

    is_monitor = False
    max_num_corrections = 2

    def check(self, directory="./") -> bool:
        text = _text(self._paths(directory)[1])
        errors = " ".join(qe_errors(text))
        return any(key.lower() in errors.lower() for key in DIAG_ERRORS)

    def correct(self, directory="./") -> dict:
        inp, out = self._paths(directory)
        errors = qe_errors(_text(out))
        current = str(parse_fortran_value(read_namelist(inp.read_text(), "electrons").get("diagonalization", "'david'")))
        nxt = DIAG_ORDER.index(current) + 1 if current in DIAG_ORDER else 1
        if nxt >= len(DIAG_ORDER):
            return {"errors": errors, "actions": None}
        action = self._update(directory, "electrons", {"diagonalization": DIAG_ORDER[nxt]})
        return {"errors": errors, "actions": [action]}


class PhRecoverHandler(_QeHandler):
    """ph.x did not finish (killed, out of time, failed restart): continue where it stopped.

    ``strategy="restart_q"`` (default) reruns ph.x without ``recover`` from the first q-point
    whose dyn + elph files are missing (``start_q``); finished q-points are independent and kept.
    ``strategy="recover"`` uses QE's ``recover=.true.`` first - but with QE 6.7 we measured
    that recovering an EPC run stopped inside a q-point corrupts that q-point (fcc Al: 153/1319
    instead of 117/211 cm⁻¹), so it is not the default; a failed recover falls back to restart_q.
    """

    is_monitor = False
    max_num_corrections = 4

    def __init__(self, input_file="ph.in", output_file="ph.out", strategy: str = "restart_q"):
        super().__init__(input_file, output_file)
        if strategy not in ("restart_q", "recover"):
            raise ValueError(f"unknown strategy {strategy!r}")
        self.strategy = strategy

    def check(self, directory="./") -> bool:
        inp, out = self._paths(directory)
        text = _text(out)
        if "Maximum CPU time exceeded" in text or "stopped by user request" in text:
            return True  # ph.x still prints JOB DONE then
        errors = qe_errors(text)
        if JOB_DONE in text and not errors:
            return False
        if inp.is_file() and self._recovering(inp):
            return True  # a failed recover (e.g. 'broyden: factorization'): restart instead
        return not errors

    @staticmethod
    def _recovering(inp: Path) -> bool:
        params = read_namelist(inp.read_text(), "inputph")
        return parse_fortran_value(params.get("recover", ".false.")) is True

    def correct(self, directory="./") -> dict:
        inp, out = self._paths(directory)
        text = _text(out)
        why = (
            "ph.x stopped at max_seconds"
            if "Maximum CPU time exceeded" in text
            else "ph.x killed, truncated or failed while recovering"
        )
        if self.strategy == "recover" and not self._recovering(inp):
            action = self._update(directory, "inputph", {"recover": True, "max_seconds": None})
            return {"errors": [why], "actions": [action]}
        params = read_namelist(inp.read_text(), "inputph")
        fildyn = str(parse_fortran_value(params.get("fildyn", "'matdyn'")))
        start = int(parse_fortran_value(params.get("start_q", "1")))
        done = completed_qpoints(Path(directory), fildyn)
        next_q = start
        while next_q in done:
            next_q += 1
        action = self._update(directory, "inputph",
                              {"recover": None, "max_seconds": None, "start_q": next_q})
        return {"errors": [f"{why}; restarting at q-point {next_q}"], "actions": [action]}


def completed_qpoints(directory: Path, fildyn: str, elph: bool = True) -> set[int]:
    """Indices of q-points with a complete dynamical matrix and (``elph``) EPC file."""
    done = set()
    for dyn in directory.glob(f"{fildyn}*"):
        suffix = dyn.name[len(fildyn):]
        if not suffix.isdigit() or suffix == "0":
            continue
        elph_file = directory / "elph_dir" / f"elph.inp_lambda.{suffix}"
        if (elph_file.is_file() or not elph) and "Diagonalizing the dynamical matrix" in _text(dyn):
            done.add(int(suffix))
    return done


class QeWalltimeHandler(ErrorHandler):
    """Monitor: write ``prefix.EXIT`` ``buffer_s`` before ``wall_time_s`` (since start).

    QE looks for the file in the directory it runs in (not in ``outdir``), stops at the next
    checkpoint with "Program stopped by user request" and deletes the file.
    """

    is_monitor = True
    is_terminating = False
    raises_runtime_error = False

    def __init__(self, wall_time_s: float, prefix: str, buffer_s: float = 300.0,
                 start_time: float | None = None):
        self.wall_time_s = float(wall_time_s)
        self.buffer_s = float(buffer_s)
        self.prefix = prefix
        self.start_time = time.time() if start_time is None else start_time
        self.exit_written = False

    def check(self, directory="./") -> bool:
        if self.exit_written:
            return False
        return time.time() - self.start_time > self.wall_time_s - self.buffer_s

    def correct(self, directory="./") -> dict:
        exit_file = Path(directory) / f"{self.prefix}.EXIT"
        exit_file.write_text("stop requested by sc-inverse QeWalltimeHandler\n")
        self.exit_written = True
        return {"errors": [f"walltime: wrote {exit_file.name} for a clean QE stop"], "actions": None}
