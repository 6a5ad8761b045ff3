"""Lattice head: CDVAE's MSE head and the Gaussian-mixture head that keeps 90° and 120° apart."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sc_inverse.generative.config import CDVAEConfig
from sc_inverse.generative.model import CDVAE


def _model(vocab, components: int) -> CDVAE:
    torch.manual_seed(0)
    return CDVAE(CDVAEConfig.small(elements=vocab, lattice_components=components))


def test_single_component_is_cdvae_mse(vocab):
    model = _model(vocab, 1)
    out, target = torch.randn(5, 6), torch.randn(5, 6)
    assert torch.allclose(model.lattice_loss(out, target), F.mse_loss(out, target))


def test_mixture_decodes_the_most_probable_component(vocab):
    model = _model(vocab, 3)
    k = 3
    out = torch.zeros(2, 13 * k)
    out[0, 1] = 5.0  # crystal 0: component 1 dominates
    out[1, 2] = 5.0  # crystal 1: component 2
    means = torch.arange(k * 6, dtype=torch.float).view(k, 6)
    out[:, k : 7 * k] = means.flatten()
    logw, mean, std = model._lattice_mixture(out)
    assert torch.allclose(logw.exp().sum(-1), torch.ones(2))
    assert bool((std >= model.cfg.lattice_min_std).all())
    picked = mean[torch.arange(2), logw.argmax(-1)]
    assert torch.equal(picked, means[[1, 2]])
    # the loss is lowest at the dominant component's mean and finite for exact (delta-like) targets
    at_mode = model.lattice_loss(out[:1], means[1:2])
    elsewhere = model.lattice_loss(out[:1], means[0:1])
    assert torch.isfinite(at_mode) and at_mode < elsewhere


def test_mixture_head_learns_two_angle_modes_mse_averages_them(vocab):
    """Half the cells at γ = 90°, half at 120°, indistinguishable input: MSE predicts ~105°,
    the mixture one of the modes (what made hexagonal AlB2-type cells reappear in samples)."""
    torch.manual_seed(1)
    lengths = torch.full((64, 3), 3.0)
    angles = torch.tensor([[90.0, 90.0, 90.0], [90.0, 90.0, 120.0]]).repeat(32, 1)
    n = torch.full((64,), 3)
    z = torch.zeros(64, 32)
    gammas = {}
    for k in (1, 4):
        model = _model(vocab, k)
        model.set_normalizer(lengths, angles, n, torch.full((64,), float("nan")))
        opt = torch.optim.Adam(model.lattice_head.parameters(), lr=3e-3)
        target = model.lattice_target(lengths, angles, n)
        for _ in range(300):
            out = model.lattice_head(torch.cat([z, model.n_onehot(n)], -1))
            loss = model.lattice_loss(out, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            gammas[k] = float(model.predict_lattice(z[:1], n[:1])[1][0, 2])
    assert abs(gammas[1] - 105.0) < 3.0
    assert min(abs(gammas[4] - 90.0), abs(gammas[4] - 120.0)) < 3.0
