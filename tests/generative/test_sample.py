"""Sampling with the shipped checkpoint: records, flags, reproducibility, latent optimisation."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from pymatgen.core import Lattice, Structure

from sc_inverse.errors import InputError
from sc_inverse.generative.model import load_model, shipped_checkpoint_dir
from sc_inverse.generative.sample import generate_candidates, structure_flags


@pytest.fixture(scope="module")
def shipped():
    return load_model()


def test_shipped_checkpoint_loads_by_default(shipped):
    model, info = shipped
    assert info["model_dir"] == str(shipped_checkpoint_dir())
    assert (shipped_checkpoint_dir() / "MODEL_CARD.md").is_file()
    assert (shipped_checkpoint_dir() / "model.pt").stat().st_size < 10 * 2**20
    assert bool(model.prior_fitted)
    assert model.cfg.lattice_components > 1 and bool(model.nelem_counts.sum() > 0)


def test_generate_candidates_records_and_reproducibility():
    recs = generate_candidates(6, seed=3, steps_per_level=1, progress=False)
    assert len({r.id for r in recs}) == 6
    r = recs[0]
    assert r.origin == "generated"
    assert len(r.provenance["latent_z"]) > 0 and r.provenance["seed"] == 3
    assert len(r.provenance["model_hash"]) == 16
    assert "tc_K_cdvae" in r.predictions
    s = r.get_structure()
    assert 1 <= len(s) <= 20 and s.volume > 0
    again = generate_candidates(6, seed=3, steps_per_level=1, progress=False)
    assert [x.structure for x in again] == [x.structure for x in recs]
    other = generate_candidates(6, seed=4, steps_per_level=1, progress=False)
    assert [x.structure for x in other] != [x.structure for x in recs]


def test_flags_close_atoms_and_bad_lattice():
    close = Structure(Lattice.cubic(4.0), ["Nb", "N"], [[0, 0, 0], [0.05, 0, 0]])
    flat = Structure(Lattice.from_parameters(4, 4, 0.4, 90, 90, 90), ["Nb"], [[0, 0, 0]])
    fine = Structure(Lattice.cubic(4.2), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    flags = structure_flags([close, flat, fine])
    assert "atoms_too_close" in flags[0]
    assert "unphysical_lattice" in flags[1] and "atoms_too_close" in flags[1]  # own image at 0.4 Å
    assert flags[2] == []


def test_latent_optimisation_raises_predicted_tc(shipped):
    from sc_inverse.generative.optimize import optimize_latent_tc

    model, _ = shipped
    z0 = model.sample_latent(8, torch.Generator().manual_seed(0))
    with torch.no_grad():
        tc0 = model.predict_tc_K(z0)
    z, tc = optimize_latent_tc(model, z0, steps=30, lr=0.05)
    assert float(tc.mean()) > float(tc0.mean()) + 0.5
    assert model.encoder.embed.weight.requires_grad  # model left trainable


def test_bad_requests():
    with pytest.raises(InputError):
        generate_candidates(0, progress=False)
    with pytest.raises(InputError):
        generate_candidates(2, steps_per_level=0, progress=False)


def test_generate_cli(tmp_path):
    from sc_inverse.cli import cli

    out = tmp_path / "cands.json"
    res = CliRunner().invoke(cli, ["generate", "--n", "4", "--steps-per-level", "1", "--seed", "1",
                                   "--optimize-tc", "--opt-steps", "5", "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert len(data) == 4 and data[0]["provenance"]["optimize_tc"] is True
    from sc_inverse.records import load_records

    assert len(load_records(out)) == 4


@pytest.mark.slow
def test_evaluate_generator_cli(tmp_path):
    """Real metrics path end to end (CrystalNN fingerprints of the test split: ~1 min)."""
    from sc_inverse.cli import cli

    cands = tmp_path / "c.json"
    runner = CliRunner()
    assert runner.invoke(cli, ["generate", "--n", "20", "--out", str(cands)]).exit_code == 0
    out = tmp_path / "m.json"
    res = runner.invoke(cli, ["evaluate-generator", "--input", str(cands), "--n-coverage", "20",
                              "--reconstruction", "5", "--out", str(out)])
    assert res.exit_code == 0, res.output
    m = json.loads(out.read_text())
    assert m["n_generated"] == 20 and 0.0 <= m["cov_recall"] <= 1.0
    assert m["structural_validity"] >= 0.9 and "reconstruction" in m


def test_allocation_with_element_counts_uses_exactly_m_elements():
    import torch

    from sc_inverse.generative.sample import allocate_types

    g = torch.Generator().manual_seed(0)
    comp = torch.softmax(torch.randn(200, 30, generator=g), -1)  # blurry, like the head
    n = torch.randint(1, 12, (200,), generator=g)
    m = torch.randint(1, 4, (200,), generator=g)
    types, allowed = allocate_types(comp, n, g, m)
    per_cell = types.split(n.tolist())
    for t, ni, mi, a in zip(per_cell, n.tolist(), m.tolist(), allowed, strict=True):
        assert len(t) == ni
        assert len(set(t.tolist())) == min(mi, ni) == int(a.sum())
        assert all(bool(a[x]) for x in t.tolist())
    # without m: counts still sum to N, everything allowed
    types, allowed = allocate_types(comp, n, g)
    assert len(types) == int(n.sum()) and bool(allowed.all())


def test_element_count_prior_matches_training_cells(vocab, tiny_items):
    import torch

    from sc_inverse.generative.config import CDVAEConfig
    from sc_inverse.generative.data import collate
    from sc_inverse.generative.model import CDVAE

    model = CDVAE(CDVAEConfig.small(elements=vocab))
    n = torch.tensor([4, 4])
    assert model.sample_num_elements(n) is None  # unfitted: the head alone decides
    b = collate(tiny_items)
    model.fit_element_count_prior(b["types"], b["num_atoms"])
    seen = {(int(k), len(set(t.tolist()))) for t, k in zip(b["types"].split(b["num_atoms"].tolist()),
                                                             b["num_atoms"], strict=True)}
    nums = torch.tensor(sorted({k for k, _ in seen}))
    draws = model.sample_num_elements(nums.repeat(50), torch.Generator().manual_seed(1))
    assert {(int(k), int(d)) for k, d in zip(nums.repeat(50), draws, strict=True)} <= seen
    # a cell size absent from training still gets a valid count (1 <= m <= N)
    m = model.sample_num_elements(torch.tensor([19, 1]))
    assert 1 <= int(m[0]) <= 19 and int(m[1]) == 1


def test_non_finite_cells_are_flagged_invalid_and_scores_bounded():
    import numpy as np
    import torch

    from sc_inverse.generative.metrics import structural_validity
    from sc_inverse.generative.sample import MAX_SCORE_NORM, bounded_score

    nan_cell = Structure(Lattice.cubic(4.0), ["Zr", "O"], [[0, 0, 0], [np.nan, np.nan, np.nan]])
    assert structure_flags([nan_cell]) == [["non_finite_coordinates"]]
    assert not structural_validity(nan_cell)
    u = torch.tensor([[1.0, -1.0, 0.5], [2.6e37, 0.0, 0.0], [float("nan"), 1.0, 1.0]])
    b = bounded_score(u)
    assert torch.equal(b[0], u[0])  # ordinary scores untouched
    assert torch.isfinite(b).all() and float(b.norm(dim=-1).max()) <= MAX_SCORE_NORM + 1e-4


def test_type_update_keeps_every_allowed_element():
    import torch

    from sc_inverse.generative.sample import update_types

    n = torch.tensor([3, 2])
    allowed = torch.zeros(2, 4, dtype=torch.bool)
    allowed[0, [0, 2]] = True
    allowed[1, [1, 3]] = True
    logits = torch.zeros(5, 4)
    logits[:, 0] = 5.0  # every atom prefers element 0 (forbidden in crystal 1)
    logits[1, 2] = 4.0  # atom 1 likes element 2 most after 0
    logits[3:, 1] = 1.0
    free = update_types(logits, allowed, n, keep_every_element=False)
    assert free[:3].tolist() == [0, 0, 0] and free[3:].tolist() == [1, 1]
    kept = update_types(logits, allowed, n, keep_every_element=True)
    assert kept[:3].tolist() == [0, 2, 0]
    assert sorted(kept[3:].tolist()) == [1, 3]


def test_generation_restricted_to_a_chemical_space():
    recs = generate_candidates(12, seed=2, steps_per_level=1, progress=False, elements=["Mg", "B", "C", "Al"])
    for r in recs:
        assert {el.symbol for el in r.get_structure().composition} <= {"Mg", "B", "C", "Al"}
    assert recs[0].provenance["elements"] == ["Al", "B", "C", "Mg"]
    with pytest.raises(InputError, match="not element symbols"):
        generate_candidates(2, progress=False, elements=["Mg", "Xx"])
    with pytest.raises(InputError, match="vocabulary"):
        generate_candidates(2, progress=False, elements=["Og"])
