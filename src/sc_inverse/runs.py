"""Layout of one inverse-design run's folder, shared by the flow (writer) and the report (reader).

A core module, not part of :mod:`sc_inverse.pipeline`: the report reads run folders and must not
depend on the pipeline that writes them.

A run folder is self-describing, so ``sc-inverse report`` works from it alone, also after the
store moved or on another machine::

    <run>/candidates.json   generated records (after symmetry recovery)
    <run>/screened.json     every candidate with predictions, verdicts, passed, rank
    <run>/dft.json          one row per DFT-validated (or skipped) candidate
    <run>/funnel.json       stage counts and stage wall times
    <run>/run.json          how the run was started: command line, settings, code commit
                            (written by ``run`` / ``submit inverse-design``; older runs lack it)
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sc_inverse.errors import InputError
from sc_inverse.settings import get_settings


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def candidates(self) -> Path:
        return self.root / "candidates.json"

    @property
    def screened(self) -> Path:
        return self.root / "screened.json"

    @property
    def dft(self) -> Path:
        return self.root / "dft.json"

    @property
    def funnel(self) -> Path:
        return self.root / "funnel.json"

    @property
    def manifest(self) -> Path:
        return self.root / "run.json"

    def read_json(self, path: Path, default: Any = None) -> Any:
        if not path.exists():
            if default is not None:
                return default
            raise InputError(f"run folder {self.root}: missing {path.name}")
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: invalid JSON ({exc})") from exc

    def write_json(self, path: Path, data: Any) -> Path:
        """Atomic write: a crash never leaves a half-written file behind. NaN/inf (a failed ML
        prediction, whose record says why in ``errors``) are written as null: they are not JSON."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(finite_json(data), indent=1, default=str, allow_nan=False))
        tmp.replace(path)
        return path


def finite_json(data: Any) -> Any:
    """``data`` (nested dicts, lists, tuples) with every NaN/±inf float replaced by None."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite_json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_json(v) for v in data]
    return data


def code_version() -> str | None:
    """``git describe``-like id of the source tree this package runs from (commit, ``-dirty``
    when it has uncommitted changes); None outside a git checkout or without git."""
    src = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(src), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit or None


def write_manifest(run: RunDir, command: list[str], options: dict[str, Any],
                   flow_uuid: str | None = None) -> Path:
    """``run.json``: the command line that started the run, its options (``None`` = the
    setting's value when the job ran), the code commit and the flow's uuid, so a campaign
    report can state exactly what ran long after the shell that started it is gone."""
    return run.write_json(run.manifest, {
        "command": command,
        "options": options,
        "code_version": code_version(),
        "flow_uuid": flow_uuid,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })


def runs_root() -> Path:
    return Path(get_settings().data_dir) / "runs"


def new_run_dir(name: str | None = None) -> RunDir:
    """A fresh run folder under ``<data_dir>/runs/`` named by UTC time (or ``name``)."""
    name = name or datetime.now(timezone.utc).strftime("run-%Y%m%d-%H%M%S")
    root = runs_root() / name
    root.mkdir(parents=True, exist_ok=True)
    return RunDir(root)


def latest_run() -> Path:
    """The most recently modified run folder (for ``report`` without ``--run``)."""
    root = runs_root()
    runs = sorted((p for p in root.glob("*") if p.is_dir()), key=lambda p: p.stat().st_mtime) if root.exists() else []
    if not runs:
        raise InputError(f"no run folders under {root}; pass --run DIR or run `sc-inverse run` first")
    return runs[-1]
