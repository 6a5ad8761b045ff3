"""Validate the electron-phonon T_c of the QE presets on known superconductors (issue 10, item 4).

Runs the flow of ``sc-inverse epc`` (:class:`~sc_inverse.qe.flows.ElectronPhononTcMaker` through
:func:`~sc_inverse.pipeline.epc.run_epc`, jobflow ``run_locally``) for each structure × preset,
one case at a time, and writes a table of k/q grids, cutoffs, the reported smearing, λ, ω_log,
Allen–Dynes T_c (μ* of the preset), dynamical stability, the CPU seconds of the QE processes
(user + sys of this process's children, ``getrusage(RUSAGE_CHILDREN)``) and the wall time,
next to the JARVIS and experimental T_c:

    python benchmarks/validate_epc.py                       # fast and paper, fcc Al and bcc Nb
    python benchmarks/validate_epc.py --presets fast --structures nb
    python benchmarks/validate_epc.py --presets paper \\
        --variant 'k8={"base": "paper", "kpoint_length": 18.5, "tr2_ph": 1e-10}' --no-relax

``--variant NAME=JSON`` adds a measured variant of a preset: ``base`` names the preset it starts
from, ``kpoint_length`` fixes the k mesh by that length (JARVIS' length rule, prime dimensions
bumped), every other key is a :class:`~sc_inverse.qe.sets.QePreset` field. Results go to
``OUTDIR/validation.json`` (one row per case; rows of earlier runs are kept unless the same case
runs again) and ``OUTDIR/validation.md``. Numbers, no asserts: the target of issue 10 (within
25 % or 2 K of JARVIS, ``fast`` ≥ 3× cheaper than ``paper``) is printed as a column, not checked.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import platform
import resource
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pymatgen.core import Lattice, Structure

from sc_inverse.data import load_jarvis_sc
from sc_inverse.pipeline.epc import epc_summary, run_epc
from sc_inverse.qe.eliashberg import allen_dynes_tc, select_smearing
from sc_inverse.qe.kpoints import bump_prime_mesh, mesh_from_length
from sc_inverse.qe.sets import PRESETS, QePreset, parse_fortran_value, read_namelist
from sc_inverse.records import load_structure

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTDIR = ROOT / "benchmarks" / "output" / "validation"


# ---------------------------------------------------------------------------------------------
# the validation set
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reference:
    """A known superconductor: how to build its cell and the T_c it is compared with."""

    key: str
    label: str
    build: Callable[[], Structure]
    jarvis_jid: str
    tc_jarvis_K: float
    tc_exp_K: float


def _al_fcc() -> Structure:
    return load_structure(ROOT / "examples" / "al_fcc" / "Al.pwi")[0]


def _nb_bcc(a: float = 3.30) -> Structure:
    """Primitive bcc Nb, a = 3.30 Å (experiment)."""
    h = a / 2
    return Structure(Lattice([[-h, h, h], [h, -h, h], [h, h, -h]]), ["Nb"], [[0, 0, 0]])


def _jarvis(jid: str) -> Callable[[], Structure]:
    def build() -> Structure:
        return next(r["structure"] for r in load_jarvis_sc() if r["jid"] == jid)

    return build


#: JARVIS T_c from the packaged JARVIS-SC data (Choudhary & Garrity 2022); experiment from the
#: usual tables (Al 1.18 K, Nb 9.25 K, MgB2 39 K).
REFERENCES: dict[str, Reference] = {
    r.key: r
    for r in (
        Reference("al", "fcc Al (QE example cell, a 3.97 Å)", _al_fcc, "JVASP-816", 1.60, 1.18),
        Reference("nb", "bcc Nb (a 3.30 Å)", _nb_bcc, "JVASP-934", 10.72, 9.25),
        Reference("al_jarvis", "fcc Al (JARVIS cell, a 4.01 Å)", _jarvis("JVASP-816"),
                  "JVASP-816", 1.60, 1.18),
        Reference("nb_jarvis", "bcc Nb (JARVIS cell, a 3.27 Å)", _jarvis("JVASP-934"),
                  "JVASP-934", 10.72, 9.25),
        Reference("mgb2", "MgB2 (JARVIS cell)", _jarvis("JVASP-1151"), "JVASP-1151", 32.69, 39.0),
    )
}


# ---------------------------------------------------------------------------------------------
# presets and variants
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """A preset to validate, optionally with a fixed k-point length (script level)."""

    name: str
    preset: QePreset
    kpoint_length: float | None = None

    def kpoints_grid(self, structure: Structure) -> tuple[int, int, int] | None:
        if self.kpoint_length is None:
            return None
        return bump_prime_mesh(mesh_from_length(structure, self.kpoint_length))  # type: ignore[return-value]


def parse_variant(spec: str) -> Variant:
    """``NAME=JSON`` → Variant; JSON keys: ``base``, ``kpoint_length``, QePreset fields."""
    name, _, text = spec.partition("=")
    updates: dict[str, Any] = json.loads(text) if text else {}
    base = PRESETS[updates.pop("base", "paper")]
    length = updates.pop("kpoint_length", None)
    known = {f.name for f in fields(QePreset)}
    unknown = set(updates) - known
    if unknown:
        raise SystemExit(f"variant {name}: unknown QePreset fields {sorted(unknown)}")
    for key in ("kpoints_grid", "qpoints_grid", "la2f_kpoints_grid", "matdyn_nk"):
        if updates.get(key) is not None:
            updates[key] = tuple(updates[key])
    return Variant(name, base.with_updates(name=name, **updates), length)


def preset_variants(names: list[str]) -> list[Variant]:
    missing = [n for n in names if n not in PRESETS]
    if missing:
        raise SystemExit(f"unknown presets {missing}; this checkout has {sorted(PRESETS)}")
    return [Variant(n, PRESETS[n]) for n in names]


# ---------------------------------------------------------------------------------------------
# one case
# ---------------------------------------------------------------------------------------------
def _children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _scf_cutoffs(workdir: Path) -> dict[str, float | None]:
    """ecutwfc/ecutrho of the scf that fed ph.x (read back from its input)."""
    for path in sorted(workdir.rglob("scf.in")):
        system = read_namelist(path.read_text(), "system")
        wfc = parse_fortran_value(system["ecutwfc"])
        rho = parse_fortran_value(system["ecutrho"]) if "ecutrho" in system else 4 * wfc
        return {"ecutwfc_Ry": float(wfc), "ecutrho_Ry": float(rho)}
    return {"ecutwfc_Ry": None, "ecutrho_Ry": None}


def _finite(x: Any) -> Any:
    return None if isinstance(x, float) and not math.isfinite(x) else x


def _matdyn_tc(summary: dict, mu_star: float) -> tuple[float | None, float | None, float | None]:
    """λ, ω_log and Allen–Dynes T_c of matdyn's interpolated α²F (the numbers JARVIS' workflow
    reads from matdyn's ``lambda`` file) at the reported smearing."""
    sigma = summary.get("selected_sigma_Ry")
    for row in summary.get("smearing_table") or []:
        if sigma is not None and abs(row["sigma_Ry"] - sigma) < 1e-9:
            lam, wlog = _finite(row.get("lambda_qe")), _finite(row.get("omega_log_qe_K"))
            if lam is None or wlog is None:
                return None, None, None
            return lam, wlog, allen_dynes_tc(lam, wlog, mu_star)
    return None, None, None


def run_case(ref: Reference, variant: Variant, args: argparse.Namespace) -> dict:
    """Run one structure at one variant; the table row (with the full summary under
    ``epc``), or a row with ``error`` when the flow failed."""
    structure = ref.build()
    workdir = Path(args.workdir) / f"{variant.name}_{ref.key}"
    shutil.rmtree(workdir, ignore_errors=True)
    kgrid = variant.kpoints_grid(structure)
    row: dict[str, Any] = {
        "preset": variant.name, "structure": ref.key, "label": ref.label,
        "tc_jarvis_K": ref.tc_jarvis_K, "tc_exp_K": ref.tc_exp_K, "jarvis_jid": ref.jarvis_jid,
        "kpoint_length": variant.kpoint_length, "relax": _relax(variant, args),
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "loadavg_start": os.getloadavg()[0],
    }
    cpu0, wall0 = _children_cpu_s(), time.perf_counter()
    try:
        doc = run_epc(structure, workdir, preset=variant.preset, pseudo_dir=args.pseudo_dir,
                      pseudo_pattern=args.pseudo_pattern, relax=row["relax"],
                      kpoints_grid=kgrid, fresh=True,
                      stability_gate=False)  # the EPC alone: its T_c and CPU are validated here
        summary = epc_summary(doc)
    except Exception as exc:  # a failed case is a row of the table, not the end of the run
        row.update(error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        summary = None
    row["cpu_s"] = round(_children_cpu_s() - cpu0, 1)
    row["wall_s"] = round(time.perf_counter() - wall0, 1)
    row["loadavg_end"] = os.getloadavg()[0]
    if summary is not None:
        row.update(_summary_fields(summary, variant.preset, workdir))
    return row


def _relax(variant: Variant, args: argparse.Namespace) -> bool:
    return variant.preset.relax if args.relax is None else args.relax


def _summary_fields(summary: dict, preset: QePreset, workdir: Path) -> dict:
    lam_md, wlog_md, tc_md = _matdyn_tc(summary, preset.mu_star)
    structure = Structure.from_dict(summary["structure"]) if summary.get("structure") else None
    return {
        **_scf_cutoffs(workdir),
        "kpoints_grid": summary.get("kpoints_grid"),
        "qpoints_grid": summary.get("qpoints_grid"),
        "n_q_irreducible": summary.get("n_q_irreducible"),
        "selected_sigma_Ry": summary.get("selected_sigma_Ry"),
        "selection_rule": summary.get("selection_rule"),
        "lambda": summary.get("lambda"),
        "omega_log_K": summary.get("omega_log_K"),
        "tc_K": summary.get("tc_K"),
        "lambda_matdyn": lam_md,
        "omega_log_matdyn_K": wlog_md,
        "tc_matdyn_K": tc_md,
        "dynamically_stable": summary.get("dynamically_stable"),
        "min_frequency_cm1": summary.get("min_frequency_cm1"),
        "min_frequency_raw_cm1": summary.get("min_frequency_raw_cm1"),
        "stability_reason": summary.get("stability_reason"),
        "volume_per_atom_A3": structure.volume / len(structure) if structure else None,
        "mu_star": summary.get("mu_star"),
        "epc": json.loads(json.dumps(summary, default=str).replace("NaN", "null")),
    }


# ---------------------------------------------------------------------------------------------
# table
# ---------------------------------------------------------------------------------------------
def within_target(tc: float | None, ref: float | None) -> bool | None:
    """Issue 10's target: within 25 % or 2 K (whichever is larger) of ``ref``."""
    if tc is None or ref is None:
        return None
    return abs(tc - ref) <= max(0.25 * ref, 2.0)


def _fmt(x: Any, spec: str = ".2f") -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "**no**"
    if isinstance(x, (list, tuple)):
        return "×".join(str(v) for v in x) if len(set(x)) > 1 else f"{x[0]}³"
    return format(x, spec) if isinstance(x, (int, float)) else str(x)


HEADER = ("| preset | structure | relax | k | q (irr.) | ecutwfc/ecutrho (Ry) | σ (Ry) | λ | "
          "ω_log (K) | T_c (K) | T_c matdyn (K) | JARVIS / exp (K) | target | stable | "
          "min ω (cm⁻¹) | CPU (s) | wall (s) |")


def markdown_row(r: dict) -> str:
    if r.get("error"):
        return (f"| {r['preset']} | {r['structure']} | {'yes' if r.get('relax') else 'no'} | failed: "
                f"{r['error'][:120]} | | | | | | | | | | | | {_fmt(r.get('cpu_s'), '.0f')} | "
                f"{_fmt(r.get('wall_s'), '.0f')} |")
    ok = within_target(r.get("tc_K"), r["tc_jarvis_K"])
    cut = f"{_fmt(r.get('ecutwfc_Ry'), '.1f')}/{_fmt(r.get('ecutrho_Ry'), '.0f')}"
    return (
        f"| {r['preset']} | {r['structure']} | {'yes' if r.get('relax') else 'no'} | "
        f"{_fmt(r.get('kpoints_grid'))} | {_fmt(r.get('qpoints_grid'))} "
        f"({_fmt(r.get('n_q_irreducible'), 'd')}) | {cut} | {_fmt(r.get('selected_sigma_Ry'), '.3f')} | "
        f"{_fmt(r.get('lambda'), '.3f')} | {_fmt(r.get('omega_log_K'), '.0f')} | "
        f"{_fmt(r.get('tc_K'))} | {_fmt(r.get('tc_matdyn_K'))} | "
        f"{r['tc_jarvis_K']:.2f} / {r['tc_exp_K']:.2f} | {'✓' if ok else '✗'} | "
        f"{_fmt(r.get('dynamically_stable'))} | {_fmt(r.get('min_frequency_cm1'), '.1f')} | "
        f"{_fmt(r.get('cpu_s'), '.0f')} | {_fmt(r.get('wall_s'), '.0f')} |"
    )


def smearing_rows(r: dict) -> list[str]:
    """λ and T_c per smearing of one case (ours and matdyn's)."""
    table = (r.get("epc") or {}).get("smearing_table") or []
    if not table:
        return []
    mu = r.get("mu_star") or 0.1
    sig = " | ".join(f"{t['sigma_Ry']:.3f}" for t in table)
    lam = " | ".join(_fmt(t.get("lambda"), ".3f") for t in table)
    tc = " | ".join(_fmt(t.get("tc_K")) for t in table)
    tc_md = " | ".join(
        _fmt(allen_dynes_tc(t["lambda_qe"], t["omega_log_qe_K"], mu)
             if t.get("lambda_qe") and t.get("omega_log_qe_K") else None)
        for t in table
    )
    sep = "|".join(["---"] * (len(table) + 1))
    return [f"{r['preset']} / {r['structure']}:", "", f"| σ (Ry) | {sig} |", f"|{sep}|",
            f"| λ | {lam} |", f"| T_c (K) | {tc} |", f"| T_c matdyn (K) | {tc_md} |", ""]


def write_outputs(rows: list[dict], outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    meta = {"host": platform.node(), "cpus": os.cpu_count(),
            "written": dt.datetime.now().isoformat(timespec="seconds")}
    (outdir / "validation.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = ["# EPC validation (benchmarks/validate_epc.py)", "",
             "T_c: Allen–Dynes at the reported smearing; T_c matdyn: the same formula on matdyn's",
             "interpolated α²F at that smearing (what JARVIS' workflow reads). target: within 25 %",
             "or 2 K of JARVIS. CPU: user+sys of the QE processes; wall on a shared 2-core box.",
             "", HEADER, _separator(), *map(markdown_row, rows), "",
             "## λ and T_c per smearing", ""]
    for r in rows:
        lines += smearing_rows(r)
    (outdir / "validation.md").write_text("\n".join(lines) + "\n")


def _separator() -> str:
    return "|" + "---|" * (HEADER.count("|") - 1)


def reselect(row: dict) -> dict:
    """Row with the reported smearing chosen again by the current rule from its stored table
    (no QE run): how a change of :func:`~sc_inverse.qe.eliashberg.select_smearing` moves T_c."""
    table = (row.get("epc") or {}).get("smearing_table") or []
    if not table:
        return row
    dos = [t.get("dos_ef_states_per_Ry") for t in table]
    idx, rule = select_smearing([t["lambda"] for t in table], [t["sigma_Ry"] for t in table],
                                dos_ef=None if None in dos else dos)
    sel, mu = table[idx], row.get("mu_star") or 0.1
    lam_md, wlog_md = sel.get("lambda_qe"), sel.get("omega_log_qe_K")
    return {**row, "selected_sigma_Ry": sel["sigma_Ry"], "lambda": sel["lambda"],
            "omega_log_K": sel["omega_log_K"], "tc_K": sel["tc_K"], "selection_rule": rule,
            "lambda_matdyn": lam_md, "omega_log_matdyn_K": wlog_md,
            "tc_matdyn_K": allen_dynes_tc(lam_md, wlog_md, mu) if lam_md and wlog_md else None}


def load_rows(outdir: Path) -> list[dict]:
    path = outdir / "validation.json"
    return json.loads(path.read_text())["rows"] if path.is_file() else []


def merge_rows(old: list[dict], new: dict) -> list[dict]:
    """Replace the row of the same (preset, structure), keep the others in order."""
    key = (new["preset"], new["structure"])
    kept = [r for r in old if (r["preset"], r["structure"]) != key]
    return [*kept, new]


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="*", default=None,
                   help="preset names (default: fast and paper, those this checkout has)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                   help="a measured preset variant (see the module docstring); repeatable")
    p.add_argument("--structures", nargs="+", default=["al", "nb"], choices=sorted(REFERENCES))
    p.add_argument("--pseudo-dir", default=None, help="default: settings.pseudo_dir")
    p.add_argument("--pseudo-pattern", default=None, help="default: the preset's / settings'")
    relax = p.add_mutually_exclusive_group()
    relax.add_argument("--relax", dest="relax", action="store_true", default=None)
    relax.add_argument("--no-relax", dest="relax", action="store_false")
    p.add_argument("--outdir", type=Path, default=DEFAULT_OUTDIR)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/sc_inverse_validate_epc"))
    p.add_argument("--reselect", action="store_true",
                   help="no QE: re-apply the current smearing rule to the rows in OUTDIR")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    names = args.presets if args.presets is not None else (
        [n for n in ("fast", "paper") if n in PRESETS] if not args.variant else [])
    variants = preset_variants(names) + [parse_variant(v) for v in args.variant]
    rows = load_rows(args.outdir)
    if args.reselect:
        write_outputs([reselect(r) for r in rows], args.outdir)
        return
    for variant in variants:
        for key in args.structures:
            row = run_case(REFERENCES[key], variant, args)
            rows = merge_rows(rows, row)
            write_outputs(rows, args.outdir)
            print(markdown_row(row), flush=True)


if __name__ == "__main__":
    main()
