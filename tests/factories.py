"""Synthetic jobflow output documents for builder tests and benchmarks.

They are made from the real task-document models (:class:`~sc_inverse.qe.schemas.ElphTaskDoc`,
:class:`~sc_inverse.qe.schemas.PwTaskDoc`) serialised exactly as jobflow stores them, so the
builders are exercised against the actual schema; only the numbers are invented. Imported as
``factories``: pytest puts ``tests/`` on ``sys.path`` (pyproject ``pythonpath``), and so does
``benchmarks/bench_builders.py``.
"""

from __future__ import annotations

import copy
import uuid as uuidlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from monty.json import jsanitize
from pymatgen.core import Lattice, Structure

from sc_inverse.qe.schemas import ElphTaskDoc, PwTaskDoc, QeInputSummary
from sc_inverse.thermo.jobs import REFERENCE_ROLE

_PROTOTYPES = [("Nb", "N"), ("V", "N"), ("Al", "Mg"), ("Ti", "C"), ("Zr", "B"), ("Ta", "P")]


def _structure(i: int) -> Structure:
    a, b = _PROTOTYPES[i % len(_PROTOTYPES)]
    if (i // len(_PROTOTYPES)) % 2:  # rock salt (Fm-3m) or CsCl (Pm-3m)
        s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.2 + 0.001 * (i % 97)), [a, b],
                                      [[0, 0, 0], [0.5, 0.5, 0.5]]).get_primitive_structure()
    else:
        s = Structure(Lattice.cubic(3.0 + 0.001 * (i % 89)), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return s


def _job_doc(output: dict, name: str, metadata: dict, i: int, uuid: str | None = None) -> dict:
    t0 = datetime(2026, 1, 1) + timedelta(seconds=i)
    return {"uuid": uuid or str(uuidlib.uuid4()), "index": 1, "output": output,
            "completed_at": t0.isoformat(), "metadata": metadata, "hosts": [str(uuidlib.uuid4())],
            "name": name}


def _input(preset: str, elements: list[str]) -> dict:
    return {"preset": preset, "parameters": {"system": {"ecutwfc": 15.0, "input_dft": ""}},
            "pseudopotentials": {el: f"{el}.pz-vbc.UPF" for el in elements}}


def elph_task(i: int, candidate_id: str | None = None, lambda_: float | None = None,
              predictions: dict | None = None, origin: str = "generated") -> dict:
    """One jobflow document holding an ElphTaskDoc (as stored: jsanitized, @class keys)."""
    rng = np.random.default_rng(i)
    s = _structure(i)
    lam = float(lambda_ if lambda_ is not None else rng.uniform(0.2, 1.2))
    wlog = float(rng.uniform(150, 600))
    tc = wlog / 1.2 * float(np.exp(-1.04 * (1 + lam) / (lam - 0.1 * (1 + 0.62 * lam))))
    els = sorted({sp.symbol for sp in s.species})
    doc = ElphTaskDoc(
        calc_type="elph", dir_name=f"/runs/{i}", task_label="qe elph",
        formula_pretty=s.composition.reduced_formula, elements=els, nsites=len(s),
        structure=s, input=QeInputSummary(**_input("test", els)), lambda_=lam, omega_log_K=wlog,
        tc_K=tc, tc_mcmillan_K=0.9 * tc, selected_sigma_Ry=0.02, selection_rule="converged",
        dynamically_stable=bool(i % 5), min_frequency_cm1=-30.0 if i % 5 == 0 else 1.0,
        energy_eV=-100.0 - i % 7, energy_per_atom_eV=(-100.0 - i % 7) / len(s),
    )
    meta = {"candidate_id": candidate_id or f"cand-{i}", "origin": origin,
            "predictions": predictions if predictions is not None else {"tc_K": tc + 1.0}}
    return _job_doc(jsanitize(doc, strict=True, enum_values=True, allow_bson=True), "qe elph", meta, i)


def scf_task(structure: Structure, energy_eV: float, i: int = 0, metadata: dict | None = None,
             preset: str = "test") -> dict:
    """One jobflow document holding a PwTaskDoc (scf) with the given energy."""
    els = sorted({sp.symbol for sp in structure.species})
    doc = PwTaskDoc(calc_type="scf", dir_name=f"/runs/scf{i}", task_label="qe scf",
                    formula_pretty=structure.composition.reduced_formula, elements=els,
                    nsites=len(structure), structure=structure,
                    input=QeInputSummary(**_input(preset, els)), energy_eV=energy_eV,
                    energy_per_atom_eV=energy_eV / len(structure))
    return _job_doc(jsanitize(doc, strict=True, enum_values=True, allow_bson=True), "qe scf",
                    metadata or {}, i)


def many_elph_tasks(n: int, n_templates: int = 60, distinct_structures: bool = False) -> list[dict]:
    """``n`` distinct elph documents (fast: copies of ``n_templates`` real ones, new ids and
    numbers), for throughput benchmarks. ``distinct_structures`` stretches every cell
    differently so no symmetry analysis can be reused between documents."""
    templates = [elph_task(i) for i in range(n_templates)]
    out = []
    for i in range(n):
        d = copy.deepcopy(templates[i % n_templates])
        d["uuid"] = str(uuidlib.uuid4())
        d["completed_at"] = (datetime(2026, 1, 1) + timedelta(seconds=i)).isoformat()
        d["metadata"] = {**d["metadata"], "candidate_id": f"cand-{i}"}
        d["output"]["lambda_"] = 0.2 + (i % 1000) / 1000
        if distinct_structures:
            m = d["output"]["structure"]["lattice"]["matrix"]
            scale = 1.0 + 1e-4 * i
            d["output"]["structure"]["lattice"]["matrix"] = [[x * scale for x in row] for row in m]
        out.append(d)
    return out


def many_scf_tasks(n: int, n_templates: int = 60) -> list[dict]:
    """``n`` candidate scf documents (energies varied) on the synthetic prototypes, plus one
    tagged elemental reference per element (for HullBuilder benchmarks)."""
    templates = []
    for i in range(n_templates):
        st = _structure(i)
        templates.append(scf_task(st, -5.0 * len(st), i))
    out = []
    for i in range(n):
        d = copy.deepcopy(templates[i % n_templates])
        d["uuid"] = str(uuidlib.uuid4())
        d["completed_at"] = (datetime(2026, 1, 1) + timedelta(seconds=i)).isoformat()
        d["metadata"] = {"candidate_id": f"cand-{i}", "origin": "generated"}
        d["output"]["energy_eV"] += (i % 1000) / 1000 - 0.5
        out.append(d)
    elements = sorted({el for pair in _PROTOTYPES for el in pair})
    for j, el in enumerate(elements):
        st = Structure(Lattice.cubic(3.0), [el], [[0, 0, 0]])
        out.append(scf_task(st, -4.5 - 0.1 * j, n + j, {"hull_role": REFERENCE_ROLE}))
    return out


def set_path(doc: dict, path: str, value: Any) -> dict:
    """Return a copy of ``doc`` with a dotted field set (to make malformed documents)."""
    doc = copy.deepcopy(doc)
    d = doc
    *parts, last = path.split(".")
    for p in parts:
        d = d[p]
    d[last] = value
    return doc


#: the smallest UPF v2 text the pseudopotential checks accept (header + closing tag)
UPF_V2_STUB = """<UPF version="2.0.1">
  <PP_HEADER generated="test" element="{el}" pseudo_type="USPP" relativistic="scalar"
    functional="{functional}" z_valence="3.0" wfc_cutoff="{wfc}" rho_cutoff="{rho}" l_max="2"/>
  <PP_MESH mesh="2"><PP_R>0.1 0.2</PP_R></PP_MESH>
</UPF>
"""


def write_upf(path: Path, el: str, wfc: float = 30.0, rho: float = 240.0,
              functional: str = "PBESOL") -> Path:
    """A UPF file whose header names ``el``, ``functional`` and the suggested cutoffs (Ry)."""
    path.write_text(UPF_V2_STUB.format(el=el, functional=functional, wfc=wfc, rho=rho))
    return path


__all__ = ["elph_task", "many_elph_tasks", "many_scf_tasks", "scf_task", "set_path", "write_upf"]


def gate_task(i: int, stable: bool, candidate_id: str | None = None,
              electronic: dict | None = None) -> dict:
    """One jobflow document holding a StabilityGateDoc (as stored); its scf carries
    ``electronic`` when given (the gap summary E's branch adds to PwTaskDoc)."""
    from sc_inverse.qe.schemas import GATE_SKIP_NOTE, StabilityGateDoc

    s = _structure(i)
    els = sorted({sp.symbol for sp in s.species})
    scf = PwTaskDoc(calc_type="scf", dir_name=f"/runs/gate{i}", task_label="qe stability gate scf",
                    formula_pretty=s.composition.reduced_formula, elements=els, nsites=len(s),
                    structure=s, input=QeInputSummary(**_input("test", els)), energy_eV=-50.0,
                    energy_per_atom_eV=-50.0 / len(s))
    reason = "stable: …" if stable else "unstable: lowest ASR-corrected mode -90.0 cm⁻¹ …"
    doc = StabilityGateDoc(
        calc_type="stability-gate", dir_name=f"/runs/gate{i}", task_label="qe stability gate",
        formula_pretty=s.composition.reduced_formula, elements=els, nsites=len(s), structure=s,
        input=QeInputSummary(**_input("test", els)), stable=stable,
        min_frequency_cm1=120.0 if stable else -90.0, qpoints_grid=[2, 2, 2], reason=reason,
        epc_allowed=stable, epc_skipped_reason=None if stable else f"{GATE_SKIP_NOTE}: {reason}",
        scf=scf, energy_eV=-50.0, energy_per_atom_eV=-50.0 / len(s),
    )
    data = jsanitize(doc, strict=True, enum_values=True, allow_bson=True)
    if electronic is not None:
        data["scf"]["electronic"] = electronic
    meta = {"candidate_id": candidate_id or f"cand-{i}", "origin": "generated",
            "predictions": {"tc_K": 9.0}}
    return _job_doc(data, "qe stability gate", meta, i)
