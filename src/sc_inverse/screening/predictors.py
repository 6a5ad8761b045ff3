"""Property predictors behind one interface: ``predict(structures, batch_size, device) -> values``.

* :class:`AlignnPredictor` — an ALIGNN model from a local directory (``config.json`` +
  ``best_model.pt``), the model shipped in this package, or an ALIGNN2 registry name
  (``alignn.pretrained.get_alignn2_model``; needs internet the first time, then cached).
* :class:`~sc_inverse.screening.feature_model.FeatureRegressorPredictor` — frozen CHGNet
  embeddings + composition descriptors, gradient-boosted (dir with ``feature_model.json``).
* :class:`EnsemblePredictor` — equal-weight mean of other predictors (dir with
  ``ensemble.json``; :mod:`~sc_inverse.screening.ensemble` writes one). It loads its members
  with :func:`load_predictor`, so it lives here, next to the loader.
* :func:`load_predictor` resolves a name-or-directory to a predictor; the directory's marker
  file picks the kind (``ensemble.json`` > ``feature_model.json`` > ALIGNN ``config.json``).

The interface and model-directory resolution are in :mod:`~sc_inverse.screening.predictor_base`
(re-exported here). Failures are per structure: values are NaN and ``predict_with_errors`` says why.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from sc_inverse.errors import ModelLoadError
from sc_inverse.screening.alignn_model import (
    load_alignn_dir,
    predict_structures,
    predict_structures_shared_graphs,
)
from sc_inverse.screening.feature_model import FeatureRegressorPredictor, is_feature_model_dir
from sc_inverse.screening.predictor_base import (
    MODEL_MARKERS,
    REGISTRY_KEYS,
    SHIPPED_ALIGNN_TC_MODEL,
    SHIPPED_TC_MODEL,
    Predictor,
    fetch_registry_model,
    is_model_dir,
    registry_key,
    resolve_model,
    shipped_model_names,
    shipped_models_dir,
)
from sc_inverse.settings import get_settings

__all__ = [
    "ENSEMBLE_FILE", "MODEL_MARKERS", "REGISTRY_KEYS", "SHIPPED_ALIGNN_TC_MODEL", "SHIPPED_TC_MODEL",
    "AlignnPredictor", "EnsemblePredictor", "FeatureRegressorPredictor", "Predictor",
    "fetch_registry_model", "is_ensemble_dir", "is_model_dir", "load_predictor", "member_ref",
    "registry_key", "resolve_model", "shipped_model_names", "shipped_models_dir",
]

#: marker file of an ensemble model directory, and the only kind of ensemble there is
ENSEMBLE_FILE = "ensemble.json"
ENSEMBLE_KIND = "mean_ensemble"


class AlignnPredictor(Predictor):
    """Batched ALIGNN inference (pure-torch backend) for one scalar target."""

    def __init__(self, model: str | Path | None = None, key: str | None = None, device: str | None = None,
                 resolved: tuple[Path, str] | None = None):
        self.device = device or get_settings().device
        if model is None and resolved is None:  # the default T_c model is an ensemble, not ALIGNN
            model = get_settings().tc_model or SHIPPED_ALIGNN_TC_MODEL
        path, self.source = resolved or resolve_model(model)
        self.loaded = load_alignn_dir(path, device=self.device, source=self.source)
        name = Path(str(model)).name if model is not None else path.name
        target = self.loaded.target
        self.key = (
            key
            or (registry_key(name) if self.source.startswith("alignn2:") else None)
            or (registry_key(target) or target if target not in (None, "target") else None)
            or registry_key(name)
            or name
        )

    def __repr__(self) -> str:
        return f"AlignnPredictor(key={self.key!r}, source={self.source!r})"

    def to_device(self, device: str | None) -> str:
        """Move the network to ``device`` (``None``: keep); returns the device in use."""
        dev = device or self.device
        if dev != self.device:
            self.loaded.model.to(dev)
            self.device = dev
        return dev

    def predict_with_errors(
        self,
        structures: Sequence[Structure],
        batch_size: int = 64,
        device: str | None = None,
        progress: bool = False,
    ) -> tuple[np.ndarray, list[str | None]]:
        dev = self.to_device(device)
        return predict_structures(self.loaded, list(structures), batch_size=batch_size, device=dev,
                                  progress=progress)


def is_ensemble_dir(path: str | Path) -> bool:
    return (Path(path) / ENSEMBLE_FILE).is_file()


def member_ref(path: Path, member: str) -> str | Path:
    """A member entry of ``path/ensemble.json`` as a directory (relative to ``path`` or
    absolute) if one exists, else as given (a shipped or registry name)."""
    p = Path(member).expanduser()
    if not p.is_absolute():
        rel = (path / p).resolve()
        if rel.is_dir():
            return rel
    return p if p.is_dir() else member  # else: a shipped / registry name


class EnsemblePredictor(Predictor):
    """Mean of member predictors; all members must predict the same key."""

    def __init__(self, path: str | Path, source: str | None = None, key: str | None = None,
                 device: str | None = None):
        path = Path(path)
        spec_file = path / ENSEMBLE_FILE
        try:
            self.spec: dict[str, Any] = json.loads(spec_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"{spec_file}: cannot read ({exc})") from exc
        members = self.spec.get("members")
        if self.spec.get("kind") != ENSEMBLE_KIND or not isinstance(members, list) or not members:
            raise ModelLoadError(f"{spec_file}: expected kind {ENSEMBLE_KIND!r} and a non-empty 'members' list")
        self.source = source or str(path)
        self.key = key or self.spec.get("target") or "tc_K"
        self.members = []
        for m in members:
            ref = member_ref(path, str(m))
            if isinstance(ref, Path) and is_ensemble_dir(ref) and ref.resolve() == path.resolve():
                raise ModelLoadError(f"{spec_file}: an ensemble cannot contain itself")
            try:
                self.members.append(load_predictor(ref, key=self.key, device=device))
            except ModelLoadError as exc:
                raise ModelLoadError(f"{spec_file}: member {m!r}: {exc}") from exc

    def __repr__(self) -> str:
        return f"EnsemblePredictor(key={self.key!r}, source={self.source!r}, members={len(self.members)})"

    def predict_members(
        self, structures: Sequence[Structure], batch_size: int = 64, device: str | None = None,
        progress: bool = False,
    ) -> list[tuple[np.ndarray, list[str | None]]]:
        """Every member's ``(values, errors)``, in member order.

        ALIGNN members with the same graph settings share one graph build per structure
        (graph building is ~20 % of an ALIGNN prediction).
        """
        structures = list(structures)
        out: list[tuple[np.ndarray, list[str | None]] | None] = [None] * len(self.members)
        groups: dict[tuple, list[int]] = {}
        for j, m in enumerate(self.members):
            if isinstance(m, AlignnPredictor):
                groups.setdefault((m.loaded.graph, device or m.device), []).append(j)
        for (_, dev), js in groups.items():
            for j in js:
                self.members[j].to_device(dev)
            res = predict_structures_shared_graphs([self.members[j].loaded for j in js], structures,
                                                   batch_size=batch_size, device=dev, progress=progress)
            for j, r in zip(js, res, strict=True):
                out[j] = r
        for j, m in enumerate(self.members):
            if out[j] is None:
                out[j] = m.predict_with_errors(structures, batch_size=batch_size, device=device,
                                               progress=progress)
        return out  # type: ignore[return-value]

    def predict_with_errors(
        self,
        structures: Sequence[Structure],
        batch_size: int = 64,
        device: str | None = None,
        progress: bool = False,
    ) -> tuple[np.ndarray, list[str | None]]:
        outs = self.predict_members(structures, batch_size=batch_size, device=device, progress=progress)
        vals = np.vstack([v for v, _ in outs])
        errors: list[str | None] = []
        for i in range(vals.shape[1]):
            bad = [f"{m.source}: {errs[i] or 'NaN'}" for m, (v, errs) in zip(self.members, outs, strict=True)
                   if errs[i] is not None or not math.isfinite(v[i])]
            errors.append("ensemble member failed: " + "; ".join(bad) if bad else None)
        mean = vals.mean(axis=0)
        mean[[e is not None for e in errors]] = np.nan
        return mean, errors


def load_predictor(name_or_dir: str | Path | None = None, key: str | None = None,
                   device: str | None = None) -> Predictor:
    """The predictor for a model name or directory (``None`` = the shipped T_c model).

    The directory's marker file picks the class; anything else is loaded as ALIGNN (which
    names the missing ``config.json``/``best_model.pt`` if it is not one either).
    """
    path, source = resolve_model(name_or_dir)
    if is_ensemble_dir(path):
        return EnsemblePredictor(path, source=source, key=key, device=device)
    if is_feature_model_dir(path):
        return FeatureRegressorPredictor(path, source=source, key=key)
    return AlignnPredictor(name_or_dir, key=key, device=device, resolved=(path, source))
