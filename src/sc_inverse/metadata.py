"""What the project writes onto jobflow jobs besides their inputs: the identity of the candidate a
job belongs to (``metadata``, read back by the builders) and the FireWorks category that routes a
job to a worker (``manager_config["_category"]``).

Plain jobflow operations, usable by every layer: the pipeline tags the jobs it creates at run
time, the FireWorks execution tags the jobs it submits.

**Material identity** (:func:`material_id`): a hash of the standardised structure and of the
calculation settings, so the same structure computed with the same settings is one material -
re-running it updates its row instead of adding one, and its work folder can be found again.
The structure part (:func:`canonical_structure`) is spglib's standardised primitive cell at
``symprec`` = :data:`IDENTITY_SYMPREC_A` (1e-3 Å), its lattice lengths rounded to 1e-3 Å, angles
to 0.01° and fractional coordinates to 1e-4 (~1e-3 Å for cells under 10 Å), the origin moved to
the atom of the rarest element that gives the smallest site list. 1e-3 Å is far above the
noise of writing one structure in different formats (CIF, POSCAR, pw.x input in bohr: ~1e-6 Å)
and far below any displacement that changes an EPC result (QE's own ``tr2``/``conv_thr``
make differences of ~1e-3 Å invisible); two cells differing by less can still straddle a
rounding boundary (probability ~ noise / step, about 1e-3 for a noisy general position).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import spglib
from jobflow import Flow, Job
from pymatgen.core import Lattice, Structure

#: spglib tolerance (Å) of the standardisation behind :func:`canonical_structure`
IDENTITY_SYMPREC_A = 1e-3
#: rounding of the canonical cell: Å, degrees, fractional coordinates
LENGTH_DECIMALS, ANGLE_DECIMALS, FRAC_DECIMALS = 3, 2, 4


def tag_candidate(
    flow: Flow | Job,
    candidate_id: str,
    origin: str = "generated",
    predictions: Mapping[str, float | None] | None = None,
    **extra: Any,
) -> Flow | Job:
    """Put the candidate's identity on every job's metadata (in place).

    The builders read it back: ``candidate_id`` groups a material's tasks, ``origin``
    (generated/training/user) and the screening-time ML ``predictions`` (e.g. ``tc_K``,
    ``e_form_eV_per_atom``) go into ``superconductors``/``thermo`` with DFT − ML differences.
    """
    meta = {"candidate_id": str(candidate_id), "origin": origin,
            "predictions": {k: v for k, v in (predictions or {}).items() if v is not None},
            **extra}
    flow.update_metadata(meta)
    return flow


def iter_jobs(flow: Flow | Job) -> Iterator[Job]:
    """Every job of ``flow``, depth first through nested flows."""
    if isinstance(flow, Flow):
        for item in flow.jobs:
            yield from iter_jobs(item)
    else:
        yield flow


def set_categories(flow: Flow | Job, rules: Mapping[str | type, str]) -> Flow | Job:
    """Set the FireWorks ``_category`` of the jobs that ``rules`` select, in place.

    ``rules`` maps a job-name substring or a Maker class to a category; later rules win. Jobs a
    job creates at run time (e.g. q-point jobs) inherit it through jobflow's ``pass_manager_config``.
    """
    for job in iter_jobs(flow):
        maker = getattr(job.function, "__self__", None)
        for selector, category in rules.items():
            hit = (selector in (job.name or "")) if isinstance(selector, str) \
                else isinstance(maker, selector)
            if hit:
                job.config.manager_config = {**job.config.manager_config, "_category": category}
    return flow


def _rounded(values, decimals: int) -> list[float]:
    # + 0.0 turns -0.0 into 0.0 (they would hash differently)
    return [round(float(v), decimals) + 0.0 for v in values]


def _sites(frac: np.ndarray, numbers: np.ndarray, shift: np.ndarray) -> list[list[float]]:
    wrapped = np.round((frac - shift) % 1.0, FRAC_DECIMALS) % 1.0
    return sorted([float(z), *_rounded(xyz, FRAC_DECIMALS)] for z, xyz in zip(numbers, wrapped,
                                                                               strict=True))


def canonical_structure(structure: Structure) -> dict[str, Any]:
    """Formula, space group, lattice parameters and sites of the standardised primitive cell,
    rounded (see the module docstring) - equal for equal structures in any setting or order."""
    cell = (structure.lattice.matrix, structure.frac_coords,
            [site.specie.Z for site in structure])
    std = spglib.standardize_cell(cell, to_primitive=True, no_idealize=False,
                                  symprec=IDENTITY_SYMPREC_A)
    dataset = spglib.get_symmetry_dataset(cell, symprec=IDENTITY_SYMPREC_A)
    if std is None or dataset is None:  # spglib failed: the reduced cell as given
        lattice, frac, numbers = cell[0], cell[1], np.asarray(cell[2])
        number = 1
    else:
        (lattice, frac, numbers), number = std, int(dataset.number)
    numbers = np.asarray(numbers)
    counts = {z: int((numbers == z).sum()) for z in set(numbers.tolist())}
    rarest = min(counts, key=lambda z: (counts[z], z))
    sites = min(_sites(frac, numbers, frac[i]) for i in np.flatnonzero(numbers == rarest))
    lat = Lattice(lattice)
    return {"formula": structure.composition.reduced_formula, "spacegroup": number,
            "abc": _rounded(lat.abc, LENGTH_DECIMALS),
            "angles": _rounded(lat.angles, ANGLE_DECIMALS), "sites": sites}


def material_id(structure: Structure, settings: Mapping[str, Any]) -> str:
    """``<formula>-<space group>-<12 hex>``: one id per (structure, calculation settings).

    ``settings`` holds everything that changes the result (preset, functional and
    pseudopotentials, relaxation); it must be JSON-serialisable.
    """
    canon = canonical_structure(structure)
    text = json.dumps({"structure": canon, "settings": settings}, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"{canon['formula']}-{canon['spacegroup']}-{digest}"
