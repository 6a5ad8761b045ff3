"""TcBuilder: QE electron-phonon task documents → the ``superconductors`` collection.

One document per material (see :func:`~sc_inverse.builders.base.material_id`): ids, reduced
formula, structure, space group, λ, ω_log, T_c (Allen–Dynes and McMillan), the chosen smearing,
``dynamically_stable``, origin (generated / training / user), the ML predictions made at
screening time (job ``metadata.predictions``) with DFT − ML differences, and the source task
ids. When a material has several elph results the most recently completed one is reported.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import spglib
from maggma.core import Store
from pymatgen.core import Composition, Element, Structure

from sc_inverse.builders.base import MaterialBuilder
from sc_inverse.errors import InputError

#: ML prediction key -> DFT field of the superconductors document (DFT − ML is stored).
DFT_ML_PAIRS: dict[str, str] = {"tc_K": "tc_K", "lambda": "lambda_", "lambda_": "lambda_",
                                "omega_log_K": "omega_log_K"}

#: (symprec, cell key) -> (symbol, number); seeded from earlier builds (TcBuilder.before_build)
_SG_CACHE: dict[tuple, tuple[str, int]] = {}


def _cell(sdict: dict) -> tuple[list[str], list, list, tuple]:
    """(species, fractional coords, lattice matrix, hashable key) of a ``Structure.as_dict()``."""
    matrix = sdict["lattice"]["matrix"]
    sites = sdict["sites"]
    if len(matrix) != 3 or any(len(row) != 3 for row in matrix) or not sites:
        raise ValueError("structure has no 3x3 lattice matrix or no sites")
    species, frac = [], []
    for site in sites:
        sp = site["species"]
        if len(sp) != 1:
            raise ValueError("disordered site (partial occupancy) in structure")
        species.append(sp[0]["element"])
        if len(site["abc"]) != 3:
            raise ValueError("structure site coordinates are not 3-vectors")
        frac.append(site["abc"])
    key = (tuple(round(float(x), 4) for row in matrix for x in row),
           tuple(sorted((el, *(round(float(c), 3) % 1.0 for c in f))
                        for el, f in zip(species, frac, strict=True))))
    return species, frac, matrix, key


def structure_summary(sdict: dict, symprec: float = 0.1) -> dict:
    """Formula, chemsys, nsites and space group straight from a ``Structure.as_dict()``.

    Avoids building a pymatgen Structure per document (the builders' hot path); the space group
    comes from spglib on the raw cell, cached per distinct cell (spglib costs 2-13 ms per cell
    here, far more than everything else). Raises ``ValueError``/``KeyError``/``TypeError`` on a
    malformed dict.
    """
    species, frac, matrix, key = _cell(sdict)
    comp = Composition(dict(Counter(species)))
    if (symprec, key) not in _SG_CACHE:
        numbers = [Element(el).Z for el in species]
        ds = spglib.get_symmetry_dataset(
            (np.asarray(matrix, dtype=float), np.asarray(frac, dtype=float), numbers),
            symprec=symprec)
        if ds is None:
            raise ValueError("spglib could not analyse the structure")
        _SG_CACHE[(symprec, key)] = (str(ds.international), int(ds.number))
    symbol, number = _SG_CACHE[(symprec, key)]
    els = sorted(el.symbol for el in comp.elements)
    return {"formula": comp.reduced_formula, "chemsys": "-".join(els), "elements": els,
            "nsites": len(species), "spacegroup_symbol": symbol, "spacegroup_number": number}


def _number(out: dict, field: str, required: bool = False) -> float | None:
    v = out.get(field)
    if v is None:
        if required:
            raise InputError(f"field 'output.{field}' is missing")
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InputError(f"field 'output.{field}' is {type(v).__name__}, not a number")
    return float(v)


#: calc_type of the stability gate's document (sc_inverse.qe.schemas.StabilityGateDoc)
GATE_CALC_TYPE = "stability-gate"


def _gate_electronic(gate: dict | None) -> dict[str, float | None]:
    """Gap and DOS at E_F of the gate's scf (``electronic``; None while it has none)."""
    el = (((gate or {}).get("output") or {}).get("scf") or {}).get("electronic") or {}
    return {"gap_dft_eV": el.get("band_gap_eV"),
            "dos_at_fermi_states_per_eV": el.get("dos_at_fermi_states_per_eV")}


class TcBuilder(MaterialBuilder):
    """Job outputs with ``output.calc_type == "elph"`` → ``superconductors``.

    The stability gate's documents (``"stability-gate"``) are read too: a material whose gate
    stopped the EPC (``epc_allowed`` False) and that has no elph document gets a row
    "dynamically unstable, no T_c" (``epc_run`` False, ``epc_skipped_reason``); with an elph
    document the row is the elph's as before, plus the gate's DFT gap.
    """

    light_properties = (*MaterialBuilder.light_properties,)
    target_indexes = (*MaterialBuilder.target_indexes, "formula", "tc_K", "lambda_",
                      "dynamically_stable", "origin", "chemsys")

    def __init__(self, tasks: Store, superconductors: Store, symprec: float = 0.1,
                 chunk_size: int = 5000, blobs: Store | None = None, **kwargs):
        self.superconductors = superconductors
        self.symprec = symprec
        super().__init__(tasks, superconductors, chunk_size=chunk_size, blobs=blobs, **kwargs)

    def _source_criteria(self) -> dict:
        return {"output.calc_type": {"$in": ["elph", GATE_CALC_TYPE]}}

    def before_build(self, material_ids: list[str]) -> None:
        """Re-use the space groups of the previous build of these materials (a re-run usually
        keeps the structure), so only new cells go through spglib."""
        for d in self.target.query({"material_id": {"$in": material_ids}, "valid": True},
                                   properties=["structure", "spacegroup_symbol",
                                               "spacegroup_number", "symprec"]):
            if d.get("symprec") != self.symprec or not d.get("spacegroup_symbol"):
                continue
            try:
                key = _cell(d["structure"])[3]
            except (KeyError, TypeError, ValueError):
                continue
            _SG_CACHE.setdefault((self.symprec, key), (d["spacegroup_symbol"], d["spacegroup_number"]))

    def kind(self, doc: dict) -> bool:
        return (doc.get("output") or {}).get("calc_type") in ("elph", GATE_CALC_TYPE)

    def select(self, doc: dict) -> str | None:
        out = doc.get("output")
        if not isinstance(out, dict):
            return "no 'output' document"
        if out.get("structure") is None:
            return "field 'output.structure' is missing"
        if out.get("calc_type") == GATE_CALC_TYPE:
            return None if isinstance(out.get("epc_allowed"), bool) else \
                "field 'output.epc_allowed' is missing"
        if out.get("lambda_") is None and out.get("tc_K") is None:
            return "fields 'output.lambda_' and 'output.tc_K' are missing"
        return None

    def build(self, mid: str, docs: list[dict], extra: Any) -> dict:
        docs = sorted(docs, key=lambda d: str(d.get("completed_at")))
        gates = [d for d in docs if d["output"].get("calc_type") == GATE_CALC_TYPE]
        elph = [d for d in docs if d["output"].get("calc_type") == "elph"]
        gate = gates[-1] if gates else None
        if not elph:
            if gate is not None and gate["output"].get("epc_allowed") and \
                    (gate.get("metadata") or {}).get("parent_id"):
                raise ValueError("soft-mode rescue trial without an EPC result: it runs only "
                                 "when the trial is lower in energy than its parent (see the "
                                 "parent's soft-mode-rescue document), or it has not finished")
            if gate is None or gate["output"].get("epc_allowed"):
                raise ValueError("the stability gate allowed the EPC run but there is no elph "
                                 "document (not finished, or failed)")
            return self._gated_out(gate, [str(d.get("uuid")) for d in docs])
        return {**self._from_elph(elph[-1], docs), **_gate_electronic(gate)}

    def _common_fields(self, task: dict, stable_key: str) -> dict:
        """Fields every row takes alike from its task document (elph or gate): structure and
        its symmetry, energy, lowest mode, preset, candidate identity and ML predictions."""
        out = task["output"]
        s = out["structure"]
        sdict = s.as_dict() if isinstance(s, Structure) else s
        info = structure_summary(sdict, self.symprec)
        md = task.get("metadata") or {}
        predictions = {k: v for k, v in (md.get("predictions") or {}).items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)}
        return {
            **info, "symprec": self.symprec,
            "formula_pretty": out.get("formula_pretty") or info["formula"],
            "structure": sdict,
            "dynamically_stable": out.get(stable_key),
            "min_frequency_cm1": _number(out, "min_frequency_cm1"),
            "energy_per_atom_eV": _number(out, "energy_per_atom_eV"),
            "preset": (out.get("input") or {}).get("preset"),
            "origin": md.get("origin") or "user",
            "candidate_id": md.get("candidate_id"),
            "parent_id": md.get("parent_id"),  # set on a soft-mode rescue child
            "ml_predictions": predictions,
            "dft_minus_ml": {},
            "task_id": task.get("uuid"),
            "completed_at": task.get("completed_at"),
        }

    def _gated_out(self, gate: dict, task_ids: list[str]) -> dict:
        """Row of a material the stability gate stopped: dynamically unstable, no T_c."""
        nulls = dict.fromkeys(("lambda_", "omega_log_K", "tc_K", "tc_allen_dynes_K",
                               "tc_mcmillan_K", "mu_star", "selected_sigma_Ry", "selection_rule",
                               "dos_ef_states_per_Ry"))
        return {
            **self._common_fields(gate, "stable"), **nulls,
            "epc_run": False,
            "epc_skipped_reason": gate["output"].get("epc_skipped_reason"),
            "task_ids": sorted(task_ids),
            **_gate_electronic(gate),
        }

    def _from_elph(self, best: dict, docs: list[dict]) -> dict:
        """Row of a material with an electron-phonon result (the latest elph document)."""
        out = best["output"]
        doc = {
            **self._common_fields(best, "dynamically_stable"),
            "lambda_": _number(out, "lambda_"),
            "omega_log_K": _number(out, "omega_log_K"),
            "tc_K": _number(out, "tc_K", required=True),
            "tc_allen_dynes_K": _number(out, "tc_K"),
            "tc_mcmillan_K": _number(out, "tc_mcmillan_K"),
            "mu_star": _number(out, "mu_star"),
            "selected_sigma_Ry": _number(out, "selected_sigma_Ry"),
            "selection_rule": out.get("selection_rule"),
            "dos_ef_states_per_Ry": _number(out, "dos_ef_states_per_Ry"),
            "epc_run": True,
            "epc_skipped_reason": None,
            "task_ids": sorted(str(d.get("uuid")) for d in docs),
        }
        predictions = doc["ml_predictions"]
        for key, dft_field in DFT_ML_PAIRS.items():
            if key in predictions and doc.get(dft_field) is not None:
                doc["dft_minus_ml"][dft_field] = doc[dft_field] - predictions[key]
        return doc


__all__ = ["DFT_ML_PAIRS", "TcBuilder", "structure_summary"]
