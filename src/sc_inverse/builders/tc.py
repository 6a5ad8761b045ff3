"""TcBuilder: QE electron-phonon task documents → the ``superconductors`` collection.

One document per material (see :func:`~sc_inverse.builders.base.material_id`): ids, reduced
formula, structure, space group, λ, ω_log, T_c (Allen–Dynes and McMillan), the chosen smearing,
``dynamically_stable``, origin (generated / training / user), the ML predictions made at
screening time (job ``metadata.predictions``) with DFT − ML differences, and the source task
ids. When a material has several elph results the most recently completed one is reported.
"""

from __future__ import annotations

from typing import Any

from maggma.core import Store
from pymatgen.core import Structure

from sc_inverse.builders.base import MaterialBuilder
from sc_inverse.errors import InputError

#: ML prediction key -> DFT field of the superconductors document (DFT − ML is stored).
DFT_ML_PAIRS: dict[str, str] = {"tc_K": "tc_K", "lambda": "lambda_", "lambda_": "lambda_",
                                "omega_log_K": "omega_log_K"}

_SG_CACHE: dict[tuple, tuple[str, int]] = {}


def space_group(structure: Structure, symprec: float = 0.1) -> tuple[str, int]:
    """(symbol, number); cached on the cell so identical structures are analysed once."""
    key = (tuple(round(x, 4) for x in structure.lattice.parameters),
           tuple(sorted((s.species_string, *(round(c, 3) % 1.0 for c in s.frac_coords))
                        for s in structure)))
    if key not in _SG_CACHE:
        _SG_CACHE[key] = structure.get_space_group_info(symprec=symprec)
    return _SG_CACHE[key]


def _number(out: dict, field: str, required: bool = False) -> float | None:
    v = out.get(field)
    if v is None:
        if required:
            raise InputError(f"field 'output.{field}' is missing")
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InputError(f"field 'output.{field}' is {type(v).__name__}, not a number")
    return float(v)


class TcBuilder(MaterialBuilder):
    """Job outputs with ``output.calc_type == "elph"`` → ``superconductors``."""

    properties = (*MaterialBuilder.properties, "output")
    target_indexes = (*MaterialBuilder.target_indexes, "formula", "tc_K", "lambda_",
                      "dynamically_stable", "origin", "chemsys")

    def __init__(self, tasks: Store, superconductors: Store, symprec: float = 0.1,
                 chunk_size: int = 5000, **kwargs):
        self.superconductors = superconductors
        self.symprec = symprec
        super().__init__(tasks, superconductors, chunk_size=chunk_size, **kwargs)

    def _source_criteria(self) -> dict:
        return {"output.calc_type": "elph"}

    def select(self, doc: dict) -> str | None:
        out = doc.get("output")
        if not isinstance(out, dict):
            return "no 'output' document"
        if out.get("calc_type") != "elph":
            return "ignore"
        if out.get("structure") is None:
            return "field 'output.structure' is missing"
        if out.get("lambda_") is None and out.get("tc_K") is None:
            return "fields 'output.lambda_' and 'output.tc_K' are missing"
        return None

    def build(self, mid: str, docs: list[dict], extra: Any) -> dict:
        docs = sorted(docs, key=lambda d: str(d.get("completed_at")))
        best = docs[-1]
        out = best["output"]
        s = out["structure"]
        structure = s if isinstance(s, Structure) else Structure.from_dict(s)
        symbol, number = space_group(structure, self.symprec)
        md = best.get("metadata") or {}
        predictions = {k: v for k, v in (md.get("predictions") or {}).items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)}
        doc = {
            "formula": structure.composition.reduced_formula,
            "formula_pretty": out.get("formula_pretty") or structure.composition.reduced_formula,
            "chemsys": "-".join(sorted(el.symbol for el in structure.composition.elements)),
            "elements": sorted(el.symbol for el in structure.composition.elements),
            "nsites": len(structure),
            "structure": structure.as_dict(),
            "spacegroup_symbol": symbol,
            "spacegroup_number": number,
            "lambda_": _number(out, "lambda_"),
            "omega_log_K": _number(out, "omega_log_K"),
            "tc_K": _number(out, "tc_K", required=True),
            "tc_allen_dynes_K": _number(out, "tc_K"),
            "tc_mcmillan_K": _number(out, "tc_mcmillan_K"),
            "mu_star": _number(out, "mu_star"),
            "selected_sigma_Ry": _number(out, "selected_sigma_Ry"),
            "selection_rule": out.get("selection_rule"),
            "dos_ef_states_per_Ry": _number(out, "dos_ef_states_per_Ry"),
            "dynamically_stable": out.get("dynamically_stable"),
            "min_frequency_cm1": _number(out, "min_frequency_cm1"),
            "energy_per_atom_eV": _number(out, "energy_per_atom_eV"),
            "preset": (out.get("input") or {}).get("preset"),
            "origin": md.get("origin") or "user",
            "candidate_id": md.get("candidate_id"),
            "ml_predictions": predictions,
            "dft_minus_ml": {},
            "task_id": best.get("uuid"),
            "task_ids": sorted(str(d.get("uuid")) for d in docs),
            "completed_at": best.get("completed_at"),
        }
        for key, dft_field in DFT_ML_PAIRS.items():
            if key in predictions and doc.get(dft_field) is not None:
                doc["dft_minus_ml"][dft_field] = doc[dft_field] - predictions[key]
        return doc


__all__ = ["DFT_ML_PAIRS", "TcBuilder", "space_group"]
