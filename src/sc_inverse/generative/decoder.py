"""Noise-conditional score decoder: E(3)-equivariant per-atom coordinate scores + type logits.

Input: a noised crystal (types, fractional coordinates, lattice), the latent z of its crystal
and the noise level σ. Output: a Cartesian vector per atom that estimates ``-ε`` (the unit
noise that was added; the score is that divided by σ) and logits over the element vocabulary.
Vectors come only from the vector channel of the equivariant backbone, so rotating the
structure rotates the output and translating or permuting it leaves it unchanged/permuted.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sc_inverse.generative.encoder import EquivariantBackbone
from sc_inverse.generative.graph import batch_index


class ScoreDecoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        n_types = len(cfg.elements)
        h = cfg.dec_hidden
        self.embed = nn.Embedding(n_types, h)
        self.z_proj = nn.Linear(cfg.latent_dim, h)
        self.sigma_proj = nn.Sequential(nn.Linear(16, h), nn.SiLU(), nn.Linear(h, h))
        self.backbone = EquivariantBackbone(
            h, cfg.dec_layers, cfg.num_rbf, cfg.cutoff, cfg.max_neighbors, cfg.max_images
        )
        self.type_head = nn.Sequential(nn.Linear(h, h), nn.SiLU(), nn.Linear(h, n_types))
        self.gate = nn.Sequential(nn.Linear(h, h), nn.SiLU(), nn.Linear(h, h))
        self.register_buffer("fourier", torch.arange(1, 9).float() * math.pi / 4)

    def sigma_features(self, sigma_atom: torch.Tensor) -> torch.Tensor:
        x = torch.log10(sigma_atom)[:, None]  # in [-2, 1] for the default schedule
        return torch.cat([torch.sin(self.fourier * x), torch.cos(self.fourier * x)], -1)

    def forward(self, z, types, frac, lattice, num_atoms, sigma):
        """``sigma`` is (B,) per crystal; returns (unit score (N,3), type logits (N,K))."""
        batch = batch_index(num_atoms)
        s = self.embed(types) + self.z_proj(z)[batch] + self.sigma_proj(self.sigma_features(sigma[batch]))
        s, v = self.backbone(s, frac, lattice, num_atoms)
        vec = (v * self.gate(s)[:, None, :]).sum(-1) / math.sqrt(v.shape[-1])
        return vec, self.type_head(s)
