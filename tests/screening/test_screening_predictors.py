"""ALIGNN predictors: registry loading offline, local-dir loading, batching, per-structure failures."""

from __future__ import annotations

import json
import math
import shutil
import socket

import numpy as np
import pytest
from screening_testutils import b2, fcc, isolated_atom

from sc_inverse.errors import ModelLoadError
from sc_inverse.screening.alignn_model import GraphBuildError, GraphSpec, structure_to_graph
from sc_inverse.screening.predictors import (
    SHIPPED_TC_MODEL,
    AlignnPredictor,
    load_predictor,
    shipped_model_names,
)


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connection fails, as on a machine without internet."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled by test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_registry_name_without_network_is_a_clear_error(no_network, tmp_path):
    with pytest.raises(ModelLoadError) as err:
        load_predictor("optb88vdw_bandgap_radius")
    msg = str(err.value)
    assert "optb88vdw_bandgap_radius" in msg and "download" in msg
    assert "directory" in msg  # tells the user the offline way out


def test_unknown_model_name_lists_alternatives():
    with pytest.raises(ModelLoadError, match="tc_supercon_radius"):
        load_predictor("tc_supercon_nonexistent")


def test_missing_local_dir_and_files(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_predictor(str(tmp_path / "nope" / "model"))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="best_model.pt"):
        load_predictor(tmp_path / "m")


def test_local_dir_loading_and_batched_equals_single(tiny_model_dir):
    p = load_predictor(tiny_model_dir)
    assert isinstance(p, AlignnPredictor) and p.key == "tc_K"
    from sc_inverse.data import load_jarvis_sc

    structs = [r["structure"] for r in load_jarvis_sc("val")[:12]]
    batched = p.predict(structs, batch_size=5)
    single = np.array([p.predict([s], batch_size=1)[0] for s in structs])
    assert np.all(np.isfinite(batched))
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-4)
    assert np.ptp(batched) > 0  # the network sees the structure


def test_weights_must_match_config(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["model"]["hidden_features"] = 32
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="best_model.pt"):
        load_predictor(bad)


def test_rejected_structures_do_not_abort_the_batch(tiny_model_dir):
    p = load_predictor(tiny_model_dir)
    structs = [fcc("Cu"), isolated_atom(), b2(), fcc("Og", 5.0)]
    vals, errs = p.predict_with_errors(structs, batch_size=8)
    assert math.isfinite(vals[0]) and math.isfinite(vals[2])
    assert math.isnan(vals[1]) and "no neighbours" in errs[1]
    assert math.isnan(vals[3]) and "Og" in errs[3]
    assert errs[0] is None and errs[2] is None


def test_nan_output_is_reported_per_structure(tiny_model_dir, monkeypatch):
    """A network returning NaN for one graph: that structure alone gets NaN + an error."""
    import sc_inverse.screening.alignn_model as am

    real = am.batched_forward

    def nan_for_two_atoms(loaded, pairs, device="cpu", **kw):
        out = real(loaded, pairs, device, **kw)
        for j, (g, _) in enumerate(pairs):
            if g.num_nodes == 2:
                out[j] = np.nan
        return out

    monkeypatch.setattr(am, "batched_forward", nan_for_two_atoms)
    vals, errs = load_predictor(tiny_model_dir).predict_with_errors([fcc(), b2(), fcc("Al", 4.05)])
    assert math.isnan(vals[1]) and "non-finite" in errs[1]
    assert np.isfinite(vals[[0, 2]]).all() and errs[0] is None


def test_graph_spec_and_builder_reject_bad_cells():
    spec = GraphSpec()
    g, lg = structure_to_graph(fcc(), spec)
    assert g.num_nodes == 4 and g.num_edges == 4 * 12 and lg.num_edges > 0
    with pytest.raises(GraphBuildError):
        structure_to_graph(isolated_atom(), spec)


def test_shipped_tc_model_predicts_kelvin():
    assert SHIPPED_TC_MODEL in shipped_model_names()
    p = load_predictor()  # default = shipped T_c model
    assert p.key == "tc_K" and p.source == f"shipped:{SHIPPED_TC_MODEL}"
    from sc_inverse.data import load_jarvis_sc

    train = load_jarvis_sc("train")[:40]
    pred = p.predict([r["structure"] for r in train])
    y = np.array([r["tc_K"] for r in train])
    assert np.all(np.isfinite(pred)) and np.all(pred > -5) and np.all(pred < 100)
    # fitted on these: clearly better than predicting a constant
    assert np.mean(np.abs(pred - y)) < np.mean(np.abs(y - np.median(y)))


@pytest.mark.parametrize("strategy", ["pure_torch", "k-nearest", "radius_graph"])
def test_graph_strategies_of_alignn_configs_build_without_dgl(strategy):
    """Registry / alignn model dirs may use k-nearest or radius graphs: all build as TorchGraphs."""
    from sc_inverse.screening.alignn_model import LoadedAlignn, build_model, predict_structures
    from sc_inverse.screening.train import DEFAULT_MODEL

    spec = GraphSpec(neighbor_strategy=strategy, cutoff=5.0)
    g, lg = structure_to_graph(b2(), spec)
    assert g.num_edges > 0 and lg.num_edges > 0 and g.edata["r"].shape == (g.num_edges, 3)
    model = build_model({**DEFAULT_MODEL, "hidden_features": 8, "alignn_layers": 1, "gcn_layers": 1}).eval()
    vals, errs = predict_structures(LoadedAlignn(model, {}, spec, "test"), [b2(), fcc()], batch_size=2)
    assert np.isfinite(vals).all() and errs == [None, None]


def test_unsupported_model_type_is_model_load_error(tiny_model_dir, tmp_path):
    bad = tmp_path / "dgl_only"
    shutil.copytree(tiny_model_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["model"]["name"] = "alignn"
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="needs DGL"):
        load_predictor(bad)


def test_default_is_the_ensemble_and_alignn_default_the_shipped_alignn():
    from sc_inverse.screening.predictors import SHIPPED_ALIGNN_TC_MODEL, EnsemblePredictor

    assert AlignnPredictor().source == f"shipped:{SHIPPED_ALIGNN_TC_MODEL}"
    ens = load_predictor()
    assert isinstance(ens, EnsemblePredictor) and len(ens.members) >= 2
    assert sum(isinstance(m, AlignnPredictor) for m in ens.members) >= 2
