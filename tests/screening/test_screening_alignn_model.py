"""Inference path of ALIGNN: fast forward equals alignn's forward; triplet-capped batching."""

from __future__ import annotations

import numpy as np
import pytest

from sc_inverse.screening.alignn_model import (
    _fast_path_ok,
    inference_forward,
    load_alignn_dir,
    predict_structures,
    structure_to_graph,
)


@pytest.fixture(scope="module")
def val_structures():
    from sc_inverse.data import load_jarvis_sc

    return [r["structure"] for r in load_jarvis_sc("val")[:10]]


def test_inference_forward_equals_alignn_forward(tiny_model_dir, val_structures):
    import torch
    from alignn.torch_graph_builder import batch_torch_graph_pairs

    loaded = load_alignn_dir(tiny_model_dir)
    assert _fast_path_ok(loaded.model)
    g, lg = batch_torch_graph_pairs([structure_to_graph(s, loaded.graph) for s in val_structures])
    with torch.inference_mode():
        ref = loaded.model((g, lg, None))["out"]
        out = inference_forward(loaded.model, g, lg)
    assert out.shape == ref.shape == (len(val_structures),)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_triplet_cap_splits_batches_without_changing_values(tiny_model_dir, val_structures, monkeypatch):
    import sc_inverse.screening.alignn_model as am

    loaded = load_alignn_dir(tiny_model_dir)
    sizes = []
    real = am.batched_forward

    def counting(loaded, pairs, device="cpu", **kw):
        sizes.append(sum(int(lg.num_edges) for _, lg in pairs))
        return real(loaded, pairs, device, **kw)

    ref, _ = predict_structures(loaded, val_structures, batch_size=64, max_triplets=None, fast=False)
    monkeypatch.setattr(am, "batched_forward", counting)
    largest = max(int(structure_to_graph(s, loaded.graph)[1].num_edges) for s in val_structures)
    cap = largest + 1
    vals, errs = predict_structures(loaded, val_structures, batch_size=64, max_triplets=cap)
    assert errs == [None] * len(val_structures)
    assert len(sizes) > 1 and all(s <= cap for s in sizes)
    np.testing.assert_allclose(vals, ref, rtol=1e-5, atol=1e-5)
    sizes.clear()
    predict_structures(loaded, val_structures, batch_size=64, max_triplets=1)  # each graph alone
    assert len(sizes) == len(val_structures)


def test_shared_graphs_build_once_and_match_separate_predictions(tiny_model_dir, val_structures, monkeypatch):
    from screening_testutils import isolated_atom

    import sc_inverse.screening.alignn_model as am

    a, b = load_alignn_dir(tiny_model_dir), load_alignn_dir(tiny_model_dir)
    with __import__("torch").no_grad():
        for prm in b.model.parameters():
            prm.mul_(1.1)  # a different network on the same graphs
    structs = [*val_structures[:4], isolated_atom()]
    sep = [predict_structures(m, structs, batch_size=3) for m in (a, b)]
    calls = []
    real = am.structure_to_graph
    monkeypatch.setattr(am, "structure_to_graph", lambda s, spec: calls.append(1) or real(s, spec))
    shared = am.predict_structures_shared_graphs([a, b], structs, batch_size=3)
    assert len(calls) == len(structs)
    for (v, e), (v0, e0) in zip(shared, sep, strict=True):
        np.testing.assert_allclose(v, v0, rtol=1e-6, atol=1e-6)
        assert e == e0 and e[-1] and "graph rejected" in e[-1]
    assert not np.allclose(shared[0][0][:4], shared[1][0][:4])
