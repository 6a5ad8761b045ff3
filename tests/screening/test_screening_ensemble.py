"""Mean ensemble of predictors: loading by marker file, averaging, per-structure rejection."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from screening_testutils import b2, fcc, isolated_atom

from sc_inverse.errors import ModelLoadError
from sc_inverse.screening.ensemble import write_ensemble
from sc_inverse.screening.predictors import AlignnPredictor, EnsemblePredictor, load_predictor


@pytest.fixture(scope="module")
def feature_dir(tmp_path_factory):
    from sc_inverse.screening.feature_model import train_feature_model
    from sc_inverse.screening.train import load_training_data

    train, val = load_training_data("tc_K")
    out = tmp_path_factory.mktemp("ens_feat")
    train_feature_model(out, train_samples=train[:30], val_samples=val[:5], hyper={"max_iter": 20},
                        cv_folds=0, command="pytest")
    return out


def test_ensemble_is_the_mean_of_its_members(tiny_model_dir, feature_dir, tmp_path):
    from sc_inverse.screening.train import load_training_data

    train, val = load_training_data("tc_K")
    ens_dir = tmp_path / "models" / "ens"
    m = write_ensemble(ens_dir, [str(tiny_model_dir), str(feature_dir)], train_samples=train[:30], val_samples=val[:6],
                       command="pytest ensemble")
    assert len(m["member_val_mae"]) == 2 and math.isfinite(m["val_mae"])
    p = load_predictor(ens_dir)
    assert isinstance(p, EnsemblePredictor) and p.key == "tc_K" and len(p.members) == 2
    assert isinstance(p.members[0], AlignnPredictor)
    structs = [fcc("Cu"), isolated_atom(), b2()]
    vals, errs = p.predict_with_errors(structs, batch_size=2)
    a = load_predictor(tiny_model_dir).predict(structs)
    f = load_predictor(feature_dir).predict(structs)
    np.testing.assert_allclose(vals[[0, 2]], ((a + f) / 2)[[0, 2]], rtol=1e-6)
    assert math.isnan(vals[1]) and "ensemble member failed" in errs[1]
    assert errs[0] is None and errs[2] is None
    assert "pytest ensemble" in (ens_dir / "MODEL_CARD.md").read_text()


def test_relative_members_resolve_against_the_ensemble_dir(tiny_model_dir, tmp_path):
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / "alignn_a")
    (tmp_path / "ens").mkdir()
    (tmp_path / "ens" / "ensemble.json").write_text(json.dumps(
        {"kind": "mean_ensemble", "target": "tc_K", "members": ["../alignn_a", "../alignn_a"]}))
    p = load_predictor(tmp_path / "ens")
    np.testing.assert_allclose(p.predict([fcc()]), load_predictor(tmp_path / "alignn_a").predict([fcc()]),
                               rtol=1e-6)


def test_bad_ensemble_files(tmp_path):
    (tmp_path / "ensemble.json").write_text(json.dumps({"kind": "mean_ensemble", "members": []}))
    with pytest.raises(ModelLoadError, match="members"):
        load_predictor(tmp_path)
    (tmp_path / "ensemble.json").write_text(json.dumps({"kind": "mean_ensemble", "members": ["../nope/x"]}))
    with pytest.raises(ModelLoadError, match="member"):
        load_predictor(tmp_path)
