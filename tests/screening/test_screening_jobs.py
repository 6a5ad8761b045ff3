"""The screening Maker in jobflow and ALIGNN training on user data, with a real tiny model."""

from __future__ import annotations

import json

from screening_testutils import TINY_MODEL, cu3al, fcc, isolated_atom


def test_screen_maker_runs_in_jobflow(tiny_model_dir):
    from jobflow import run_locally

    from sc_inverse.screening.jobs import ScreenCandidatesMaker

    recs = [{"id": "a", "structure": cu3al().as_dict()}, {"id": "b", "structure": fcc("Cu").as_dict()},
            {"id": "c", "structure": isolated_atom().as_dict()}]
    maker = ScreenCandidatesMaker(
        criteria=[{"predictor": str(tiny_model_dir), "key": "tc_K", "comparison": ">", "threshold": -1000}],
        relax=False, top_k=1, exclude_known=False)
    job = maker.make(recs)
    responses = run_locally(job, ensure_success=True)
    out = responses[job.uuid][1].output
    assert [r.id for r in out.records] == ["a", "b", "c"]
    assert sorted(out.passed_ids) == ["a", "b"] and len(out.selected_ids) == 1
    assert out.summary["n_input"] == 3 and [r.id for r in out.records if r.selected] == out.selected_ids


def test_train_predictor_ignores_test_split(tmp_path):
    """User data: records tagged split=test are never used; the model card reports val MAE."""
    from sc_inverse.data import load_jarvis_sc

    recs = []
    for split, n in (("train", 12), ("val", 4), ("test", 3)):
        for r in load_jarvis_sc("train")[:n] if split != "test" else load_jarvis_sc("test")[:n]:
            recs.append({"id": f"{split}-{r['jid']}", "structure": r["structure"].as_dict(), "split": split,
                         "tc_K": r["tc_K"] if r["tc_K"] is not None else 1.0})
    data = tmp_path / "data.json"
    data.write_text(json.dumps(recs))
    from sc_inverse.screening.train import load_training_data, train_alignn

    train, val = load_training_data("tc_K", data)
    assert len(train) == 12 and len(val) == 4 and not any(s.id.startswith("test-") for s in train + val)
    out = tmp_path / "model"
    res = train_alignn(out, data=data, epochs=1, batch_size=4, model_overrides=TINY_MODEL, progress=False)
    card = (out / "MODEL_CARD.md").read_text()
    assert f"val MAE = {res.val_mae:.3f}" in card and "Epochs: 1" in card
    ids = json.loads((out / "ids_train_val.json").read_text())
    assert not any(i.startswith("test-") for i in ids["id_train"] + ids["id_val"])
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".pt") == ["best_model.pt"]
