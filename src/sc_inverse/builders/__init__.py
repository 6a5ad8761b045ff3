"""maggma builders of the derived collections (``superconductors``, ``thermo``) and the
helpers the CLI and the end-to-end flow call: :func:`run_builders`, :func:`query_results`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sc_inverse.stores import SUPERCONDUCTORS, THERMO, get_job_store, get_store

if TYPE_CHECKING:
    from jobflow import JobStore
    from maggma.core import Store

logger = logging.getLogger(__name__)


def default_builders(job_store: JobStore | None = None, superconductors: Store | None = None,
                     thermo: Store | None = None, entries_file: str | None = None) -> list:
    """[TcBuilder, HullBuilder] on the configured store (or the stores given)."""
    # imported here: the builders pull in spglib and pymatgen's entries/phase diagrams (several
    # seconds), which `sc-inverse query` (query_results) and `build --help` never need
    from sc_inverse.builders.tc import TcBuilder
    from sc_inverse.builders.thermo import HullBuilder

    job_store = job_store or get_job_store()
    tasks = job_store.docs_store
    return [
        TcBuilder(tasks, superconductors or get_store(SUPERCONDUCTORS)),
        HullBuilder(tasks, thermo or get_store(THERMO), entries_file=entries_file),
    ]


def run_builders(job_store: JobStore | None = None, superconductors: Store | None = None,
                 thermo: Store | None = None, entries_file: str | None = None,
                 only: list[str] | None = None, progress: bool = False) -> dict[str, dict[str, Any]]:
    """Run TcBuilder and HullBuilder (incrementally); returns ``{builder name: summary}``
    with counts ``source_docs, skipped_docs, items, processed, errors, written``."""
    out = {}
    for b in default_builders(job_store, superconductors, thermo, entries_file):
        name = type(b).__name__
        if only and name not in only:
            continue
        out[name] = b.run_with_summary(progress=progress)
        logger.info("%s: %s", name, out[name])
    return out


def query_results(tc_min: float | None = None, ehull_max: float | None = None,
                  stable_only: bool = False, superconductors: Store | None = None,
                  thermo: Store | None = None) -> list[dict[str, Any]]:
    """Rows joining ``superconductors`` and ``thermo`` by material, filtered, by T_c (desc).

    ``stable_only``: dynamically stable (no imaginary modes) *and*, where a hull result
    exists, on or below the hull within ``ehull_max`` (default 0 eV/atom).
    """
    sc_store = superconductors or get_store(SUPERCONDUCTORS)
    th_store = thermo or get_store(THERMO)
    rows: dict[str, dict[str, Any]] = {}
    with sc_store, th_store:
        for d in th_store.query({"valid": True, "is_reference": False}):
            rows[d["material_id"]] = {
                "material_id": d["material_id"], "formula": d.get("formula"),
                "e_form_eV_per_atom": d.get("e_form_eV_per_atom"),
                "e_above_hull_eV_per_atom": d.get("e_above_hull_eV_per_atom"),
                "origin": d.get("origin"),
            }
        for d in sc_store.query({"valid": True}):
            row = rows.setdefault(d["material_id"], {"material_id": d["material_id"]})
            row.update({
                "formula": d.get("formula"), "spacegroup": d.get("spacegroup_symbol"),
                "tc_K": d.get("tc_K"), "tc_mcmillan_K": d.get("tc_mcmillan_K"),
                "lambda": d.get("lambda_"), "omega_log_K": d.get("omega_log_K"),
                "dynamically_stable": d.get("dynamically_stable"), "origin": d.get("origin"),
                "ml_tc_K": (d.get("ml_predictions") or {}).get("tc_K"),
                "dft_minus_ml_tc_K": (d.get("dft_minus_ml") or {}).get("tc_K"),
            })
    out = []
    for row in rows.values():
        tc, eh = row.get("tc_K"), row.get("e_above_hull_eV_per_atom")
        if tc_min is not None and (tc is None or tc < tc_min):
            continue
        if ehull_max is not None and (eh is None or eh > ehull_max):
            continue
        if stable_only and (row.get("dynamically_stable") is not True
                            or (eh is not None and eh > (ehull_max if ehull_max is not None else 0.0))):
            continue
        out.append(row)
    out.sort(key=lambda r: (r.get("tc_K") is None, -(r.get("tc_K") or 0.0), r["material_id"]))
    return out


__all__ = ["default_builders", "query_results", "run_builders"]
