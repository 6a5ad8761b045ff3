"""Formation energies and energies above the convex hull from QE total energies.

QE total energies are only comparable between runs with the same pseudopotential for each
element and the same cutoffs/smearing, so every entry carries its ``pseudopotentials`` and a
``settings_key`` (preset, ecutwfc, ecutrho, input_dft) in ``entry.data``; a reference is used
for a candidate only when both agree (:func:`compatible`). References come from QE elemental
(and compound) runs in the store and/or a user JSON file of ``ComputedEntry`` objects.

The hull of a candidate is built from the references of its chemical system alone. Two numbers
place the candidate against it:

* ``e_above_hull_eV_per_atom`` - pymatgen's energy above the convex hull, always >= 0: the hull
  includes the candidate itself, so a candidate below the references' hull is *on* the hull
  (0), one above it is that far above.
* ``e_phase_separation_eV_per_atom`` - pymatgen's decomposition (phase-separation) energy
  (``PhaseDiagram.get_decomp_and_phase_separation_energy``): the energy relative to the hull
  of the *other* phases. Negative = stable by that much (a new stable phase, Bartel et al.,
  npj Comput. Mater. 6, 97 (2020)); positive = equal to the energy above the hull.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from monty.serialization import loadfn
from pydantic import BaseModel, Field
from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.core import Composition, Structure
from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

from sc_inverse.errors import InputError

logger = logging.getLogger(__name__)

#: Tolerance (eV/atom) under which a candidate counts as on the hull.
STABLE_TOL_EV = 1e-6


class HullResult(BaseModel):
    """E_form and E_above_hull of one entry against its references."""

    entry_id: str
    formula: str
    chemsys: str
    energy_per_atom_eV: float
    e_form_eV_per_atom: float | None = None
    e_above_hull_eV_per_atom: float | None = Field(
        None, ge=0.0, description="Energy above the convex hull (>= 0; 0 = on the hull)."
    )
    e_phase_separation_eV_per_atom: float | None = Field(
        None, description="Decomposition energy vs the hull of the other phases; negative = "
        "stable by that much, positive = the energy above the hull."
    )
    stable: bool | None = Field(None, description="On the hull (E_above_hull <= 1e-6 eV/atom).")
    decomposition: dict[str, float] = Field(
        default_factory=dict, description="Formula -> fraction of the competing phases that "
        "the phase-separation energy is measured against."
    )
    reference_ids: list[str] = Field(default_factory=list)
    missing_elements: list[str] = Field(default_factory=list)
    settings_key: str | None = None


def settings_key(task_output: dict) -> str | None:
    """What makes two QE total energies comparable (besides per-element pseudopotentials)."""
    inp = task_output.get("input") or {}
    system = (inp.get("parameters") or {}).get("system") or {}
    preset = inp.get("preset")
    if preset is None and not system:
        return None
    parts = [str(preset), str(system.get("ecutwfc")), str(system.get("ecutrho")),
             str(system.get("input_dft", "")).lower()]
    return "|".join(parts)


def _composition_of(sdict: dict) -> Composition:
    """Composition straight from a ``Structure.as_dict()`` (no Structure object)."""
    amounts: dict[str, float] = {}
    for site in sdict["sites"]:
        for sp in site["species"]:
            amounts[sp["element"]] = amounts.get(sp["element"], 0.0) + float(sp.get("occu", 1))
    if not amounts:
        raise ValueError("structure has no sites")
    return Composition(amounts)


def entry_from_task(task_output: dict, entry_id: str, with_structure: bool = True) -> ComputedEntry:
    """A ``ComputedStructureEntry`` from a QE task document (PwTaskDoc/ElphTaskDoc dict);
    ``with_structure=False`` gives a plain ``ComputedEntry`` (what a hull needs, much faster)."""
    energy = task_output.get("energy_eV")
    structure = task_output.get("structure")
    if energy is None:
        raise InputError(f"task {entry_id}: field 'energy_eV' is missing")
    if structure is None:
        raise InputError(f"task {entry_id}: field 'structure' is missing")
    try:
        energy = float(energy)
    except (TypeError, ValueError) as exc:
        raise InputError(f"task {entry_id}: field 'energy_eV' is not a number") from exc
    if not math.isfinite(energy):
        raise InputError(f"task {entry_id}: field 'energy_eV' is {energy}")
    inp = task_output.get("input") or {}
    data = {"pseudopotentials": dict(inp.get("pseudopotentials") or {}),
            "settings_key": settings_key(task_output)}
    try:
        if isinstance(structure, Structure):
            pass
        elif with_structure:
            structure = Structure.from_dict(structure)
        else:
            return ComputedEntry(_composition_of(structure), energy, entry_id=entry_id, data=data)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"task {entry_id}: field 'structure' is not a Structure ({exc})") from exc
    return ComputedStructureEntry(structure, energy, entry_id=entry_id, data=data)


def load_entries(path: str | Path) -> list[ComputedEntry]:
    """Reference entries from a JSON file (list of ``ComputedEntry.as_dict()``; monty format)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such entries file")
    try:
        data = loadfn(path)
    except (ValueError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a JSON file of ComputedEntry objects ({exc})") from exc
    if isinstance(data, dict) and "entries" in data:
        data = data["entries"]
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a list of ComputedEntry objects")
    entries = []
    for i, e in enumerate(data):
        if isinstance(e, dict):
            try:
                e = ComputedEntry.from_dict(e) if "structure" not in e else ComputedStructureEntry.from_dict(e)
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(f"{path}: entry {i} is not a ComputedEntry ({exc})") from exc
        if not isinstance(e, ComputedEntry):
            raise InputError(f"{path}: entry {i} is a {type(e).__name__}, not a ComputedEntry")
        if e.entry_id is None:
            e.entry_id = f"{path.name}:{i}"
        entries.append(e)
    return entries


def compatible(reference: ComputedEntry, entry: ComputedEntry) -> bool:
    """Same settings key (when both know it) and the same pseudopotential per shared element."""
    rk, ek = reference.data.get("settings_key"), entry.data.get("settings_key")
    if rk and ek and rk != ek:
        return False
    rp, ep = reference.data.get("pseudopotentials") or {}, entry.data.get("pseudopotentials") or {}
    return all(rp[el] == ep[el] for el in rp.keys() & ep.keys())


def chemsys(entry: ComputedEntry | Composition) -> str:
    comp = entry.composition if isinstance(entry, ComputedEntry) else entry
    return "-".join(sorted(el.symbol for el in comp.elements))


def hull_analysis(entry: ComputedEntry, references: list[ComputedEntry],
                  cache: dict | None = None) -> HullResult:
    """E_form/atom and E_above_hull/atom of ``entry`` against compatible ``references``.

    ``cache`` (a dict kept by the caller) re-uses the PhaseDiagram of an identical reference
    set - the builders place thousands of candidates on a few chemical systems."""
    elements = {el.symbol for el in entry.composition.elements}
    refs = [r for r in references
            if {el.symbol for el in r.composition.elements} <= elements and compatible(r, entry)]
    have = {r.composition.elements[0].symbol for r in refs if r.composition.is_element}
    result: dict[str, Any] = {
        "entry_id": str(entry.entry_id), "formula": entry.composition.reduced_formula,
        "chemsys": chemsys(entry), "energy_per_atom_eV": entry.energy_per_atom,
        "settings_key": entry.data.get("settings_key"),
        "reference_ids": sorted(str(r.entry_id) for r in refs),
    }
    missing = sorted(elements - have)
    if missing:
        result["missing_elements"] = missing
        return HullResult(**result)
    key = tuple(sorted((str(r.entry_id), round(r.energy, 8)) for r in refs))
    pd = cache.get(key) if cache is not None else None
    if pd is None:
        pd = PhaseDiagram(refs)
        if cache is not None:
            cache[key] = pd
    decomp, e_sep = pd.get_decomp_and_phase_separation_energy(entry)
    # the hull of references + this entry: below the references' hull it is on the new hull
    e_hull = max(0.0, float(pd.get_e_above_hull(entry, allow_negative=True, check_stable=False)))
    result.update(
        e_form_eV_per_atom=pd.get_form_energy_per_atom(entry),
        e_above_hull_eV_per_atom=e_hull if e_hull > STABLE_TOL_EV else 0.0,
        e_phase_separation_eV_per_atom=float(e_sep),
        stable=bool(e_hull <= STABLE_TOL_EV),
        decomposition={e.composition.reduced_formula: float(f) for e, f in decomp.items()},
    )
    return HullResult(**result)


__all__ = [
    "STABLE_TOL_EV",
    "HullResult",
    "chemsys",
    "compatible",
    "entry_from_task",
    "hull_analysis",
    "load_entries",
    "settings_key",
]
