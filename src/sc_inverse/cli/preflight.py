"""Checks every command runs before it computes anything (issue 12, "fail fast").

A command that would write a result file, use the store, start QE or read a preset from the
settings checks all of that first, in seconds, so that a mistake costs no compute and loses no
result: each failure is one :class:`~sc_inverse.errors.ScInverseError` line naming the option,
file or setting and the fix (``main`` prints it and exits with status 2).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from sc_inverse.errors import InputError, SettingsError
from sc_inverse.settings import ScInverseSettings, get_settings, setting_source

#: QE programs of the electron-phonon flow (relax/scf, ph.x per q, q2r, matdyn, lambda)
EPC_PROGRAMS = ("pw", "ph", "q2r", "matdyn", "lambda")


def _existing_ancestor(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_name_lengths(path: Path, option: str) -> None:
    anc = _existing_ancestor(path.parent)
    name_max = os.pathconf(anc, "PC_NAME_MAX") if anc.is_dir() else 255
    path_max = os.pathconf(anc, "PC_PATH_MAX") if anc.is_dir() else 4096
    for part in path.parts:
        if len(os.fsencode(part)) > name_max:
            raise InputError(f"{option} {path}: the name {part[:40]}... is {len(os.fsencode(part))} "
                             f"bytes, longer than this filesystem allows ({name_max}); shorten it")
    if len(os.fsencode(str(path))) >= path_max:
        raise InputError(f"{option}: the path is {len(os.fsencode(str(path)))} bytes, longer "
                         f"than this system allows ({path_max}); shorten it")


def _probe_directory(directory: Path, option: str, path: Path) -> None:
    """Write and remove a probe file in ``directory``, or in its nearest existing ancestor
    (where the missing folders would be created): the one test that catches every reason a
    later write fails (permissions, read-only or special file systems). Leaves nothing behind."""
    where = _existing_ancestor(directory)
    try:
        if not where.is_dir():
            raise NotADirectoryError(20, "not a directory")
        fd, probe = tempfile.mkstemp(dir=where, prefix=".sc-inverse-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"{option} {path}: cannot write in {where} "
                         f"({exc.strerror or type(exc).__name__}); choose another place") from None


def check_output_file(path: Path | str | None, option: str = "--out") -> Path | None:
    """``path`` can be written as a file later: not a directory, a name the filesystem takes,
    in a place this process can write. Nothing is created."""
    if path is None:
        return None
    path = Path(path).expanduser()
    _check_name_lengths(path.absolute(), option)  # first: stat() of a too-long name raises
    if path.is_dir():
        raise InputError(f"{option} {path} is a directory; give a file name inside it")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{option} {path} exists and is not writable")
    _probe_directory(path.absolute().parent, option, path)
    return path


def check_output_dir(path: Path | str | None, option: str = "--out") -> Path | None:
    """``path`` is a directory this process can write, or can be created as one. Nothing is
    created."""
    if path is None:
        return None
    path = Path(path).expanduser()
    _check_name_lengths(path.absolute(), option)
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {path} is a file; give a directory")
    _probe_directory(path.absolute(), option, path)
    return path


def check_preset(preset: str | None, setting: str, settings: ScInverseSettings | None = None) -> str:
    """The QE preset name to use: ``preset`` (already a valid --preset choice) or the setting's
    value, which must name a preset (the error says where that value came from)."""
    # qe.sets imports pymatgen: only the commands that run QE pay for it
    from sc_inverse.qe.sets import PRESETS

    if preset is not None:
        return preset
    name = getattr(settings or get_settings(), setting)
    if name not in PRESETS:
        raise SettingsError(f"setting {setting} = {name!r} from {setting_source(setting)}: unknown "
                            f"QE preset; choose one of {', '.join(sorted(PRESETS))}")
    return name


def check_qe(programs=EPC_PROGRAMS, settings: ScInverseSettings | None = None) -> None:
    """Every QE executable the command will start exists (and the MPI launcher)."""
    from sc_inverse.qe.run import check_executables  # custodian + pymatgen: QE commands only

    check_executables(programs, settings)


def check_store(settings: ScInverseSettings | None = None, write: bool = True) -> str:
    """The configured store is reachable (MongoDB: within 5 s), intact and, for ``write``,
    writable; returns its description (no credentials)."""
    from sc_inverse.stores.health import check_store as _check  # pymongo, maggma

    return _check(settings or get_settings(), write=write)


def check_launchpad(path: Path | str | None = None, settings: ScInverseSettings | None = None) -> str:
    """The LaunchPad file (``--launchpad`` or settings.launchpad_file) is valid and its MongoDB
    answers within 5 s (nothing is pinged in FireWorks' embedded mongomock mode)."""
    from sc_inverse.stores.health import check_launchpad_file, ping_mongo  # pymongo, maggma

    file = Path(path or (settings or get_settings()).launchpad_file).expanduser()
    if path is None and not file.is_file():  # what execution.load_launchpad falls back to
        from fireworks.fw_config import LAUNCHPAD_LOC

        if LAUNCHPAD_LOC:
            file = Path(LAUNCHPAD_LOC)
        elif os.environ.get("MONGOMOCK_SERVERSTORE_FILE"):
            return "embedded LaunchPad (MONGOMOCK_SERVERSTORE_FILE)"
        else:
            ping_mongo("localhost:27017", {"host": "localhost", "port": 27017},
                       fix=f"start MongoDB, or create {file} (see the README) or pass --launchpad")
            return "LaunchPad localhost:27017 (FireWorks default, no LaunchPad file)"
    return check_launchpad_file(file)


def say(message: str) -> None:
    """One line on stderr: where a command writes, what it checks (results go to stdout)."""
    click.echo(message, err=True)
