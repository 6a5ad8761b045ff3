"""Candidate records and the one loader every structure-reading command uses.

Accepted inputs (see :func:`load_records`):

* a JSON list of records (or ``{"records": [...]}``), each with ``id`` or ``jid`` and either
  ``structure`` (a pymatgen ``Structure.as_dict()``) or ``poscar`` (VASP POSCAR text);
  extra keys are kept (see :class:`CandidateRecord`);
* a single structure file: anything pymatgen reads (CIF, POSCAR, ...) or a pw.x input;
* a folder of such files;
* a CSV with a ``cif`` (or ``poscar``) column and an optional ``id``/``jid`` column.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
from monty.json import MSONable
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pymatgen.core import DummySpecies, Structure

from sc_inverse.errors import InputError

Verdict = Literal["pass", "fail", "not_evaluated"]


#: atoms closer than this (Å, periodic images of the same atom included) are flagged
#: ``atoms_too_close``; pw.x cannot run such a cell and ML predictions on it are meaningless
MIN_DISTANCE_A = 0.5
#: below this volume per atom (Å³) two atoms *must* be closer than ``MIN_DISTANCE_A``: spheres
#: of radius 0.25 Å cannot be packed denser than 74 % (so no neighbour search is needed, which
#: in a nearly flat cell would enumerate millions of images)
_DENSEST_VOLUME_PER_ATOM_A3 = (4 / 3) * np.pi * (MIN_DISTANCE_A / 2) ** 3 / 0.7405


def atoms_too_close(structure: Structure, min_distance_A: float = MIN_DISTANCE_A) -> bool:
    """Whether two atoms (or an atom and its own periodic image) are closer than
    ``min_distance_A``: the one test behind every ``atoms_too_close`` flag and refusal.

    A neighbour list within ``min_distance_A`` (linear in the number of atoms), never the full
    distance matrix.
    """
    n = len(structure)
    if n == 0:
        return False
    if structure.volume / n < _DENSEST_VOLUME_PER_ATOM_A3 * (min_distance_A / MIN_DISTANCE_A) ** 3:
        return True
    reduced = structure.get_reduced_structure("LLL")  # short image search in skewed cells
    return len(reduced.get_neighbor_list(min_distance_A)[0]) > 0


def unknown_elements(structure: Structure) -> list[str]:
    """Symbols that are not chemical elements (pymatgen reads 'Xx' as a dummy species)."""
    return sorted({sp.symbol for sp in structure.composition if isinstance(sp, DummySpecies)})


def structure_problem(structure: Structure) -> str | None:
    """Why ``structure`` cannot be scored or computed at all (None: it can), e.g.
    ``atoms_too_close: ...``; the flag name comes first."""
    if len(structure) == 0:
        return "empty_structure: no atoms"
    if not (np.isfinite(structure.lattice.matrix).all() and np.isfinite(structure.frac_coords).all()):
        return "non_finite_coordinates: NaN or infinite lattice or coordinates"
    if structure.volume <= 0:
        return "unphysical_lattice: zero cell volume"
    unknown = unknown_elements(structure)
    if unknown:
        return f"unknown_element: {', '.join(unknown)} is not a chemical element"
    if atoms_too_close(structure):
        return f"atoms_too_close: atoms closer than {MIN_DISTANCE_A} Å"
    return None


class SymmetryInfo(BaseModel):
    """What symmetry recovery did to a generated cell."""

    spacegroup_before: str | None = None
    spacegroup_after: str | None = None
    rms_displacement_A: float | None = None
    tolerance_A: float | None = None


class RelaxationInfo(BaseModel):
    """The screen's MLIP pre-relaxation of one candidate (the relaxed cell replaces ``structure``)."""

    energy_eV: float | None = None
    energy_per_atom_eV: float | None = None
    initial_energy_per_atom_eV: float | None = None
    steps: int = 0
    converged: bool = False
    volume_change_frac: float | None = Field(None, description="V_relaxed / V_start - 1")
    seconds: float = 0.0
    error: str | None = None
    calculator: str | None = Field(None, description="MLIP name, e.g. 'CHGNet'")


class MlipPhononInfo(BaseModel):
    """The screen's MLIP phonon check of one candidate (criterion ``mlip_dynamically_stable``)."""

    verdict: Literal["stable", "unstable", "not_evaluated"] = "not_evaluated"
    mode: Literal["filter", "advisory"] | None = Field(None, description="advisory: recorded and ranked on, never rejects")
    potential: str | None = Field(None, description="e.g. 'CHGNet', 'SevenNet-0'")
    min_frequency_THz: float | None = Field(None, description="lowest mode over the mesh, acoustic modes at Γ excluded")
    softest_q: list[float] | None = Field(None, description="q of that mode, fractional (primitive reciprocal cell)")
    min_optical_gamma_THz: float | None = None
    tolerance_THz: float | None = Field(None, description="stable = no mode below -tolerance_THz")
    supercell: list[int] | None = None
    n_displacements: int | None = None
    spacegroup: str | None = Field(None, description="of the symmetrised cell the phonons were computed on")
    relax_converged: bool | None = None
    settings: dict[str, Any] = Field(default_factory=dict, description="displacement_A, mesh, ... (PhononSettings)")
    seconds: float = 0.0
    error: str | None = None


def _msonable_to_dicts(obj: Any) -> Any:
    """Recursively turn MSONable objects (Structure, ...) into their dicts; leave the rest."""
    if isinstance(obj, MSONable):
        return obj.as_dict()
    if isinstance(obj, dict):
        return {k: _msonable_to_dicts(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_msonable_to_dicts(v) for v in obj)
    return obj


class CandidateRecord(BaseModel):
    """One crystal as it moves through generation, screening and validation.

    Every field a stage writes is declared here. Undeclared keys are still accepted and kept
    (``extra="allow"``): user files carry their own columns (a training target such as ``tc_K``,
    a ``split``) that the training commands read from ``model_extra`` and that must survive a
    load/save round trip; no stage writes or reads its own results there.
    """

    model_config = ConfigDict(extra="allow")

    id: str
    structure: dict = Field(description="pymatgen Structure.as_dict()")
    origin: str = Field("user", description="generated | training | user | rescue")
    parent_id: str | None = Field(None, description="id of the record this one was derived from (soft-mode rescue)")
    formula: str | None = None
    provenance: dict[str, Any] = Field(default_factory=dict)
    symmetry: SymmetryInfo | None = None
    flags: list[str] = Field(default_factory=list, description="e.g. 'atoms_too_close'")
    predictions: dict[str, float | None] = Field(default_factory=dict)
    verdicts: dict[str, Verdict] = Field(default_factory=dict)
    passed: bool | None = Field(None, description="None until screened")
    rank: int | None = Field(None, description="1 = best survivor of the screen; None otherwise")
    selected: bool | None = Field(None, description="within the screen's top_k; None until screened")
    errors: dict[str, str] = Field(
        default_factory=dict, description="stage/prediction key -> why it has no value (per candidate)"
    )
    duplicate_of: str | None = Field(None, description="id of an earlier record of the same screen")
    matches_training: str | None = Field(None, description="id of the training structure it matches")
    relaxation: RelaxationInfo | None = None
    phonons: MlipPhononInfo | None = None

    @model_validator(mode="before")
    @classmethod
    def _msonable_as_dicts(cls, data):
        """jobflow/monty decode stored dicts back into Structures (also nested ones, e.g. in
        ``provenance``); a record keeps plain JSON so it can be dumped and stored again."""
        return _msonable_to_dicts(data) if isinstance(data, dict) else data

    def get_structure(self) -> Structure:
        return Structure.from_dict(self.structure)

    @classmethod
    def from_structure(cls, structure: Structure, id: str, **kwargs) -> CandidateRecord:
        return cls(
            id=id,
            structure=structure.as_dict(),
            formula=structure.composition.reduced_formula,
            **kwargs,
        )


def _known_elements(structure: Structure, where: str) -> Structure:
    """``structure`` unless a symbol is not an element ('Xx' would fail deep inside QE or a
    model with a bare ValueError)."""
    unknown = unknown_elements(structure)
    if unknown:
        raise InputError(f"{where}: {', '.join(repr(u) for u in unknown)} is not a chemical element")
    return structure


def _structure_from_record(rec: dict, where: str) -> Structure:
    return _known_elements(_parse_record_structure(rec, where), where)


def _parse_record_structure(rec: dict, where: str) -> Structure:
    if "structure" in rec and rec["structure"] is not None:
        s = rec["structure"]
        try:
            return s if isinstance(s, Structure) else Structure.from_dict(s)
        except Exception as exc:  # noqa: BLE001 - re-raised with context
            raise InputError(f"{where}: field 'structure' is not a pymatgen Structure dict ({exc})") from exc
    if "poscar" in rec and rec["poscar"]:
        try:
            return Structure.from_str(rec["poscar"], fmt="poscar")
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{where}: field 'poscar' cannot be parsed ({exc})") from exc
    if "cif" in rec and rec["cif"]:
        try:
            return Structure.from_str(rec["cif"], fmt="cif")
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{where}: field 'cif' cannot be parsed ({exc})") from exc
    raise InputError(f"{where}: record has none of the fields 'structure', 'poscar' or 'cif'")


def record_from_dict(rec: dict, where: str = "record") -> CandidateRecord:
    """Normalise one raw dict (``id|jid`` + ``structure|poscar|cif``) into a CandidateRecord."""
    if not isinstance(rec, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    rid = rec.get("id", rec.get("jid"))
    if rid is None or str(rid) == "":
        raise InputError(f"{where}: record has no 'id' (or 'jid') field")
    if not any(rec.get(k) for k in ("structure", "poscar", "cif")) \
            and (rec.get("errors") or {}).get("structure"):
        return CandidateRecord.model_validate({**rec, "id": str(rid), "structure": {}})  # saved unreadable
    structure = _structure_from_record(rec, f"{where} (id {rid})")
    extra = {k: v for k, v in rec.items() if k not in {"id", "jid", "structure", "poscar", "cif"}}
    if "jid" in rec:
        extra.setdefault("provenance", {}).setdefault("jid", rec["jid"])
    extra.setdefault("formula", structure.composition.reduced_formula)
    try:
        return CandidateRecord(id=str(rid), structure=structure.as_dict(), **extra)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{where} (id {rid}): {exc}") from exc


#: suffixes read as pw.x input files (besides any file with a ``&system`` namelist)
PW_SUFFIXES = {".pwi", ".in", ".pwin", ".pw", ".qe"}


def _read_pw_input(path: Path) -> Structure:
    """A pw.x input (any CELL_PARAMETERS / ATOMIC_POSITIONS units, ibrav) via ASE's reader."""
    # lazy: ase.io costs ~1.5 s and every command imports this module
    from ase.io import read
    from pymatgen.io.ase import AseAtomsAdaptor

    try:
        atoms = read(path, format="espresso-in")
    except Exception as exc:  # noqa: BLE001 - ASE raises many types; re-raised with the file
        raise InputError(f"{path}: not a readable pw.x input ({type(exc).__name__}: {exc})") from exc
    if len(atoms) == 0:
        raise InputError(f"{path}: pw.x input has no atoms")
    try:
        return AseAtomsAdaptor.get_structure(atoms)
    except ValueError as exc:  # ASE keeps unknown species as 'X', pymatgen rejects them
        raise InputError(f"{path}: {exc} (ATOMIC_SPECIES/ATOMIC_POSITIONS must name chemical "
                         "elements)") from exc


def _read_structure_file(path: Path) -> Structure:
    text_head = path.read_text(errors="replace")[:20000] if path.stat().st_size < 5e7 else ""
    if path.suffix.lower() in PW_SUFFIXES or re.search(r"(?im)^\s*&system", text_head):
        return _known_elements(_read_pw_input(path), str(path))
    try:
        structure = Structure.from_file(path)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: not a readable structure file ({exc})") from exc
    return _known_elements(structure, str(path))


def unreadable_record(rid: str, error: str, raw: dict | None = None) -> CandidateRecord:
    """A record kept in a batch although its structure cannot be read: ``errors["structure"]``
    says why, and the screen/predictions skip it (``structure`` holds the raw input, if any)."""
    raw_structure = raw.get("structure") if isinstance(raw, dict) else None
    return CandidateRecord(id=rid, structure=raw_structure if isinstance(raw_structure, dict) else {},
                           errors={"structure": error})


def _load_item(load, rid: str, keep_unreadable: bool, raw: dict | None = None) -> CandidateRecord:
    """``load()``, or (``keep_unreadable``) an :func:`unreadable_record` (the command that
    skips it reports it)."""
    try:
        return load()
    except InputError as exc:
        if not keep_unreadable:
            raise
        return unreadable_record(rid, str(exc), raw)


def _record_id(rec: Any, default: str) -> str:
    rid = rec.get("id", rec.get("jid")) if isinstance(rec, dict) else None
    return default if rid is None or str(rid) == "" else str(rid)


def load_records(path: str | Path, keep_unreadable: bool = False) -> list[CandidateRecord]:
    """Load candidate records from any supported input (see module docstring).

    ``keep_unreadable`` (batch commands: predict, screen, run --include): a record whose
    structure cannot be read (unknown element, no atoms, malformed) does not stop the batch;
    it is returned as an :func:`unreadable_record` (the screen reports and skips it). Otherwise the
    first bad record raises :class:`InputError`.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise InputError(f"{path}: folder holds no structure files")
        return [
            _load_item(lambda f=f: CandidateRecord.from_structure(_read_structure_file(f), id=f.stem,
                                                                  origin="user"),
                       f.stem, keep_unreadable)
            for f in files
        ]
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: invalid JSON ({exc})") from exc
        if isinstance(data, dict) and "records" in data:
            data = data["records"]
        elif isinstance(data, dict) and "@class" in data:  # a bare Structure dict
            structure = _structure_from_record({"structure": data}, str(path))
            return [CandidateRecord.from_structure(structure, id=path.stem)]
        if not isinstance(data, list):
            raise InputError(f"{path}: expected a JSON list of records or {{'records': [...]}}")
        records = [_load_item(lambda r=r, i=i: record_from_dict(r, f"{path}[{i}]"),
                              _record_id(r, f"{path.stem}[{i}]"), keep_unreadable, r)
                   for i, r in enumerate(data)]
        ids = [r.id for r in records]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise InputError(f"{path}: duplicate record ids {dup[:5]}")
        return records
    if suffix == ".csv":
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        out = []
        for i, row in enumerate(rows):
            row = {k.strip().lower(): v for k, v in row.items() if k}
            row.setdefault("id", row.get("jid") or f"{path.stem}-{i}")
            out.append(_load_item(lambda row=row, i=i: record_from_dict(row, f"{path} row {i + 2}"),
                                  str(row["id"]), keep_unreadable))
        if not out:
            raise InputError(f"{path}: CSV has no rows")
        return out
    return [CandidateRecord.from_structure(_read_structure_file(path), id=path.stem)]


def save_records(records: list[CandidateRecord], path: str | Path) -> Path:
    """Write records as a JSON list (atomically, so a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps([r.model_dump(mode="json") for r in records], indent=1))
    tmp.replace(path)
    return path


def load_structure(path: str | Path) -> tuple[Structure, str]:
    """The one structure of ``path`` and its id, from any input :func:`load_records` reads
    (pw.x input, CIF, POSCAR, record JSON); for commands that take exactly one structure."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    records = load_records(path)
    if len(records) != 1:
        raise InputError(f"{path}: holds {len(records)} structures; expected exactly one")
    return records[0].get_structure(), records[0].id
