"""maggma builders of the derived collections (``superconductors``, ``thermo``) and the
helpers the CLI and the end-to-end flow call: :func:`run_builders`, :func:`query_results`.

Both work on one job store: the collections are those of the store the task documents are in
(:func:`~sc_inverse.stores.collection_store`), so what a flow builds is what its command prints.
A material appears in query results only once its electron-phonon calculation completed (a
valid ``superconductors`` document); a flow that stopped earlier (killed, failed) produces no
row, although its hull result may already be in ``thermo``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sc_inverse.stores import (
    DATA_STORE,
    SUPERCONDUCTORS,
    THERMO,
    collection_store,
    get_job_store,
)

if TYPE_CHECKING:
    from jobflow import JobStore
    from maggma.core import Store

logger = logging.getLogger(__name__)


def default_builders(job_store: JobStore | None = None, superconductors: Store | None = None,
                     thermo: Store | None = None, entries_file: str | None = None) -> list:
    """[TcBuilder, HullBuilder] from ``job_store`` (default: the configured one) into its own
    ``superconductors``/``thermo`` collections (or the stores given); both check that the blobs
    a task document refers to are in the job store's ``"data"`` store."""
    # imported here: the builders pull in spglib and pymatgen's entries/phase diagrams (several
    # seconds), which `sc-inverse query` (query_results) and `build --help` never need
    from sc_inverse.builders.tc import TcBuilder
    from sc_inverse.builders.thermo import HullBuilder

    job_store = job_store or get_job_store()
    tasks = job_store.docs_store
    blobs = job_store.additional_stores.get(DATA_STORE)
    return [
        TcBuilder(tasks, superconductors or collection_store(job_store, SUPERCONDUCTORS),
                  blobs=blobs),
        HullBuilder(tasks, thermo or collection_store(job_store, THERMO),
                    entries_file=entries_file, blobs=blobs),
    ]


def run_builders(job_store: JobStore | None = None, superconductors: Store | None = None,
                 thermo: Store | None = None, entries_file: str | None = None,
                 only: list[str] | None = None, progress: bool = False) -> dict[str, dict[str, Any]]:
    """Run TcBuilder and HullBuilder (incrementally); returns ``{builder name: summary}``
    with counts ``source_docs, skipped_docs, missing_blobs, items, processed, errors, written``
    (``missing_blobs``: task documents skipped because a blob they refer to is not stored)."""
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
                  thermo: Store | None = None, job_store: JobStore | None = None,
                  material_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows of the materials whose EPC completed (``superconductors``) joined with their
    ``thermo`` results, filtered, by T_c (desc).

    Stores: those given, else the collections of ``job_store``, else of the configured store.
    ``stable_only``: dynamically stable (no imaginary modes) *and*, where a hull result
    exists, on the hull (``e_above_hull_eV_per_atom`` within ``ehull_max``, default: the
    hull's ``stable`` flag). ``material_ids``: only these materials.
    """
    if superconductors is None or thermo is None:
        job_store = job_store or get_job_store(quiet=True)
    sc_store = superconductors or collection_store(job_store, SUPERCONDUCTORS)
    th_store = thermo or collection_store(job_store, THERMO)
    wanted = {"material_id": {"$in": list(material_ids)}} if material_ids is not None else {}
    rows: dict[str, dict[str, Any]] = {}
    with sc_store, th_store:
        for d in sc_store.query({"valid": True, **wanted}):
            rows[d["material_id"]] = {
                "material_id": d["material_id"], "formula": d.get("formula"),
                "spacegroup": d.get("spacegroup_symbol"),
                "tc_K": d.get("tc_K"), "tc_mcmillan_K": d.get("tc_mcmillan_K"),
                "lambda": d.get("lambda_"), "omega_log_K": d.get("omega_log_K"),
                "dynamically_stable": d.get("dynamically_stable"), "origin": d.get("origin"),
                "ml_tc_K": (d.get("ml_predictions") or {}).get("tc_K"),
                "dft_minus_ml_tc_K": (d.get("dft_minus_ml") or {}).get("tc_K"),
                "preset": d.get("preset"),
            }
        if rows:
            for d in th_store.query({"valid": True, "is_reference": False,
                                     "material_id": {"$in": list(rows)}}):
                rows[d["material_id"]].update({
                    "e_form_eV_per_atom": d.get("e_form_eV_per_atom"),
                    "e_above_hull_eV_per_atom": d.get("e_above_hull_eV_per_atom"),
                    "e_phase_separation_eV_per_atom": d.get("e_phase_separation_eV_per_atom"),
                    "on_hull": d.get("stable"),
                })
    out = [row for row in rows.values() if _passes(row, tc_min, ehull_max, stable_only)]
    out.sort(key=lambda r: (r.get("tc_K") is None, -(r.get("tc_K") or 0.0), r["material_id"]))
    return out


def _passes(row: dict, tc_min: float | None, ehull_max: float | None, stable_only: bool) -> bool:
    tc, eh = row.get("tc_K"), row.get("e_above_hull_eV_per_atom")
    if tc_min is not None and (tc is None or tc < tc_min):
        return False
    if ehull_max is not None and (eh is None or eh > ehull_max):
        return False
    if stable_only:
        if row.get("dynamically_stable") is not True:
            return False
        if eh is not None and ehull_max is None and row.get("on_hull") is False:
            return False
    return True


__all__ = ["default_builders", "query_results", "run_builders"]
