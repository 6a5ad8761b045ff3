"""HullBuilder: QE total energies → formation energy and E_above_hull → the ``thermo`` collection.

Candidates are job outputs with a total energy (``calc_type`` ``scf`` or ``elph``; vc-relax
energies are skipped because the paper preset relaxes with a modified kinetic functional).
References are outputs tagged ``metadata.hull_role == "reference"`` (see
:class:`~sc_inverse.thermo.jobs.QeElementalReferenceMaker`) plus an optional user file of
``ComputedEntry`` JSON. A material is rebuilt when its own tasks *or* the compatible references
of its chemical system change (their ids and energies enter its stamp, whichever source they
come from), and only then. References get ``thermo`` documents too.
"""

from __future__ import annotations

from typing import Any

from maggma.core import Store
from pymatgen.core import Composition
from pymatgen.entries.computed_entries import ComputedEntry

from sc_inverse.builders.base import MaterialBuilder
from sc_inverse.errors import InputError
from sc_inverse.thermo.hull import (
    compatible,
    entry_from_task,
    hull_analysis,
    load_entries,
    settings_key,
)
from sc_inverse.thermo.jobs import REFERENCE_ROLE


class HullBuilder(MaterialBuilder):
    """Job outputs with energies (+ reference entries file) → ``thermo``."""

    light_properties = (*MaterialBuilder.light_properties, "output.energy_eV", "output.elements",
                        "output.input.preset", "output.input.parameters.system",
                        "output.input.pseudopotentials")
    properties = (*light_properties, "output.structure")
    target_indexes = (*MaterialBuilder.target_indexes, "formula", "chemsys",
                      "e_above_hull_eV_per_atom", "e_form_eV_per_atom", "stable", "is_reference")

    def __init__(self, tasks: Store, thermo: Store, entries_file: str | None = None,
                 chunk_size: int = 5000, blobs: Store | None = None, **kwargs):
        self.thermo = thermo
        self.entries_file = entries_file
        self._refs: list[ComputedEntry] = []
        self._pd_cache: dict = {}
        self._extra_cache: dict = {}
        super().__init__(tasks, thermo, chunk_size=chunk_size, blobs=blobs, **kwargs)

    def kind(self, doc: dict) -> bool:
        out = doc.get("output") or {}
        return out.get("calc_type") == "scf" or (
            out.get("calc_type") == "elph" and out.get("energy_eV") is not None)

    def select(self, doc: dict) -> str | None:
        try:
            doc["_entry"] = entry_from_task(doc["output"], f"task:{doc['uuid']}",
                                            with_structure=False)
        except InputError as exc:
            return str(exc)
        return None

    def prepare(self, light_docs: list[dict]) -> None:
        ref_ids = sorted(d["uuid"] for d in light_docs
                         if (d.get("metadata") or {}).get("hull_role") == REFERENCE_ROLE)
        self._refs, self._pd_cache, self._extra_cache = [], {}, {}
        for doc in self._fetch(ref_ids):
            if self.select(doc) is None:
                self._refs.append(doc["_entry"])
        if self.entries_file:
            self._refs += load_entries(self.entries_file)
        self._ref_els = [frozenset(el.symbol for el in r.composition.elements) for r in self._refs]

    @staticmethod
    def _best(docs: list[dict]) -> dict:
        # prefer the scf (the energy elph carries comes from it), then the latest
        return sorted(docs, key=lambda d: ((d.get("output") or {}).get("calc_type") == "scf",
                                           str(d.get("completed_at"))))[-1]

    def group_extra(self, mid: str, light_docs: list[dict]) -> Any:
        out = self._best(light_docs).get("output") or {}
        els = frozenset(out.get("elements") or [])
        if not els and out.get("formula_pretty"):
            els = frozenset(el.symbol for el in Composition(out["formula_pretty"]).elements)
        pseudos = (out.get("input") or {}).get("pseudopotentials") or {}
        key = (els, tuple(sorted(pseudos.items())), settings_key(out))
        if key not in self._extra_cache:  # many materials share a chemical system and settings
            probe = ComputedEntry(Composition({el: 1 for el in els} or {"H": 1}), 0.0,
                                  data={"pseudopotentials": pseudos, "settings_key": key[2]})
            self._extra_cache[key] = sorted(
                f"{r.entry_id}@{r.energy:.8f}" for r, r_els in zip(self._refs, self._ref_els, strict=True)
                if r_els <= els and compatible(r, probe))
        return self._extra_cache[key]

    def build(self, mid: str, docs: list[dict], extra: Any) -> dict:
        best = self._best(docs)
        res = hull_analysis(best["_entry"], self._refs, cache=self._pd_cache)
        md = best.get("metadata") or {}
        pred = (md.get("predictions") or {}).get("e_form_eV_per_atom")
        pred = pred if isinstance(pred, (int, float)) and not isinstance(pred, bool) else None
        doc = res.model_dump()
        doc.update(
            is_reference=md.get("hull_role") == REFERENCE_ROLE,
            origin=md.get("origin") or ("reference" if md.get("hull_role") else "user"),
            candidate_id=md.get("candidate_id"),
            task_id=best.get("uuid"),
            task_ids=sorted(str(d.get("uuid")) for d in docs),
            ml_e_form_eV_per_atom=pred,
            dft_minus_ml_e_form_eV_per_atom=(res.e_form_eV_per_atom - pred)
            if pred is not None and res.e_form_eV_per_atom is not None else None,
        )
        return doc


__all__ = ["HullBuilder"]
