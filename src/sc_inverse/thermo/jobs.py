"""The flow's convex-hull job and the QE elemental references it needs.

* :class:`ConvexHullMaker` - one job: E_form and E_above_hull of a QE task document (or a
  structure + energy) against reference entries passed in, read from a user entries file and/or
  found in the job store (outputs tagged ``metadata.hull_role == "reference"``).
* :class:`QeElementalReferenceMaker` - pw.x (optional relax +) scf of each element's ground-state
  prototype with the *same* preset, functional, pseudopotentials and cutoffs as the candidates,
  then one job that turns them into ``ComputedStructureEntry`` references (the hull of a QE
  energy is only meaningful against QE references computed alike).

Cutoffs: a preset that takes them from the pseudopotentials (``fast``, ``paper``) gives each
structure the largest cutoffs its elements suggest, so an element alone would get lower cutoffs
than in a compound, and the hull (which compares energies only at equal cutoffs, see
:func:`~sc_inverse.thermo.hull.settings_key`) would find no compatible reference. The rule is
therefore applied per *chemical system*: the references of a candidate are computed with the
cutoffs resolved for all elements of its chemical system, which are the candidate's own. The
same element in another chemical system with other cutoffs gets its own reference run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from jobflow import Flow, Maker, job
from pymatgen.core import Element, Structure
from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

from sc_inverse.errors import InputError
from sc_inverse.qe.jobs import QeRelaxMaker, QeScfMaker
from sc_inverse.qe.pseudos import find_pseudopotentials, resolve_pseudopotentials
from sc_inverse.qe.sets import QePreset, get_preset
from sc_inverse.stores import get_job_store
from sc_inverse.thermo.hull import HullResult, entry_from_task, hull_analysis, load_entries
from sc_inverse.thermo.prototypes import APPROXIMATE_PROTOTYPES, PROTOTYPES, elemental_prototype

logger = logging.getLogger(__name__)

#: Metadata tag of reference jobs (the HullBuilder and ConvexHullMaker look for it).
REFERENCE_ROLE = "reference"


def _references_from_store(elements: set[str]) -> list[ComputedEntry]:
    """Reference outputs in the configured job store whose elements are within ``elements``."""
    store = get_job_store()
    refs = []
    with store:
        for doc in store.query({"metadata.hull_role": REFERENCE_ROLE}, properties=["uuid", "output"]):
            out = doc.get("output") or {}
            if out.get("energy_eV") is None or not set(out.get("elements") or []) <= elements:
                continue
            try:
                refs.append(entry_from_task(out, f"task:{doc['uuid']}"))
            except InputError as exc:
                logger.warning("skipping reference %s: %s", doc.get("uuid"), exc)
    return refs


def _as_entries(items: list | None) -> list[ComputedEntry]:
    out = []
    for i, e in enumerate(items or []):
        if isinstance(e, ComputedEntry):
            out.append(e)
        elif isinstance(e, dict) and "@class" in e:
            out.append(ComputedStructureEntry.from_dict(e) if "structure" in e
                       else ComputedEntry.from_dict(e))
        elif isinstance(e, dict):  # a task document
            out.append(entry_from_task(e, e.get("task_label") or f"reference:{i}"))
        else:
            raise InputError(f"reference {i} is a {type(e).__name__}, not an entry or task doc")
    return out


@dataclass
class ConvexHullMaker(Maker):
    """E_form and E_above_hull of one QE result against reference entries (the flow's
    "convex-hull job").

    ``make(task_doc=elph.output)`` (any QE task doc with ``structure`` and ``energy_eV``) or
    ``make(structure=..., energy_eV=...)``; ``references`` (entries, entry dicts or reference
    task docs, e.g. ``QeElementalReferenceMaker().make(...).output``) are combined with
    ``entries_file`` and, if ``use_store_references``, the store's tagged references.
    """

    name: str = "convex hull"
    entries_file: str | None = None
    use_store_references: bool = True

    @job(output_schema=HullResult)
    def make(
        self,
        task_doc: dict | Any | None = None,
        structure: Structure | None = None,
        energy_eV: float | None = None,
        references: list | None = None,
        entry_id: str | None = None,
    ) -> HullResult:
        if task_doc is not None:
            doc = task_doc.model_dump() if hasattr(task_doc, "model_dump") else dict(task_doc)
        elif structure is not None and energy_eV is not None:
            doc = {"structure": structure, "energy_eV": energy_eV}
        else:
            raise InputError("ConvexHullMaker needs task_doc or both structure and energy_eV")
        entry = entry_from_task(doc, entry_id or doc.get("task_label") or "candidate")
        refs = _as_entries(references)
        if self.entries_file:
            refs += load_entries(self.entries_file)
        if self.use_store_references:
            refs += _references_from_store({el.symbol for el in entry.composition.elements})
        result = hull_analysis(entry, refs)
        if result.missing_elements:
            logger.warning("%s: no compatible reference for %s", result.formula,
                           ", ".join(result.missing_elements))
        return result


@job
def collect_reference_entries(task_docs: list[dict], prototypes: dict[str, str]) -> list[dict]:
    """Turn the elemental scf task docs into ``ComputedStructureEntry`` dicts."""
    entries = []
    for doc in task_docs:
        d = doc.model_dump() if hasattr(doc, "model_dump") else dict(doc)
        el = (d.get("elements") or ["?"])[0]
        e = entry_from_task(d, f"qe-ref:{el}")
        e.data.update(prototype=prototypes.get(el), approximate=el in APPROXIMATE_PROTOTYPES)
        entries.append(e.as_dict())
    return entries


@dataclass
class QeElementalReferenceMaker(Maker):
    """Elemental reference energies computed exactly like the candidates of one chemical system.

    ``make(["Al", "Mg"])`` (or ``structures={"Al": Structure}`` to override prototypes) →
    a Flow of [vc-relax →] scf per element + :func:`collect_reference_entries`, whose output is
    the list of reference entries. Every QE job is tagged ``metadata.hull_role = "reference"``.
    The cutoffs are those the preset's rule gives the whole set of ``elements`` (pass the
    elements of one chemical system, or the candidate's already resolved preset), so the
    references share the candidate's settings key.
    """

    name: str = "qe elemental references"
    preset: str | QePreset | None = None  # None: settings.qe_preset
    pseudo_dir: str | None = None
    pseudo_pattern: str | None = None
    relax: bool = True
    molecule_kpoints: tuple[int, int, int] = (1, 1, 1)
    structures: dict[str, Structure] = field(default_factory=dict)

    def make(self, elements: list[str]) -> Flow:
        symbols = sorted({Element(e).symbol for e in elements})
        _, preset = resolve_pseudopotentials(symbols, get_preset(self.preset), self.pseudo_dir,
                                             self.pseudo_pattern)
        # the la2F data of a dense scf are only needed by ph.x; the energy is the same
        preset = preset.with_updates(la2f_kpoints_grid=None, la2f_kpoints_factor=None)
        common = {"preset": preset, "pseudo_dir": self.pseudo_dir,
                  "pseudo_pattern": self.pseudo_pattern}
        jobs, outputs, protos = [], [], {}
        for el in symbols:
            if el in self.structures:
                s, proto = self.structures[el], "user"
            else:
                s, proto = elemental_prototype(el)
            protos[el] = proto
            if el in APPROXIMATE_PROTOTYPES and proto != "user":
                logger.warning("%s: ground state approximated by a %s prototype", el, proto)
            find_pseudopotentials(s, self.pseudo_dir, self.pseudo_pattern, preset)
            jobs += self._element_jobs(el, s, proto, common, outputs)
        collect = collect_reference_entries(outputs, protos)
        collect.name = "collect reference entries"
        jobs.append(collect)
        return Flow(jobs, output=collect.output, name=self.name)

    def _element_jobs(self, el: str, s: Structure, proto: str, common: dict,
                      outputs: list) -> list:
        """[relax,] scf of one element (the scf output is appended to ``outputs``)."""
        preset = common["preset"]
        kgrid = self.molecule_kpoints if proto == "dimer" else None
        length = None
        meta = {"hull_role": REFERENCE_ROLE, "element": el, "prototype": proto}
        jobs = []
        if self.relax:
            calc = "relax" if proto == "dimer" else "vc-relax"
            relax = QeRelaxMaker(name=f"qe ref {calc} {el}", calculation=calc, **common).make(
                s, kpoints_grid=kgrid)
            relax.update_metadata({**meta, "hull_role": "reference-relax"})
            jobs.append(relax)
            s = relax.output.structure_standardized
            if kgrid is None and preset.kpoints_grid is None:
                length = relax.output.input.kpoint_length_A
            else:
                kgrid = kgrid or relax.output.input.kpoints_grid
        scf = QeScfMaker(name=f"qe ref scf {el}", **common).make(s, kpoints_grid=kgrid,
                                                                 kpoint_length_A=length)
        scf.update_metadata(meta)
        outputs.append(scf.output)
        return [*jobs, scf]


__all__ = [
    "APPROXIMATE_PROTOTYPES",
    "PROTOTYPES",
    "REFERENCE_ROLE",
    "ConvexHullMaker",
    "QeElementalReferenceMaker",
    "collect_reference_entries",
    "elemental_prototype",
]
