"""Real training steps on CPU, resumable checkpoints, and bad inputs."""

from __future__ import annotations

import json

import pytest
import torch
from pymatgen.core import DummySpecies, Lattice, Structure

from sc_inverse.errors import InputError, ModelLoadError
from sc_inverse.generative.config import MODEL_VERSION, CDVAEConfig
from sc_inverse.generative.data import collate, load_structures, structure_to_item
from sc_inverse.generative.model import load_model, save_model
from sc_inverse.generative.train import evaluate_loss, fit


def test_training_steps_reduce_loss(vocab, tiny_items):
    torch.manual_seed(0)
    from sc_inverse.generative.model import CDVAE

    model = CDVAE(CDVAEConfig.small(elements=vocab))
    b = collate(tiny_items)
    model.set_normalizer(b["lengths"], b["angles"], b["num_atoms"], b["tc"])
    before = evaluate_loss(model, tiny_items, 64, "cpu")["loss"]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        loss = model(b)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = evaluate_loss(model, tiny_items, 64, "cpu")
    assert after["loss"] < 0.8 * before, (before, after)
    assert after["lattice"] < 1.0 and after["type"] < 3.0


def test_fit_writes_checkpoint_and_resumes(tmp_path, vocab, tiny_items):
    cfg = CDVAEConfig.small(elements=vocab)
    out = tmp_path / "ck"
    s1 = fit(cfg, tiny_items[:16], tiny_items[16:], out, epochs=2, batch_size=8, progress=False)
    assert (out / "model.pt").is_file() and (out / "train_state.pt").is_file()
    assert s1["epochs_run"] == 2
    s2 = fit(cfg, tiny_items[:16], tiny_items[16:], out, epochs=3, batch_size=8, progress=False, resume=True)
    assert s2["epochs_run"] == 3
    hist = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [0, 1, 2]  # continued, not restarted
    model, info = load_model(out)
    assert bool(model.prior_fitted) and len(info["model_hash"]) == 16
    with pytest.raises(InputError, match="config differs"):
        fit(CDVAEConfig.small(elements=vocab, latent_dim=8), tiny_items[:16], tiny_items[16:], out,
            epochs=4, progress=False, resume=True)


def test_unknown_element_is_a_clear_error(vocab):
    s = Structure(Lattice.cubic(4.0), ["Nb", "Xe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert "Xe" not in vocab
    with pytest.raises(InputError, match="Xe"):
        structure_to_item(s, vocab, id="bad-1")
    dummy = Structure(Lattice.cubic(4.0), ["Nb", DummySpecies("X")], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(InputError, match="bad-2"):
        structure_to_item(dummy, vocab, id="bad-2")


def test_empty_dataset_is_a_clear_error(tmp_path, vocab):
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(InputError, match="empty"):
        load_structures(empty)
    with pytest.raises(InputError, match="empty"):
        fit(CDVAEConfig.small(elements=vocab), [], [], tmp_path / "x", epochs=1, progress=False)


def test_checkpoint_from_other_version_is_rejected(tmp_path, tiny_model):
    save_model(tiny_model, tmp_path)
    payload = torch.load(tmp_path / "model.pt", weights_only=False)
    payload["model_version"] = MODEL_VERSION + 1
    torch.save(payload, tmp_path / "model.pt")
    with pytest.raises(ModelLoadError, match="version"):
        load_model(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="model.pt"):
        load_model(tmp_path)
    with pytest.raises(ModelLoadError, match="no CDVAE checkpoint"):
        load_model(tmp_path / "missing")


def test_train_generator_cli_on_user_records(tmp_path, jarvis_train):
    from click.testing import CliRunner

    from sc_inverse.cli import cli
    from sc_inverse.records import CandidateRecord, save_records

    recs = [CandidateRecord.from_structure(s, id=rid, tc_K=tc) for rid, s, tc in jarvis_train[:12]]
    data = save_records(recs, tmp_path / "train.json")
    out = tmp_path / "ck"
    args = ["train-generator", "--data", str(data), "--out", str(out), "--preset", "small",
            "--epochs", "1", "--batch-size", "6", "--seed", "1"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["epochs_run"] == 1
    model, info = load_model(out)
    assert info["meta"]["n_train"] + info["meta"]["n_val"] == 12
    assert set(model.cfg.elements) == {e.symbol for _, s, _ in jarvis_train[:12] for e in s.composition.elements}
    assert not torch.isnan(model.tc_mean)  # T_c read from the records' tc_K field


def test_snapshots_are_loadable_checkpoints_with_the_element_table(tmp_path, vocab, tiny_items):
    cfg = CDVAEConfig.small(elements=vocab)
    out = tmp_path / "snap"
    fit(cfg, tiny_items[:16], tiny_items[16:], out, epochs=4, batch_size=8, progress=False, snapshot_every=2)
    snaps = sorted(p.name for p in (out / "snapshots").iterdir())
    assert snaps == ["epoch_0002", "epoch_0004"]
    model, info = load_model(out / "snapshots" / "epoch_0004")
    assert info["meta"]["epoch"] == 3
    assert int(model.nelem_counts.sum()) == 16  # fitted before training, so every save carries it
