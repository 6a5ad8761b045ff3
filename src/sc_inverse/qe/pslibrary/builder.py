"""Build the pseudopotential library with QE's atomic code ``ld1.x`` and check every result.

Each table entry becomes one ``ld1.x`` run in its own scratch folder (``ld1.x`` writes fixed
file names such as ``ld1.wfc`` into its working directory, so runs cannot share one). A result is
accepted only when

- ``ld1.x`` ended normally and wrote the UPF file, whose header parses (:func:`check_upf`) and
  names the expected element and functional;
- ``ld1.x``'s own test of the pseudopotential (the all-electron vs pseudo eigenvalues of every
  test configuration the input defines; the generation configuration when it defines none)
  agrees within :data:`MAX_EIGENVALUE_ERROR_RY`;
- the output reports no ghost sign: errors in the pseudo Kohn-Sham equations or pseudo
  wavefunctions with an unexpected number of nodes.

The destination gets the accepted UPF files, the inputs and outputs of ``ld1.x`` (``ld1/``) and a
``manifest.json`` with one row per element (file, suggested cutoffs, status, reason of failure).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pymatgen.core import Element

from sc_inverse.errors import CalculationError, InputError, ParseError
from sc_inverse.qe.pslibrary.table import input_digest, ld1_input, load_table, select_entries
from sc_inverse.qe.pslibrary.upf import check_upf

MANIFEST = "manifest.json"
LD1_TIMEOUT_S = 300
# |e_AE - e_PS| of ld1.x's test; the worst in the built PBEsol library (both tiers) is 1.3e-3 Ry
MAX_EIGENVALUE_ERROR_RY = 0.01
# output lines that signal a ghost state or a pseudo-atom that does not reproduce the atom
GHOST_SIGNS = (
    re.compile(r"errors? in PS-KS equation", re.I),
    re.compile(r"error in KS equations", re.I),
    re.compile(r"Warning: n=\s*\d+, l=\s*\d+ expected\s+\d+ nodes", re.I),
)
_TEST_ROW = re.compile(
    r"^\s*\d+\s+\d+\s+(\d[SPDFspdf])\s+\d\(\s*[-\d.]+\)\s+(-?[\d.]+)\s+(-?[\d.]+)\s+(-?[\d.]+)\s*$"
)
_FATAL = re.compile(r"%{10,}\s*\n\s*Error in routine (.*?)\n(.*?)\n", re.S)

Progress = Callable[[dict[str, Any]], None]


def default_library_dir(functional: str = "pbesol", tier: str = "standard") -> Path:
    """Where the library of ``functional``/``tier`` lives when no destination is given.

    ``SC_INVERSE_PSEUDO_DIR`` (the pseudopotential directory of the settings) overrides the
    standard tier's location; otherwise the per-user data directory
    (``$XDG_DATA_HOME`` or ``~/.local/share``) ``/sc-inverse/pseudos/<functional>[-low]``, so the
    library is found from any working directory.
    """
    env = os.environ.get("SC_INVERSE_PSEUDO_DIR")
    if env and tier == "standard":
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_DATA_HOME") or "~/.local/share").expanduser()
    name = functional if tier == "standard" else f"{functional}-{tier}"
    return base / "sc-inverse" / "pseudos" / name


def find_ld1(executable: str = "ld1.x") -> str:
    """Path of the ``ld1.x`` executable, or a clear error telling how to get it."""
    path = shutil.which(executable)
    if path is None:
        raise CalculationError(
            f"{executable} (Quantum ESPRESSO's atomic code) not found on PATH; install the "
            "'quantum-espresso' package (bash install.sh) or put ld1.x on PATH"
        )
    return path


def eigenvalue_errors(output: str) -> list[float]:
    """|e_AE - e_PS| (Ry) of every state in every 'Testing the pseudopotential' block."""
    errors, inside = [], False
    for line in output.splitlines():
        if "Testing the pseudopotential" in line:
            inside = True
        elif "End of pseudopotential test" in line:
            inside = False
        elif inside and (m := _TEST_ROW.match(line)):
            errors.append(abs(float(m.group(4))))
    return errors


def assess_output(output: str) -> tuple[str | None, float | None]:
    """(reason the run is rejected or ``None``, largest eigenvalue error in Ry)."""
    fatal = _FATAL.search(output)
    if fatal:
        routine = fatal.group(1).strip().rstrip(":")
        return f"ld1.x error in {routine}: {fatal.group(2).strip()}", None
    ghosts = sorted({m.group(0) for sign in GHOST_SIGNS for m in sign.finditer(output)})
    errors = eigenvalue_errors(output)
    worst = max(errors) if errors else None
    if ghosts:
        return f"ghost/unreproduced state reported by ld1.x: {'; '.join(ghosts)}", worst
    if worst is None:
        return "ld1.x did not test the pseudopotential (no test block in its output)", None
    if worst > MAX_EIGENVALUE_ERROR_RY:
        return (f"ld1.x test: eigenvalue error {worst:.4f} Ry > {MAX_EIGENVALUE_ERROR_RY} Ry",
                worst)
    return None, worst


def _run_ld1(ld1: str, text: str, workdir: Path) -> tuple[int | None, str, float]:
    """Run ``ld1.x`` on ``text`` in ``workdir``: (exit code or None on timeout, output, wall s)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "ld1.in").write_text(text)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([ld1], input=text, capture_output=True, text=True, cwd=workdir,
                              timeout=LD1_TIMEOUT_S, env={**os.environ, "OMP_NUM_THREADS": "1"})
        code, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout or ""
        code = None
        out = partial.decode(errors="replace") if isinstance(partial, bytes) else partial
    (workdir / "ld1.out").write_text(out)
    return code, out, time.perf_counter() - t0


def build_entry(entry: dict[str, Any], workdir: Path, functional: str = "pbesol",
                ld1: str | None = None) -> dict[str, Any]:
    """Generate one pseudopotential in ``workdir`` and return its manifest row."""
    ld1 = ld1 or find_ld1()
    text = ld1_input(entry, functional)
    row: dict[str, Any] = {
        "element": entry["element"], "file": entry["file"], "functional": functional,
        "tier": entry["tier"], "label": entry["label"], "version": entry["version"],
        "pseudo_type": None, "z_valence": None, "ecutwfc_Ry": None, "ecutrho_Ry": None,
        "max_eigenvalue_error_Ry": None, "status": "failed", "reason": None,
        "input_digest": input_digest(text), "wall_s": None,
    }
    code, out, wall = _run_ld1(ld1, text, workdir)
    row["wall_s"] = round(wall, 2)
    reason, worst = assess_output(out)
    row["max_eigenvalue_error_Ry"] = worst
    if code is None:
        row["reason"] = f"ld1.x did not finish within {LD1_TIMEOUT_S} s"
        return row
    if reason is None and code != 0:
        reason = f"ld1.x exited with status {code}"
    if reason is None:
        try:
            header = check_upf(workdir / entry["file"])
        except ParseError as exc:
            reason = str(exc)
        else:
            expected = load_table(functional)["functional"]["dft"]
            if header.element.strip() != entry["element"] or header.functional != expected:
                reason = (f"{entry['file']}: header says {header.element}/{header.functional}, "
                          f"expected {entry['element']}/{expected}")
            row.update(pseudo_type=header.pseudo_type, z_valence=header.z_valence,
                       ecutwfc_Ry=header.ecutwfc_Ry, ecutrho_Ry=header.ecutrho_Ry)
    row["reason"] = reason
    row["status"] = "ok" if reason is None else "failed"
    return row


def build_entries(entries: list[dict[str, Any]], scratch: Path, functional: str = "pbesol",
                  workers: int = 2, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Build ``entries`` in parallel (``workers`` ld1.x processes), one scratch folder each."""
    ld1 = find_ld1()

    def one(entry: dict[str, Any]) -> dict[str, Any]:
        row = build_entry(entry, scratch / Path(entry["file"]).stem, functional, ld1)
        if progress:
            progress(row)
        return row

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(one, entries))


def print_progress(row: dict[str, Any]) -> None:
    """One line per element on stderr."""
    if row["status"] == "ok":
        cut = f"{row['ecutwfc_Ry'] or 0:5.1f}/{row['ecutrho_Ry'] or 0:6.1f} Ry"
        print(f"[pseudos] {row['element']:2s} ok      {row['file']:42s} {cut}  "
              f"({row['wall_s']:.1f} s)", file=sys.stderr, flush=True)
    elif row["status"] == "cached":
        where = f" (copied from {row['copied_from']})" if row.get("copied_from") else ""
        print(f"[pseudos] {row['element']:2s} present {row['file']}{where}", file=sys.stderr,
              flush=True)
    else:
        print(f"[pseudos] {row['element']:2s} FAILED  {row['file']}: {row['reason']}",
              file=sys.stderr, flush=True)


def read_manifest(dest: str | Path) -> dict[str, Any] | None:
    """The manifest of a built library, ``None`` when there is none."""
    path = Path(dest) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ParseError(f"{path}: corrupt library manifest ({exc})") from exc


def _reusable(dest: Path, entry: dict[str, Any], old: dict[str, Any] | None,
              functional: str) -> bool:
    """Whether ``dest`` already holds a checked file built from exactly this entry's input."""
    if not old or old.get("status") != "ok" or old.get("file") != entry["file"]:
        return False
    if old.get("input_digest") != input_digest(ld1_input(entry, functional)):
        return False
    try:
        check_upf(dest / entry["file"])
    except ParseError:
        return False
    return True


def _install(dest: Path, scratch: Path, row: dict[str, Any]) -> None:
    """Copy an accepted UPF and the ld1.x input/output of every run into ``dest``."""
    run_dir = scratch / Path(row["file"]).stem
    logs = dest / "ld1"
    logs.mkdir(parents=True, exist_ok=True)
    for name in ("ld1.in", "ld1.out"):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, logs / f"{Path(row['file']).stem}.{name.split('.')[1]}")
    if row["status"] == "ok":
        shutil.copy2(run_dir / row["file"], dest / row["file"])


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (a library file is ~1 MB; tiers share most), else copy."""
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _copy_from(source: Path | None, dest: Path, entries: list[dict[str, Any]],
               functional: str) -> dict[str, dict[str, Any]]:
    """Rows of ``entries`` whose checked file another library built from the same input;
    their files are copied into ``dest`` (the low tier shares most files with the standard)."""
    if source is None or source.resolve() == dest.resolve():
        return {}
    try:
        other = read_manifest(source) or {}
    except ParseError:
        return {}
    rows = {r["element"]: r for r in other.get("elements", [])}
    copied = {}
    for entry in entries:
        row = rows.get(entry["element"])
        if row and _reusable(source, entry, row, functional):
            _link_or_copy(source / entry["file"], dest / entry["file"])
            copied[entry["element"]] = {**row, "tier": entry["tier"], "copied_from": str(source)}
    return copied


def build_library(
    dest: str | Path | None = None,
    functional: str = "pbesol",
    elements: list[str] | None = None,
    tier: str = "standard",
    workers: int = 2,
    force: bool = False,
    progress: Progress | None = print_progress,
    reuse_from: str | Path | None = None,
) -> dict[str, Any]:
    """Build (or complete) the library in ``dest`` and return its manifest.

    Elements whose file is already present, checked and built from the same input are kept
    (``force`` rebuilds them), so running it again is cheap; so are files of ``reuse_from`` (by
    default, for a tier other than ``standard``, the default standard library) built from the
    same input, which are copied. The manifest keeps rows of elements not requested this time.
    Failures do not raise: they are rows with ``status: failed`` and a reason.

    Raises:
        InputError: an unknown element or one the table does not cover (all named at once), or
            a destination that holds another functional's or tier's library.
        CalculationError: ``ld1.x`` is not installed.
    """
    entries = select_entries(elements, functional, tier)
    find_ld1()
    dest = Path(dest) if dest is not None else default_library_dir(functional, tier)
    dest.mkdir(parents=True, exist_ok=True)
    old = read_manifest(dest) or {}
    if old and (old.get("functional"), old.get("tier")) != (functional, tier):
        raise InputError(f"{dest} holds the {old.get('functional')}/{old.get('tier')} library, "
                         f"not {functional}/{tier}; choose another destination")
    rows = {r["element"]: r for r in old.get("elements", [])}
    present = [e for e in entries
               if not force and _reusable(dest, e, rows.get(e["element"]), functional)]
    if reuse_from is None and tier != "standard":
        reuse_from = default_library_dir(functional, "standard")
    missing = [e for e in entries if e not in present]
    copied = {} if force else _copy_from(reuse_from and Path(reuse_from), dest, missing,
                                         functional)
    for row in [rows[e["element"]] for e in present] + list(copied.values()):
        rows[row["element"]] = row
        if progress:
            progress({**row, "status": "cached"})
    todo = [e for e in missing if e["element"] not in copied]
    t0 = time.perf_counter()
    scratch = dest / ".scratch"
    try:
        for row in build_entries(todo, scratch, functional, workers, progress):
            _install(dest, scratch, row)
            rows[row["element"]] = row
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    manifest = {
        "functional": functional, "tier": tier, "source": load_table(functional)["source"],
        "built": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "build_wall_s": round(time.perf_counter() - t0, 1), "n_built": len(todo),
        "elements": [rows[e] for e in sorted(rows, key=_z)],
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _z(symbol: str) -> int:
    return Element(symbol).Z


def list_library(dest: str | Path | None = None, functional: str = "pbesol",
                 tier: str = "standard") -> list[dict[str, Any]]:
    """One row per element: element, file, suggested ecutwfc/ecutrho (Ry), status, reason.

    A built library is read from its manifest (a row whose file has gone missing becomes
    ``status: missing``); any other directory of UPF files (GBRV, SSSP) is listed from the
    files' headers, one row per file.
    """
    dest = Path(dest) if dest is not None else default_library_dir(functional, tier)
    if not dest.is_dir():
        raise InputError(f"pseudopotential library {dest} does not exist (build it first)")
    manifest = read_manifest(dest)
    if manifest is not None:
        rows = []
        for row in manifest["elements"]:
            if row["status"] == "ok" and not (dest / row["file"]).is_file():
                row = {**row, "status": "missing", "reason": f"{row['file']} not in {dest}"}
            rows.append(row)
        return rows
    rows = []
    for path in sorted(p for p in dest.iterdir() if p.suffix.lower() == ".upf"):
        try:
            h = check_upf(path)
            rows.append({**h.as_dict(), "status": "ok", "reason": None})
        except ParseError as exc:
            rows.append({"element": None, "file": path.name, "status": "failed",
                         "reason": str(exc)})
    return rows


def format_listing(rows: list[dict[str, Any]]) -> str:
    """The rows of :func:`list_library` as a text table: element, file, suggested cutoffs (Ry),
    status (and the reason of a failure)."""
    lines = [f"{'el':2s}  {'file':42s} {'ecutwfc':>8s} {'ecutrho':>8s}  status"]
    for r in rows:
        wfc = f"{r['ecutwfc_Ry']:.1f}" if r.get("ecutwfc_Ry") else "-"
        rho = f"{r['ecutrho_Ry']:.1f}" if r.get("ecutrho_Ry") else "-"
        why = f"  ({r['reason']})" if r.get("reason") else ""
        lines.append(f"{r.get('element') or '?':2s}  {r['file']:42s} {wfc:>8s} {rho:>8s}  "
                     f"{r['status']}{why}")
    return "\n".join(lines)
