"""CHGNet-embedding gradient-boosting predictor: training, loading, refit fallback, failures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from screening_testutils import fcc, isolated_atom

from sc_inverse.errors import ModelLoadError
from sc_inverse.screening.feature_model import (
    FeatureRegressorPredictor,
    featurize,
    train_feature_model,
)
from sc_inverse.screening.predictors import load_predictor

TINY_HYPER = {"max_iter": 20, "min_samples_leaf": 3}


@pytest.fixture(scope="module")
def tiny_feature_dir(tmp_path_factory):
    """A real feature model fitted on 30 JARVIS-SC train structures (~5 s)."""
    from sc_inverse.screening.train import load_training_data

    train, val = load_training_data("tc_K")
    out = tmp_path_factory.mktemp("tiny_feat")
    m = train_feature_model(out, train_samples=train[:30], val_samples=val[:5], hyper=TINY_HYPER,
                            cv_folds=3, command="pytest tiny feature model")
    assert math.isfinite(m["val_mae"]) and math.isfinite(m["cv_mae_train"]) and m["n_train"] == 30
    return out


def test_features_are_per_structure_and_reject_isolated_atoms():
    X, errs = featurize([fcc("Cu"), isolated_atom(), fcc("Al", 4.05)])
    assert X.shape == (3, 64 + 141)
    assert np.isfinite(X[0, :64]).all() and np.isfinite(X[2, :64]).all()
    assert errs[0] is None and errs[2] is None
    assert errs[1] is not None and np.isnan(X[1]).all()
    assert not np.allclose(X[0], X[2])  # the features see the structure


def test_load_predict_and_card(tiny_feature_dir):
    p = load_predictor(tiny_feature_dir)
    assert isinstance(p, FeatureRegressorPredictor) and p.key == "tc_K"
    vals, errs = p.predict_with_errors([fcc("Cu"), isolated_atom(), fcc("Nb", 4.2)])
    assert math.isfinite(vals[0]) and math.isfinite(vals[2]) and math.isnan(vals[1])
    assert errs[1] and "CHGNet" in errs[1]
    card = (tiny_feature_dir / "MODEL_CARD.md").read_text()
    assert "pytest tiny feature model" in card and "val MAE" in card and "CV MAE" in card


def test_other_sklearn_version_refits_to_the_same_model(tiny_feature_dir, tmp_path):
    import shutil

    d = tmp_path / "m"
    shutil.copytree(tiny_feature_dir, d)
    meta = json.loads((d / "feature_model.json").read_text())
    meta["sklearn_version"] = "0.0.0"
    (d / "feature_model.json").write_text(json.dumps(meta))
    (d / "regressor.pkl").unlink()
    structs = [fcc("Cu"), fcc("Nb", 4.2)]
    np.testing.assert_allclose(load_predictor(d).predict(structs), load_predictor(tiny_feature_dir).predict(structs),
                               rtol=1e-9, atol=1e-9)
    (d / "train_features.npz").unlink()
    with pytest.raises(ModelLoadError, match="refit"):
        load_predictor(d)


def test_wrong_kind_is_model_load_error(tmp_path):
    (tmp_path / "feature_model.json").write_text(json.dumps({"kind": "something_else"}))
    with pytest.raises(ModelLoadError, match="kind"):
        load_predictor(tmp_path)
