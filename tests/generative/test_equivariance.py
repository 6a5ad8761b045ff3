"""Encoder invariance and decoder equivariance under rotations, translations, permutations
and changes of the periodic cell (float64, untrained small model: the symmetry is structural)."""

from __future__ import annotations

import pytest
import torch

from sc_inverse.generative.data import collate
from sc_inverse.generative.graph import lattice_from_params


def _random_rotation(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


@pytest.fixture()
def batch(tiny_items):
    b = collate(tiny_items[:5])
    b = {k: (v.double() if v.is_floating_point() else v) for k, v in b.items()}
    b["lattice"] = lattice_from_params(b["lengths"], b["angles"])
    return b


def _enc(model, b, frac=None, lattice=None, types=None):
    return model.encoder(b["types"] if types is None else types, b["frac"] if frac is None else frac,
                         b["lattice"] if lattice is None else lattice, b["num_atoms"])[0]


def _dec(model, b, z, frac=None, lattice=None, types=None):
    sigma = torch.full((len(b["num_atoms"]),), 0.3, dtype=torch.float64)
    return model.decoder(z, b["types"] if types is None else types, b["frac"] if frac is None else frac,
                         b["lattice"] if lattice is None else lattice, b["num_atoms"], sigma)


def test_encoder_rotation_invariant(tiny_model, batch):
    R = _random_rotation(1)
    mu = _enc(tiny_model, batch)
    mu_rot = _enc(tiny_model, batch, lattice=batch["lattice"] @ R.T)
    torch.testing.assert_close(mu, mu_rot, atol=1e-9, rtol=1e-7)


def test_encoder_translation_and_permutation_invariant(tiny_model, batch):
    mu = _enc(tiny_model, batch)
    shift = torch.tensor([0.31, 0.77, 0.05], dtype=torch.float64)
    torch.testing.assert_close(mu, _enc(tiny_model, batch, frac=(batch["frac"] + shift) % 1.0), atol=1e-9, rtol=1e-7)
    # permute atoms inside each crystal (a permutation that keeps crystal blocks together)
    perm = torch.cat([torch.randperm(int(n), generator=torch.Generator().manual_seed(i)) + int(s)
                      for i, (n, s) in enumerate(zip(batch["num_atoms"], torch.cumsum(batch["num_atoms"], 0) - batch["num_atoms"], strict=True))])
    mu_p = _enc(tiny_model, batch, frac=batch["frac"][perm], types=batch["types"][perm])
    torch.testing.assert_close(mu, mu_p, atol=1e-9, rtol=1e-7)


def test_encoder_invariant_to_cell_choice(tiny_model, batch):
    """Same crystal described by another primitive cell (unimodular M): same latent."""
    M = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 1.0]], dtype=torch.float64)
    Minv = torch.linalg.inv(M)
    bidx = torch.repeat_interleave(torch.arange(len(batch["num_atoms"])), batch["num_atoms"])
    new_lat = M @ batch["lattice"]
    new_frac = (batch["frac"] @ Minv) % 1.0  # cart = frac L = (frac M^-1)(M L)
    del bidx
    mu = _enc(tiny_model, batch)
    torch.testing.assert_close(mu, _enc(tiny_model, batch, frac=new_frac, lattice=new_lat), atol=1e-8, rtol=1e-6)


def test_decoder_rotation_equivariant(tiny_model, batch):
    R = _random_rotation(2)
    z = torch.randn(len(batch["num_atoms"]), tiny_model.cfg.latent_dim, dtype=torch.float64)
    vec, logits = _dec(tiny_model, batch, z)
    vec_r, logits_r = _dec(tiny_model, batch, z, lattice=batch["lattice"] @ R.T)
    scale = float(vec.abs().max())
    assert scale > 0  # not trivially zero
    torch.testing.assert_close(vec @ R.T, vec_r, atol=1e-7 * scale, rtol=1e-6)
    torch.testing.assert_close(logits, logits_r, atol=1e-9, rtol=1e-7)
    # a rotation of the input that the output did not follow would be caught:
    assert not torch.allclose(vec, vec_r, atol=1e-3 * scale)


def test_decoder_translation_and_permutation_equivariant(tiny_model, batch):
    z = torch.randn(len(batch["num_atoms"]), tiny_model.cfg.latent_dim, dtype=torch.float64)
    vec, logits = _dec(tiny_model, batch, z)
    shift = torch.tensor([0.5, 0.12, 0.9], dtype=torch.float64)
    vec_t, logits_t = _dec(tiny_model, batch, z, frac=(batch["frac"] + shift) % 1.0)
    scale = float(vec.abs().max())
    torch.testing.assert_close(vec, vec_t, atol=1e-7 * scale, rtol=1e-6)
    starts = torch.cumsum(batch["num_atoms"], 0) - batch["num_atoms"]
    perm = torch.cat([torch.arange(int(n)).flip(0) + int(s) for n, s in zip(batch["num_atoms"], starts, strict=True)])
    vec_p, logits_p = _dec(tiny_model, batch, z, frac=batch["frac"][perm], types=batch["types"][perm])
    torch.testing.assert_close(vec[perm], vec_p, atol=1e-7 * scale, rtol=1e-6)
    torch.testing.assert_close(logits[perm], logits_p, atol=1e-9, rtol=1e-7)


def test_decoder_cell_choice_equivariant(tiny_model, batch):
    M = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    z = torch.randn(len(batch["num_atoms"]), tiny_model.cfg.latent_dim, dtype=torch.float64)
    vec, _ = _dec(tiny_model, batch, z)
    vec_c, _ = _dec(tiny_model, batch, z, frac=(batch["frac"] @ torch.linalg.inv(M)) % 1.0,
                    lattice=M @ batch["lattice"])
    torch.testing.assert_close(vec, vec_c, atol=1e-6 * float(vec.abs().max()), rtol=1e-5)
