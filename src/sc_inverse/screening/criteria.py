"""Screening criteria: a configurable list of (predictor, comparison, threshold).

The default reproduces the paper's screen: T_c > 5 K (shipped ALIGNN model, or
``settings.tc_model``),
E_gap < 0.05 eV (ALIGNN2 registry ``optb88vdw_bandgap_radius``; needs internet once) and
E_form < 0 eV/atom, here from the CHGNet-relaxed structure against CHGNet elemental references
(the paper used an ALIGNN formation-energy model on the unrelaxed cell; put
``formation_energy_peratom_radius`` in a criteria file to do exactly that).

A fourth default criterion, ``mlip_dynamically_stable`` (MLIP phonons of the relaxed cell, key
``mlip_min_frequency_THz >= -tolerance``), is *advisory*: recorded, and survivors it calls unstable
rank after the others, but it rejects nobody. ``mode: filter`` in a criteria file makes it (or any
criterion) a filter; ``mode: advisory`` makes any criterion advisory. Why it is advisory by
default, with the measured numbers: ``docs/criteria.md``.

A missing value is never a pass: :meth:`Criterion.verdict` returns ``not_evaluated``.
"""

from __future__ import annotations

import json
import math
import operator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sc_inverse.errors import InputError
from sc_inverse.records import Verdict
from sc_inverse.screening.phonons import DEFAULT_TOLERANCE_THZ
from sc_inverse.screening.predictor_base import SHIPPED_TC_MODEL
from sc_inverse.settings import get_settings

Comparison = Literal[">", ">=", "<", "<="]
_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
_OP_WORDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "greater": ">", "less": "<"}

#: predictor names that mean "the MLIP relaxation stage", and the keys that stage produces
MLIP_PREDICTORS = ("mlip", "chgnet", "relax")
MLIP_KEYS = ("e_form_eV_per_atom", "e_above_hull_eV_per_atom", "mlip_energy_per_atom_eV", "volume_change_frac")
#: the MLIP phonon check: its key (lowest frequency, acoustic modes at Γ excluded) and verdict name
PHONON_KEY = "mlip_min_frequency_THz"
PHONON_CRITERION = "mlip_dynamically_stable"
Mode = Literal["filter", "advisory"]


def _phonon_defaults(data: dict) -> dict:
    """``{key: mlip_dynamically_stable}`` (or ``predictor: mlip_phonons``) is shorthand for
    ``mlip_min_frequency_THz >= -DEFAULT_TOLERANCE_THZ``, named ``mlip_dynamically_stable``,
    advisory unless ``mode`` says otherwise."""
    if data.get("key") != PHONON_CRITERION and str(data.get("predictor", "")).lower() != "mlip_phonons":
        return data
    out = {"comparison": ">=", "threshold": -DEFAULT_TOLERANCE_THZ, "name": PHONON_CRITERION,
           "mode": "advisory", **data}
    out.update(predictor="mlip", key=PHONON_KEY)
    return out


class Criterion(BaseModel):
    """``predictions[key] <comparison> threshold`` with ``key`` computed by ``predictor``."""

    model_config = ConfigDict(extra="forbid")

    predictor: str | None = Field(
        None, description="ALIGNN model name/dir, 'mlip' for the relaxation stage; None = shipped T_c model"
    )
    key: str | None = Field(None, description="prediction name; default: the predictor's own key")
    comparison: Comparison
    threshold: float
    name: str | None = Field(None, description="verdict name; default e.g. 'tc_K > 5'")
    mode: Mode = Field("filter", description="filter: must pass; advisory: recorded and ranked on only")

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if "op" in data and "comparison" not in data:
                data["comparison"] = data.pop("op")
            c = data.get("comparison")
            if isinstance(c, str):
                data["comparison"] = _OP_WORDS.get(c.strip().lower(), c.strip())
            if "model" in data and "predictor" not in data:
                data["predictor"] = data.pop("model")
            data = _phonon_defaults(data)
        return data

    @model_validator(mode="after")
    def _check(self) -> Criterion:
        if self.stage == "mlip":
            self.key = self.key or "e_form_eV_per_atom"
            if self.key not in (*MLIP_KEYS, PHONON_KEY):
                raise ValueError(f"the MLIP stage yields {(*MLIP_KEYS, PHONON_KEY)}, not {self.key!r}")
        if not math.isfinite(self.threshold):
            raise ValueError("threshold must be finite")
        return self

    @property
    def stage(self) -> Literal["ml", "mlip"]:
        """'ml' (cheap, ALIGNN on every candidate) or 'mlip' (relaxation, survivors only)."""
        return "mlip" if (self.predictor or "").lower() in MLIP_PREDICTORS else "ml"

    @property
    def is_phonon(self) -> bool:
        """The MLIP phonon check (runs after the energy criteria, on their survivors)."""
        return self.key == PHONON_KEY

    @property
    def cost(self) -> int:
        return 100 if self.is_phonon else 10 if self.stage == "mlip" else 1

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return f"{self.key or self.predictor or 'tc_K'} {self.comparison} {self.threshold:g}"

    def verdict(self, value: float | None) -> Verdict:
        """pass / fail; ``not_evaluated`` for a missing or non-finite value."""
        if value is None or not math.isfinite(float(value)):
            return "not_evaluated"
        return "pass" if _OPS[self.comparison](float(value), self.threshold) else "fail"


def default_criteria() -> list[Criterion]:
    """The paper's three criteria (see module docstring for the E_form source) and the advisory
    MLIP phonon check."""
    tc_model = get_settings().tc_model or SHIPPED_TC_MODEL
    return [
        Criterion(predictor=tc_model, key="tc_K", comparison=">", threshold=5.0),
        Criterion(predictor="optb88vdw_bandgap_radius", key="gap_eV", comparison="<", threshold=0.05),
        Criterion(predictor="mlip", key="e_form_eV_per_atom", comparison="<", threshold=0.0),
        Criterion(key=PHONON_CRITERION),
    ]


def parse_criteria(items: Any, where: str = "criteria") -> list[Criterion]:
    if isinstance(items, dict) and "criteria" in items:
        items = items["criteria"]
    if not isinstance(items, list) or not items:
        raise InputError(f"{where}: expected a non-empty list of criteria (or {{'criteria': [...]}})")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, Criterion):
            out.append(item.model_copy())
            continue
        try:
            out.append(Criterion.model_validate(item))
        except ValidationError as exc:
            msg = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in exc.errors())
            raise InputError(f"{where}[{i}]: {msg}") from exc
    labels = [c.label for c in out]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise InputError(f"{where}: duplicate criteria {dup}")
    return out


def load_criteria(path: str | Path) -> list[Criterion]:
    """Criteria from a JSON or YAML file (a list, or a mapping with key ``criteria``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"criteria file {path} does not exist")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"criteria file {path}: cannot parse ({exc})") from exc
    return parse_criteria(data, where=str(path))


def order_by_cost(criteria: list[Criterion]) -> list[Criterion]:
    """Cheapest first (stable): all ALIGNN criteria, then the MLIP energies, then MLIP phonons."""
    return sorted(criteria, key=lambda c: c.cost)
