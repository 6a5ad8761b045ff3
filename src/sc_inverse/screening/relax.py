"""MLIP pre-relaxation and energy pre-screen (CHGNet by default, any ASE calculator pluggable).

Generated crystals come out of the decoder unrelaxed (often P1 and strained); a universal
interatomic potential relaxes them in seconds, which (i) gives DFT a better start and (ii) gives
a formation energy against elemental references computed with the *same* potential, so
systematic MLIP errors largely cancel. References are computed once per calculator and cached
under ``settings.data_dir``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from monty.json import jsanitize
from pymatgen.core import Composition, Element, Structure
from tqdm.auto import tqdm

from sc_inverse.data import load_jarvis_sc
from sc_inverse.errors import CalculationError, InputError, ModelLoadError
from sc_inverse.screening.predictor_base import stdout_to_log
from sc_inverse.settings import get_settings
from sc_inverse.thermo.prototypes import DIMER_BOND_A, prototype_structure

# atomate2 (MLFF calculators, ASE relaxer; imports torch) and pymatgen's phase diagram (~2 s)
# are imported inside the functions that use them: the screen imports this module even
# when it does not relax

log = logging.getLogger(__name__)

DEFAULT_CALCULATOR = "CHGNet"


@dataclass
class RelaxResult:
    """What a pre-relaxation yields for one structure (``structure`` is None on failure)."""

    structure: Structure | None
    energy_eV: float | None = None
    energy_per_atom_eV: float | None = None
    initial_energy_per_atom_eV: float | None = None
    steps: int = 0
    converged: bool = False
    volume_change_frac: float | None = None
    seconds: float = 0.0
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-ready dict without the structure."""
        d = asdict(self)
        d.pop("structure")
        return d


def make_calculator(calculator: Any = DEFAULT_CALCULATOR, **kwargs: Any):
    """An ASE calculator from an atomate2 MLFF name (``"CHGNet"``, ``"MACE"``, ...) or as given."""
    if calculator is None:
        calculator = DEFAULT_CALCULATOR
    if not isinstance(calculator, str | dict):
        return calculator  # already an ASE calculator
    try:
        from atomate2.forcefields.utils import ase_calculator

        with stdout_to_log(str(calculator)):
            calc = ase_calculator(calculator, **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"cannot create MLIP calculator {calculator!r}: {type(exc).__name__}: {exc}") from exc
    if calc is None:
        raise ModelLoadError(f"unknown MLIP calculator {calculator!r} (see atomate2.forcefields.MLFF)")
    return calc


def calculator_name(calculator: Any) -> str:
    if isinstance(calculator, str):
        return calculator
    if isinstance(calculator, dict):
        return str(calculator.get("@callable") or calculator.get("@class") or "custom")
    return type(calculator).__name__


class MlipRelaxer:
    """Relax structures with an ASE calculator through atomate2's :class:`AseRelaxer`."""

    def __init__(
        self,
        calculator: Any = DEFAULT_CALCULATOR,
        fmax: float = 0.1,
        steps: int = 300,
        relax_cell: bool = True,
        optimizer: str = "FIRE",
    ):
        self.name = calculator_name(calculator)
        self._calc_spec = calculator
        self._calc = None
        self.fmax, self.steps, self.relax_cell, self.optimizer = fmax, steps, relax_cell, optimizer

    @property
    def calculator(self):
        if self._calc is None:  # CHGNet import + weights cost ~2 s: only when first needed
            self._calc = make_calculator(self._calc_spec)
        return self._calc

    def relax(self, structure: Structure, steps: int | None = None) -> RelaxResult:
        """Relax positions (and cell); never raises for a bad structure, reports it instead."""
        from atomate2.ase.utils import AseRelaxer

        steps = self.steps if steps is None else steps
        t0 = time.perf_counter()
        try:
            relaxer = AseRelaxer(self.calculator, optimizer=self.optimizer, relax_cell=self.relax_cell)
            res = relaxer.relax(structure, fmax=self.fmax, steps=steps, final_atoms_object_file=None,
                                use_emmet_models=False)
            traj = res.trajectory
            frames = traj.frame_properties
            n = len(structure)
            e_final = float(frames[-1]["energy"])
            e_init = float(frames[0]["energy"])
            final = res.final_mol_or_struct
            if not (math.isfinite(e_final) and math.isfinite(final.volume)):
                raise CalculationError("non-finite energy or volume after relaxation")
            return RelaxResult(
                structure=final,
                energy_eV=e_final,
                energy_per_atom_eV=e_final / n,
                initial_energy_per_atom_eV=e_init / n,
                steps=max(0, len(frames) - 1),
                converged=bool(res.converged) if steps > 1 else True,
                volume_change_frac=float(final.volume / structure.volume - 1.0),
                seconds=time.perf_counter() - t0,
            )
        except ModelLoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - a per-structure failure, reported per candidate
            return RelaxResult(structure=None, seconds=time.perf_counter() - t0,
                               error=f"{self.name} relaxation failed: {type(exc).__name__}: {exc}")

    def relax_many(self, structures: Sequence[Structure], progress: bool = False) -> list[RelaxResult]:
        it: Iterable = structures
        if progress:
            it = tqdm(structures, desc=f"{self.name} relax", unit="struct")
        return [self.relax(s) for s in it]


# ---------------------------------------------------------------------------------------------
# elemental references
# ---------------------------------------------------------------------------------------------


def _prototypes(symbol: str) -> list[tuple[str, Structure]]:
    """Candidate ground states of an element: close-packed/bcc/sc/diamond cells or a dimer."""
    if symbol in DIMER_BOND_A:
        return [("dimer", prototype_structure(symbol, "dimer"))]
    kinds = ["fcc", "bcc", "hcp", "sc"] + (["diamond"] if Element(symbol).group in (13, 14, 15, 16) else [])
    protos = [(k, prototype_structure(symbol, k)) for k in kinds]
    # elemental entries of the packaged training set are real ground-state candidates too
    for rec in load_jarvis_sc():
        s = rec["structure"]
        if s.composition.reduced_formula == symbol and len(s) <= 8:
            protos.append((f"jarvis:{rec['jid']}", s))
    return protos


#: CHGNet elemental references of every element in the packaged JARVIS-SC set, computed with
#: :class:`ElementalReferences` at the default relaxer settings (all prototypes of
#: :func:`_prototypes`; relaxed energies do not depend on the starting lattice constant),
#: shipped so a first screen does not spend minutes on them
SHIPPED_REFERENCES = Path(__file__).parent / "models" / "chgnet_elemental_refs.json"


def shipped_references(relaxer: MlipRelaxer) -> dict[str, Any]:
    """The shipped elemental references when ``relaxer`` is the default CHGNet one, else {}."""
    default = MlipRelaxer()
    same = (relaxer.name == default.name and relaxer.fmax == default.fmax
            and relaxer.relax_cell == default.relax_cell)
    if not same or not SHIPPED_REFERENCES.is_file():
        return {}
    return {k: v for k, v in json.loads(SHIPPED_REFERENCES.read_text()).items() if not k.startswith("_")}


class ElementalReferences:
    """Per-element lowest energy per atom (eV/atom) with one calculator, cached on disk."""

    def __init__(self, relaxer: MlipRelaxer, cache_file: str | Path | None = None):
        self.relaxer = relaxer
        if cache_file is None:
            cache_file = Path(get_settings().data_dir) / "mlip_refs" / f"{relaxer.name.lower()}_elemental_refs.json"
        self.cache_file = Path(cache_file)
        self.refs: dict[str, Any] = dict(shipped_references(relaxer))
        if self.cache_file.is_file():
            try:
                self.refs.update(json.loads(self.cache_file.read_text()))
            except json.JSONDecodeError:
                log.warning("ignoring unreadable reference cache %s", self.cache_file)

    def _save(self) -> None:
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(jsanitize(self.refs, strict=False), indent=1, sort_keys=True))
        tmp.replace(self.cache_file)

    def energy_per_atom(self, symbol: str) -> float:
        if symbol not in self.refs:
            best: dict[str, Any] | None = None
            for label, s in _prototypes(symbol):
                r = self.relaxer.relax(s, steps=max(self.relaxer.steps, 300))
                if r.energy_per_atom_eV is None:
                    continue
                if best is None or r.energy_per_atom_eV < best["energy_per_atom_eV"]:
                    best = {"energy_per_atom_eV": r.energy_per_atom_eV, "prototype": label,
                            "structure": r.structure.as_dict()}
            if best is None:
                raise CalculationError(f"no {self.relaxer.name} elemental reference for {symbol}: all prototypes failed")
            log.info("%s reference for %s: %.4f eV/atom (%s)", self.relaxer.name, symbol,
                     best["energy_per_atom_eV"], best["prototype"])
            self.refs[symbol] = best
            self._save()
        return float(self.refs[symbol]["energy_per_atom_eV"])

    def entries(self, elements: Iterable[str] | None = None) -> list:
        """PDEntries of the reference states (for a phase diagram)."""
        from pymatgen.analysis.phase_diagram import PDEntry

        els = sorted(set(elements)) if elements is not None else sorted(k for k in self.refs if k != "_compounds")
        return [PDEntry(Composition(el), self.energy_per_atom(el), name=f"{el} ({self.refs[el]['prototype']})")
                for el in els]

    def compound_entries(self, elements: Iterable[str], max_atoms: int = 24) -> list:
        """PDEntries of packaged JARVIS-SC compounds within ``elements``, relaxed once and cached.

        These are the reference compounds available offline; they make E_above_hull more than
        "E_form clipped at zero" for chemical systems the training set covers.
        """
        from pymatgen.analysis.phase_diagram import PDEntry

        els = set(elements)
        comp_cache = self.refs.setdefault("_compounds", {})
        out, changed = [], False
        for rec in load_jarvis_sc():
            s = rec["structure"]
            sel = {e.symbol for e in s.composition}
            if len(sel) < 2 or not sel <= els or len(s) > max_atoms:
                continue
            if rec["jid"] not in comp_cache:
                r = self.relaxer.relax(s)
                comp_cache[rec["jid"]] = {"formula": s.composition.formula, "energy_per_atom_eV": r.energy_per_atom_eV,
                                          "error": r.error}
                changed = True
            c = comp_cache[rec["jid"]]
            if c.get("energy_per_atom_eV") is not None:
                comp = Composition(c["formula"])
                out.append(PDEntry(comp, c["energy_per_atom_eV"] * comp.num_atoms, name=rec["jid"]))
        if changed:
            self._save()
        return out

    def formation_energy_per_atom(self, composition: Composition, energy_per_atom: float) -> float:
        comp = Composition(composition)
        if comp.num_atoms <= 0:
            raise InputError("empty composition")
        ref = sum(amt * self.energy_per_atom(el.symbol) for el, amt in comp.items()) / comp.num_atoms
        return float(energy_per_atom - ref)


def e_above_hull(
    entries: dict[str, tuple[Composition, float]],
    refs: ElementalReferences,
    reference_entries: Sequence | None = None,
) -> dict[str, float]:
    """E above the hull (eV/atom) of each ``id -> (composition, energy_per_atom)``.

    The hull is built from the elemental references, the packaged JARVIS-SC compounds of the
    same chemical systems (same MLIP, cached), the given entries themselves and any extra
    ``reference_entries`` (pymatgen PDEntry/ComputedEntry on the same energy scale).
    """
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram

    if not entries:
        return {}
    cand = {i: PDEntry(Composition(c), e * Composition(c).num_atoms, name=i) for i, (c, e) in entries.items()}
    # one hull per chemical system: the union of all candidates' elements would pull in (and
    # MLIP-relax) every training compound of a many-element batch
    by_system: dict[frozenset[str], list[str]] = {}
    for i, e in cand.items():
        by_system.setdefault(frozenset(x.symbol for x in e.composition), []).append(i)
    out: dict[str, float] = {}
    for els, ids in by_system.items():
        refs_e = refs.entries(els) + refs.compound_entries(els)
        extra = [e for e in (reference_entries or []) if {x.symbol for x in e.composition} <= els]
        batch = [e for e in cand.values() if {x.symbol for x in e.composition} <= els]
        pd = PhaseDiagram(batch + refs_e + extra)
        out.update({i: float(pd.get_e_above_hull(cand[i], allow_negative=True)) for i in ids})
    return out


def relax_and_score(
    structures: dict[str, Structure],
    relaxer: MlipRelaxer | None = None,
    refs: ElementalReferences | None = None,
    hull: bool = True,
    reference_entries: Sequence | None = None,
    progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """Relax each structure; add ``e_form_eV_per_atom`` (and ``e_above_hull_eV_per_atom``).

    Returns ``id -> {"relax": RelaxResult, "e_form_eV_per_atom", "e_above_hull_eV_per_atom",
    "error"}``; failures carry ``error`` and no energies.
    """
    relaxer = relaxer or MlipRelaxer()
    refs = refs or ElementalReferences(relaxer)
    ids = list(structures)
    results = relaxer.relax_many([structures[i] for i in ids], progress=progress)
    out: dict[str, dict[str, Any]] = {}
    ok: dict[str, tuple[Composition, float]] = {}
    for i, r in zip(ids, results, strict=True):
        rec: dict[str, Any] = {"relax": r, "error": r.error, "e_form_eV_per_atom": None,
                               "e_above_hull_eV_per_atom": None}
        if r.error is None:
            try:
                comp = r.structure.composition
                rec["e_form_eV_per_atom"] = refs.formation_energy_per_atom(comp, r.energy_per_atom_eV)
                ok[i] = (comp, r.energy_per_atom_eV)
            except CalculationError as exc:
                rec["error"] = str(exc)
        out[i] = rec
    if hull and ok:
        for i, v in e_above_hull(ok, refs, reference_entries).items():
            out[i]["e_above_hull_eV_per_atom"] = v
    return out
