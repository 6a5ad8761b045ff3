"""T_c from pretrained CHGNet crystal embeddings + composition descriptors, gradient-boosted.

Why: with 846 training structures a 1 M-parameter ALIGNN trained from scratch barely beats a
constant. CHGNet (shipped offline in its wheel, pretrained on 1.5 M MPtrj frames) already encodes
bonding; its 64-d crystal feature plus matminer's magpie composition statistics, fed to an
L1-loss histogram gradient-boosting regressor, is a cheap transfer-learning member (fits in
seconds) that scores as well as ALIGNN on val and errs differently, so averaging helps.

A model directory holds ``feature_model.json`` (kind, target, features, hyper-parameters,
versions), ``regressor.pkl`` (the fitted sklearn model, our own file — load only trusted dirs)
and ``train_features.npz`` (the exact training matrix): if the installed scikit-learn differs
from the one that pickled the regressor, it is refitted from that matrix (deterministic, ~3 s)
instead of trusting a cross-version unpickle.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import sys
import time
import warnings
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from sc_inverse.errors import InputError, ModelLoadError
from sc_inverse.screening.predictor_base import Predictor, stdout_to_log
from sc_inverse.screening.train import load_training_data

# chgnet, matminer, scikit-learn and torch are imported inside the functions that use them
# (seconds each): loading the predictors must not pay for a kind it does not use

log = logging.getLogger(__name__)

FEATURE_MODEL_FILE = "feature_model.json"
KIND = "chgnet_hgb"
#: CHGNet embeds elements 1..94
CHGNET_MAX_Z = 94

#: chosen by 5-fold CV MAE on the train split (never by val), see the model card
DEFAULT_HYPER: dict[str, Any] = {"loss": "absolute_error", "learning_rate": 0.03, "max_iter": 600,
                                 "min_samples_leaf": 20, "l2_regularization": 0.0}


@lru_cache(maxsize=2)
def chgnet_model(version: str = "0.3.0"):
    """The pretrained CHGNet from the installed wheel (no network), in eval mode, on CPU."""
    from chgnet.model import CHGNet

    try:
        with stdout_to_log("CHGNet"):
            model = CHGNet.load(model_name=version, use_device="cpu", verbose=False)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"cannot load pretrained CHGNet {version} ({type(exc).__name__}: {exc})") from exc
    return model.eval()


@lru_cache(maxsize=1)
def _magpie():
    from matminer.featurizers.composition import ElementProperty, Stoichiometry

    return ElementProperty.from_preset("magpie"), Stoichiometry()


def composition_features(structure: Structure) -> list[float]:
    """Magpie element statistics + stoichiometry norms + volume/atom, density, sites (141 values).

    Elements without a magpie entry give NaN, which the gradient-boosting regressor handles.
    """
    ep, st = _magpie()
    comp = structure.composition
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = list(ep.featurize(comp)) + list(st.featurize(comp))
    return [float(x) for x in f] + [structure.volume / len(structure), float(structure.density),
                                    float(len(structure))]


def chgnet_features(structures: Sequence[Structure], batch_size: int = 64,
                    version: str = "0.3.0") -> tuple[np.ndarray, list[str | None]]:
    """CHGNet 64-d crystal features (pooled atom embeddings); NaN rows + messages on failure."""
    import torch

    model = chgnet_model(version)
    n = len(structures)
    out = np.full((n, 64), np.nan)
    errors: list[str | None] = [None] * n
    idx, graphs = [], []
    for i, s in enumerate(structures):
        try:
            too_heavy = sorted({el.symbol for el in s.composition if el.Z > CHGNET_MAX_Z})
            if too_heavy:
                raise InputError(f"CHGNet has no embedding for {too_heavy}")
            graphs.append(model.graph_converter(s))
            idx.append(i)
        except Exception as exc:  # noqa: BLE001 - per-structure rejection
            errors[i] = f"CHGNet graph rejected: {type(exc).__name__}: {exc}"
    for start in range(0, len(graphs), max(1, batch_size)):
        chunk = graphs[start:start + max(1, batch_size)]
        ids = idx[start:start + len(chunk)]
        try:
            with torch.inference_mode():
                pred = model(chunk, task="e", return_crystal_feas=True)
            out[ids] = pred["crystal_fea"].detach().to(torch.float64).numpy()
        except Exception as exc:  # noqa: BLE001
            for i in ids:
                errors[i] = f"CHGNet forward failed: {type(exc).__name__}: {exc}"
    return out, errors


def featurize(structures: Sequence[Structure], batch_size: int = 64,
              version: str = "0.3.0") -> tuple[np.ndarray, list[str | None]]:
    """Rows of [CHGNet crystal feature | composition features]; failed rows are all NaN."""
    cf, errors = chgnet_features(structures, batch_size=batch_size, version=version)
    comp = []
    for i, s in enumerate(structures):
        try:
            comp.append(composition_features(s))
        except Exception as exc:  # noqa: BLE001
            comp.append(None)
            errors[i] = errors[i] or f"composition features failed: {type(exc).__name__}: {exc}"
    width = len(next((c for c in comp if c is not None), [])) or 141
    comp_arr = np.array([c if c is not None else [np.nan] * width for c in comp], dtype=float)
    X = np.hstack([cf, comp_arr.reshape(len(structures), width)])
    for i, e in enumerate(errors):
        if e is not None:
            X[i] = np.nan
    return X, errors


def _regressor(hyper: dict[str, Any], seed: int):
    from sklearn.ensemble import HistGradientBoostingRegressor

    # no early stopping: fit is deterministic given the seed, so a refit reproduces the model
    return HistGradientBoostingRegressor(early_stopping=False, random_state=seed, **hyper)


def is_feature_model_dir(path: str | Path) -> bool:
    return (Path(path) / FEATURE_MODEL_FILE).is_file()


class FeatureRegressorPredictor(Predictor):
    """CHGNet-embedding + composition gradient-boosting predictor (one scalar target)."""

    def __init__(self, path: str | Path, source: str | None = None, key: str | None = None):
        import sklearn

        path = Path(path)
        meta_file = path / FEATURE_MODEL_FILE
        try:
            self.meta: dict[str, Any] = json.loads(meta_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"{meta_file}: cannot read ({exc})") from exc
        if self.meta.get("kind") != KIND:
            raise ModelLoadError(f"{meta_file}: kind {self.meta.get('kind')!r} is not {KIND!r}")
        self.source = source or str(path)
        self.key = key or self.meta.get("target") or "tc_K"
        self.chgnet_version = self.meta.get("chgnet_model", "0.3.0")
        self.regressor = None
        pkl = path / "regressor.pkl"
        if self.meta.get("sklearn_version") == sklearn.__version__ and pkl.is_file():
            try:
                with pkl.open("rb") as fh:
                    self.regressor = pickle.load(fh)  # noqa: S301 - our own model file
            except Exception as exc:  # noqa: BLE001
                log.warning("%s: unpickling failed (%s); refitting from train_features.npz", pkl, exc)
        if self.regressor is None:
            self.regressor = self._refit(path)

    def _refit(self, path: Path):
        data = path / "train_features.npz"
        if not data.is_file():
            raise ModelLoadError(f"{path}: regressor.pkl unusable and no train_features.npz to refit from")
        with np.load(data) as z:
            X, y = z["X"], z["y"]
        log.info("%s: refitting the regressor on %d stored training rows", path, len(y))
        return _regressor(self.meta["hyper"], int(self.meta.get("seed", 0))).fit(X, y)

    def __repr__(self) -> str:
        return f"FeatureRegressorPredictor(key={self.key!r}, source={self.source!r})"

    def predict_with_errors(
        self,
        structures: Sequence[Structure],
        batch_size: int = 64,
        device: str | None = None,
        progress: bool = False,
    ) -> tuple[np.ndarray, list[str | None]]:
        """Per-structure values (NaN + message where featurisation fails); CPU only."""
        X, errors = featurize(list(structures), batch_size=batch_size, version=self.chgnet_version)
        values = np.full(len(errors), np.nan)
        ok = np.array([e is None for e in errors], dtype=bool)
        if ok.any():
            values[ok] = self.regressor.predict(X[ok])
        for i in np.flatnonzero(ok):
            if not math.isfinite(values[i]):
                errors[i] = "model returned a non-finite value (NaN/inf)"
                values[i] = np.nan
        return values, errors


def train_feature_model(
    out_dir: str | Path,
    target: str = "tc_K",
    data: str | Path | None = None,
    seed: int = 0,
    hyper: dict[str, Any] | None = None,
    cv_folds: int = 5,
    train_samples: list | None = None,
    val_samples: list | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Fit on train, report k-fold CV MAE on train and MAE on val; write the model dir + card.

    Training rows whose featurisation fails are dropped (counted in the metrics).
    """
    import sklearn
    from sklearn.model_selection import KFold, cross_val_predict

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if train_samples is None or val_samples is None:
        train_samples, val_samples = load_training_data(target, data)
    hyper = {**DEFAULT_HYPER, **(hyper or {})}
    t0 = time.time()
    X, errs = featurize([s.structure for s in train_samples])
    y = np.array([s.y for s in train_samples])
    ok = np.array([e is None for e in errs])
    X, y = X[ok], y[ok]
    if len(y) < 2:
        raise InputError("feature model needs >= 2 featurisable train samples")
    cv_mae = None
    folds = min(cv_folds, len(y))
    if folds >= 2:
        oof = cross_val_predict(_regressor(hyper, seed), X, y,
                                cv=KFold(folds, shuffle=True, random_state=seed))
        cv_mae = float(np.mean(np.abs(oof - y)))
    reg = _regressor(hyper, seed).fit(X, y)
    seconds = time.time() - t0
    meta = {"kind": KIND, "target": target, "unit": "K" if target.endswith("_K") else "",
            "features": "CHGNet crystal_fea (64) + magpie/stoichiometry/volume-per-atom/density/n_sites (141)",
            "chgnet_model": "0.3.0", "regressor": "sklearn HistGradientBoostingRegressor",
            "hyper": hyper, "seed": seed, "sklearn_version": sklearn.__version__}
    (out / FEATURE_MODEL_FILE).write_text(json.dumps(meta, indent=2))
    with (out / "regressor.pkl").open("wb") as fh:
        pickle.dump(reg, fh)
    np.savez_compressed(out / "train_features.npz", X=X.astype(np.float64), y=y)

    pred = FeatureRegressorPredictor(out).predict([s.structure for s in val_samples])
    yv = np.array([s.y for s in val_samples])
    okv = np.isfinite(pred)
    metrics = {
        "target": target, "kind": KIND, "val_mae": float(np.mean(np.abs(pred[okv] - yv[okv]))) if okv.any()
        else float("nan"), "cv_mae_train": cv_mae, "cv_folds": folds,
        "val_baseline_mae_train_median": float(np.mean(np.abs(yv - np.median(y)))),
        "n_train": int(len(y)), "n_train_dropped": int((~ok).sum()), "n_val": len(val_samples),
        "n_val_failed": int((~okv).sum()), "train_seconds": round(seconds, 1),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "val_predictions.json").write_text(json.dumps(
        [{"id": s.id, "target": s.y, "pred": None if not math.isfinite(p) else p}
         for s, p in zip(val_samples, pred.tolist(), strict=True)]))
    _write_card(out, meta, metrics, command or " ".join(sys.argv), data)
    return metrics


def _write_card(out: Path, meta: dict, m: dict, command: str, data) -> None:
    cv = f"{m['cv_mae_train']:.3f}" if m["cv_mae_train"] is not None else "n/a"
    (out / "MODEL_CARD.md").write_text(f"""# CHGNet-embedding gradient-boosting model: {m['target']}

- Command: `{command}`
- Data: {"packaged JARVIS-SC (fit on train; val only reported; test split never read)" if data is None else data}
- n_train = {m['n_train']} (dropped {m['n_train_dropped']}), n_val = {m['n_val']}
- Features: {meta['features']}; CHGNet {meta['chgnet_model']} pretrained weights, frozen
- Regressor: {meta['regressor']} {json.dumps(meta['hyper'])}, seed {meta['seed']},
  scikit-learn {meta['sklearn_version']}; hyper-parameters chosen by {m['cv_folds']}-fold CV on train
- Fit time (features + CV + fit): {m['train_seconds']} s

## Validation
- {m['cv_folds']}-fold CV MAE on train = {cv}
- **val MAE = {m['val_mae']:.3f}** (all {m['n_val']} val structures, {m['n_val_failed']} failed)
- baseline (predict the train median) val MAE = {m['val_baseline_mae_train_median']:.3f}

## Use
`sc_inverse.screening.predictors.load_predictor("<this dir>")`. Structures with elements beyond
Pu (Z > 94, no CHGNet embedding) or that CHGNet cannot graph are rejected per structure.
""")
