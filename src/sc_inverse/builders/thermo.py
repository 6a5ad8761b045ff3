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
from pymatgen.entries.computed_entries import ComputedEntry

from sc_inverse.builders.base import MaterialBuilder
from sc_inverse.errors import InputError
from sc_inverse.thermo.hull import compatible, entry_from_task, hull_analysis, load_entries
from sc_inverse.thermo.jobs import REFERENCE_ROLE

ENERGY_CALCS = ("scf", "elph")


class HullBuilder(MaterialBuilder):
    """Job outputs with energies (+ reference entries file) → ``thermo``."""

    properties = (*MaterialBuilder.properties, "output.calc_type", "output.energy_eV",
                  "output.structure", "output.input.preset", "output.input.parameters.system",
                  "output.input.pseudopotentials", "output.elements", "output.formula_pretty")
    target_indexes = (*MaterialBuilder.target_indexes, "formula", "chemsys",
                      "e_above_hull_eV_per_atom", "e_form_eV_per_atom", "stable", "is_reference")

    def __init__(self, tasks: Store, thermo: Store, entries_file: str | None = None,
                 chunk_size: int = 5000, **kwargs):
        self.thermo = thermo
        self.entries_file = entries_file
        self._refs: list[ComputedEntry] = []
        self._entries: dict[str, ComputedEntry] = {}
        super().__init__(tasks, thermo, chunk_size=chunk_size, **kwargs)

    def select(self, doc: dict) -> str | None:
        out = doc.get("output")
        if not isinstance(out, dict) or out.get("calc_type") not in ENERGY_CALCS:
            return "ignore"
        if out.get("energy_eV") is None:
            return "ignore" if out.get("calc_type") == "elph" else "field 'output.energy_eV' is missing"
        try:
            self._entries[doc["uuid"]] = entry_from_task(out, f"task:{doc['uuid']}")
        except InputError as exc:
            return str(exc)
        return None

    def prepare(self, docs: list[dict]) -> None:
        self._refs = [self._entries[d["uuid"]] for d in docs
                      if (d.get("metadata") or {}).get("hull_role") == REFERENCE_ROLE]
        if self.entries_file:
            self._refs += load_entries(self.entries_file)

    def _entry(self, docs: list[dict]) -> tuple[dict, ComputedEntry]:
        # prefer the scf (its energy is the one elph carries), latest first
        best = sorted(docs, key=lambda d: (d["output"]["calc_type"] == "scf",
                                           str(d.get("completed_at"))))[-1]
        return best, self._entries[best["uuid"]]

    def group_extra(self, mid: str, docs: list[dict]) -> Any:
        _, entry = self._entry(docs)
        els = {el.symbol for el in entry.composition.elements}
        refs = sorted(str(r.entry_id) + f"@{r.energy:.8f}" for r in self._refs
                      if {el.symbol for el in r.composition.elements} <= els and compatible(r, entry))
        return refs

    def build(self, mid: str, docs: list[dict], extra: Any) -> dict:
        best, entry = self._entry(docs)
        res = hull_analysis(entry, self._refs)
        md = best.get("metadata") or {}
        pred = (md.get("predictions") or {}).get("e_form_eV_per_atom")
        doc = res.model_dump()
        doc.update(
            is_reference=md.get("hull_role") == REFERENCE_ROLE,
            origin=md.get("origin") or ("reference" if md.get("hull_role") else "user"),
            candidate_id=md.get("candidate_id"),
            task_id=best.get("uuid"),
            task_ids=sorted(str(d.get("uuid")) for d in docs),
            ml_e_form_eV_per_atom=pred if isinstance(pred, (int, float)) else None,
            dft_minus_ml_e_form_eV_per_atom=(res.e_form_eV_per_atom - pred)
            if isinstance(pred, (int, float)) and res.e_form_eV_per_atom is not None else None,
        )
        return doc


__all__ = ["ENERGY_CALCS", "HullBuilder"]
