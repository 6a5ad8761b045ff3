"""Carry the work of a killed QE job into its re-run, so a stop costs minutes, not hours.

A worker killed at a session or allocation end leaves its Firework RESERVED/RUNNING; ``submit
recover`` (FireWorks' lost-run detection) re-runs it in a *new* launch directory, and everything
the killed attempt computed - a converged scf, the q-points ph.x had finished, the ionic steps of
a vc-relax - would be thrown away. Here each QE job records the directory of its attempt under
its jobflow ``(uuid, index)`` in ``<data_dir>/attempts/``; the registry entry is removed when the
job returns. A re-run that finds an entry (an attempt that died or raised) moves that attempt's
files into its own directory before it starts, and the steps then continue from them:

* pw.x: a run whose input is unchanged and whose output says JOB DONE (with its ``outdir``
  save) is not repeated (:func:`finished_pw_run`);
* ph.x: finished irreducible q-points are kept (``start_q``; phonon-only runs of the stability
  gate and EPC runs alike);
* vc-relax: an unfinished run restarts from its last ionic step.

Attempts started before this registry existed are found by their FireWorks launch directories
(a sibling ``launcher_*`` whose ``FW.json`` names the same job uuid). An attempt that finished is
never adopted, and neither is one whose process is still alive on this host.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from sc_inverse.settings import get_settings

logger = logging.getLogger(__name__)

REGISTRY_DIR = "attempts"
#: written into an attempt's directory when its files moved to a re-run
MOVED_MARKER = "MOVED_TO_RERUN"
#: written into an attempt's directory when its job returned
DONE_MARKER = ".sc_inverse_job_done"
#: FireWorks' own files stay with their launch
_FIREWORKS_FILES = ("FW.json", "FW.yaml", "FW_offline.json", "FW_ping.json")

_RESUMING: contextvars.ContextVar[Path | None] = contextvars.ContextVar("_RESUMING", default=None)


def job_key() -> str | None:
    """``<uuid>-<index>`` of the jobflow job running now, None outside a job."""
    from jobflow import CURRENT_JOB

    job = getattr(CURRENT_JOB, "job", None)
    return f"{job.uuid}-{job.index}" if job is not None else None


def resuming_from() -> Path | None:
    """The earlier attempt's directory whose files this attempt took over, or None."""
    return _RESUMING.get()


def _registry_file(key: str) -> Path:
    return Path(get_settings().data_dir).expanduser() / REGISTRY_DIR / f"{key}.json"


def _alive_here(entry: dict) -> bool:
    """The recorded attempt's process still runs on this host (never adopt from it)."""
    if entry.get("host") != socket.gethostname() or not entry.get("pid"):
        return False
    if int(entry["pid"]) == os.getpid():
        return False
    try:
        os.kill(int(entry["pid"]), 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _registered_attempt(key: str) -> Path | None:
    path = _registry_file(key)
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if _alive_here(entry):
        logger.warning("job %s: its earlier attempt (pid %s) still runs; not taking its files",
                       key, entry.get("pid"))
        return None
    return Path(entry["directory"])


def _launch_dirs_near(directory: Path) -> list[Path]:
    """FireWorks launch directories beside ``directory`` (rapidfire) or in sibling blocks."""
    parent = directory.parent
    found = list(parent.glob("launcher_*"))
    if parent.name.startswith("block_"):
        found += parent.parent.glob("block_*/launcher_*")
    return found


def _fireworks_attempt(uuid: str, directory: Path) -> Path | None:
    """The newest other FireWorks launch directory of this job that neither finished nor moved."""
    needle = f'"{uuid}"'.encode()
    candidates = []
    for launch in _launch_dirs_near(directory):
        if launch == directory or (launch / DONE_MARKER).exists() or (launch / MOVED_MARKER).exists():
            continue
        fw_json = launch / "FW.json"
        try:
            if needle in fw_json.read_bytes():
                candidates.append(launch)
        except OSError:
            continue
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)


def earlier_attempt(key: str, directory: Path) -> Path | None:
    """Where an earlier, unfinished attempt of job ``key`` ran (None: there was none)."""
    found = _registered_attempt(key)
    if found is None:
        found = _fireworks_attempt(key.rsplit("-", 1)[0], directory)
    if found is None or not found.is_dir():
        return None
    return found.resolve()


def adopt_files(source: Path, directory: Path) -> int:
    """Move ``source``'s files (not FireWorks' own) into ``directory``; leave a note there."""
    moved = 0
    for item in sorted(source.iterdir()):
        if item.name in _FIREWORKS_FILES or item.name in (MOVED_MARKER, DONE_MARKER):
            continue
        target = directory / item.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        shutil.move(str(item), str(target))
        moved += 1
    (source / MOVED_MARKER).write_text(f"{directory}\n")
    return moved


def _register(key: str, directory: Path) -> Path:
    path = _registry_file(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"directory": str(directory), "host": socket.gethostname(), "pid": os.getpid(),
             "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry))
    tmp.replace(path)
    return path


@contextlib.contextmanager
def resumable_attempt(directory: Path | None = None) -> Iterator[Path | None]:
    """Run the body as one attempt of the current job in ``directory`` (default: cwd).

    Takes over an earlier unfinished attempt's files first (yields its directory, else None);
    the registry entry stays when the body raises (or the process dies), so the next attempt
    finds this one.
    """
    key = job_key()
    if key is None:
        yield None
        return
    directory = (directory or Path.cwd()).resolve()
    earlier = earlier_attempt(key, directory)
    if earlier is not None and earlier != directory:
        moved = adopt_files(earlier, directory)
        logger.info("resuming job %s: took %d files of the attempt in %s", key, moved, earlier)
    registry = _register(key, directory)
    token = _RESUMING.set(earlier)
    try:
        yield earlier
    finally:
        _RESUMING.reset(token)
    registry.unlink(missing_ok=True)
    (directory / DONE_MARKER).touch()


def resumable(func: Callable) -> Callable:
    """Decorator for a Maker's ``make`` (under ``@job``): run it as a :func:`resumable_attempt`."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with resumable_attempt():
            return func(*args, **kwargs)

    return wrapper
