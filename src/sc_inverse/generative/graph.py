"""Periodic radius graph and lattice helpers in pure torch (no compiled extension).

Conventions used throughout :mod:`sc_inverse.generative`: a batch of ``B`` crystals with
``N`` atoms in total; ``frac`` (N, 3) fractional coordinates; ``lattice`` (B, 3, 3) with the
lattice vectors as rows, so Cartesian positions are ``frac @ lattice``; ``num_atoms`` (B,).
An edge ``(j -> i)`` with integer ``offset`` o has vector ``(frac_j + o - frac_i) @ L``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def lattice_from_params(lengths: torch.Tensor, angles_deg: torch.Tensor) -> torch.Tensor:
    """(B,3) lengths in Å and angles in degrees -> (B,3,3) row lattice in a canonical orientation.

    Same convention as pymatgen's ``Lattice.from_parameters`` (c along z); differentiable.
    """
    a, b, c = lengths.unbind(-1)
    al, be, ga = torch.deg2rad(angles_deg).unbind(-1)
    cos_al, cos_be, cos_ga = torch.cos(al), torch.cos(be), torch.cos(ga)
    sin_al, sin_be = torch.sin(al), torch.sin(be)
    val = (cos_al * cos_be - cos_ga) / (sin_al * sin_be)
    val = val.clamp(-1.0, 1.0)
    gamma_star = torch.arccos(val)
    zeros = torch.zeros_like(a)
    va = torch.stack([a * sin_be, zeros, a * cos_be], -1)
    vb = torch.stack(
        [-b * sin_al * torch.cos(gamma_star), b * sin_al * torch.sin(gamma_star), b * cos_al], -1
    )
    vc = torch.stack([zeros, zeros, c], -1)
    return torch.stack([va, vb, vc], -2)


def lattice_to_params(lattice: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,3,3) row lattice -> lengths (B,3) in Å and angles (B,3) in degrees."""
    lengths = lattice.norm(dim=-1)
    a, b, c = lattice.unbind(-2)

    def ang(u, v):
        cos = (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1))
        return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))

    return lengths, torch.stack([ang(b, c), ang(a, c), ang(a, b)], -1)


@dataclass
class PeriodicGraph:
    """Edges of a periodic radius graph; ``vec`` points from centre ``dst`` to neighbour ``src``."""

    src: torch.Tensor  # (E,) neighbour atom index
    dst: torch.Tensor  # (E,) centre atom index
    offset: torch.Tensor  # (E,3) integer lattice offset of the neighbour image (float dtype)
    vec: torch.Tensor  # (E,3) Cartesian vector centre -> neighbour image, Å
    dist: torch.Tensor  # (E,)


def batch_index(num_atoms: torch.Tensor) -> torch.Tensor:
    """(B,) atom counts -> (N,) crystal index of every atom."""
    return torch.repeat_interleave(torch.arange(len(num_atoms), device=num_atoms.device), num_atoms)


def _image_grid(nmax: torch.Tensor, device, dtype) -> torch.Tensor:
    axes = [torch.arange(-int(n), int(n) + 1, device=device, dtype=dtype) for n in nmax.tolist()]
    return torch.cartesian_prod(*axes).reshape(-1, 3)


def periodic_radius_graph(
    frac: torch.Tensor,
    lattice: torch.Tensor,
    num_atoms: torch.Tensor,
    cutoff: float,
    max_neighbors: int | None = None,
    max_images: int = 4,
    chunk_size: int = 4_000_000,
) -> PeriodicGraph:
    """All (j, image) neighbours of every atom i within ``cutoff`` Å, optionally the nearest k.

    The fractional difference is first wrapped to [-0.5, 0.5], so images ``|o_k| <= floor(
    cutoff*|b_k| + 0.5)`` (``b_k`` the reciprocal vectors without 2π) cover every neighbour;
    ``max_images`` caps this for degenerate cells (a 0.1 Å axis would otherwise need ~70 images).
    ``max_neighbors`` keeps the nearest k per atom plus any tied with the k-th (within 1e-4 Å).
    Vectors are recomputed from the inputs at the end, so they stay differentiable.
    """
    device, dtype = frac.device, frac.dtype
    num_atoms = num_atoms.long()
    ptr = torch.cumsum(num_atoms, 0) - num_atoms
    n2 = num_atoms * num_atoms
    pair_batch = torch.repeat_interleave(torch.arange(len(num_atoms), device=device), n2)
    local = torch.arange(int(n2.sum()), device=device) - torch.repeat_interleave(
        torch.cumsum(n2, 0) - n2, n2
    )
    n_rep = num_atoms[pair_batch]
    dst_all = ptr[pair_batch] + local // n_rep
    src_all = ptr[pair_batch] + local % n_rep

    with torch.no_grad():
        inv = torch.linalg.inv(lattice.detach())  # columns are reciprocal vectors b_k
        recip_norm = inv.norm(dim=-2)  # (B,3)
        n_img = torch.floor(cutoff * recip_norm + 0.5 + 1e-6).clamp(0, max_images).long()
        images = _image_grid(n_img.max(0).values, device, dtype)  # (M,3)
        d = frac.detach()[src_all] - frac.detach()[dst_all]
        shift = -torch.round(d)
        d = d + shift
        # |(d + o) L|² = d·G·d + 2 d·G·o + o·G·o with the metric G = L Lᵀ: one matmul per chunk
        metric = lattice.detach() @ lattice.detach().transpose(-1, -2)  # (B,3,3)
        img_norm2 = torch.einsum("mk,bkl,ml->bm", images, metric, images)  # (B,M)
        img_allowed = (images.abs()[None, :, :] <= n_img[:, None, :]).all(-1)  # (B,M)
        zero_img = (images == 0).all(-1)
        keep_src, keep_dst, keep_off, keep_dist = [], [], [], []
        per_chunk = max(1, chunk_size // max(1, len(images)))
        cut2 = cutoff * cutoff
        for start in range(0, len(src_all), per_chunk):
            sl = slice(start, start + per_chunk)
            b = pair_batch[sl]
            dG = torch.einsum("pk,pkl->pl", d[sl], metric[b])
            d2 = (dG * d[sl]).sum(-1)[:, None] + 2.0 * dG @ images.T + img_norm2[b]
            is_self = (src_all[sl] == dst_all[sl])[:, None] & zero_img[None, :]
            mask = img_allowed[b] & (d2 <= cut2) & ~is_self
            p_idx, m_idx = mask.nonzero(as_tuple=True)
            keep_src.append(src_all[sl][p_idx])
            keep_dst.append(dst_all[sl][p_idx])
            keep_off.append(images[m_idx] + shift[sl][p_idx])
            keep_dist.append(d2[p_idx, m_idx].clamp_min(0).sqrt())
        src = torch.cat(keep_src)
        dst = torch.cat(keep_dst)
        offset = torch.cat(keep_off)
        dist = torch.cat(keep_dist)
        if max_neighbors is not None and len(dst) > 0:
            # one sort on (centre, distance): centre index dominates, distance breaks ties
            key = dst.double() * (2.0 * cutoff + 1.0) + dist.double()
            order = torch.argsort(key)
            dst_sorted = dst[order]
            counts = torch.bincount(dst_sorted, minlength=len(frac))
            first = torch.cumsum(counts, 0) - counts
            rank = torch.arange(len(order), device=device) - first[dst_sorted]
            # keep every edge as short as the k-th one: ties at the cap (common in symmetric
            # crystals) would otherwise be broken by atom order and spoil permutation invariance
            kth = torch.full((len(frac),), math.inf, dtype=dist.dtype, device=device)
            at_k = rank == max_neighbors - 1
            kth[dst_sorted[at_k]] = dist[order[at_k]]
            sel = order[dist[order] <= kth[dst_sorted] + 1e-4]
            src, dst, offset = src[sel], dst[sel], offset[sel]

    batch = batch_index(num_atoms)
    vec = torch.einsum("ek,ekl->el", frac[src] + offset - frac[dst], lattice[batch[dst]])
    return PeriodicGraph(src=src, dst=dst, offset=offset, vec=vec, dist=vec.norm(dim=-1))


def volume(lattice: torch.Tensor) -> torch.Tensor:
    return torch.linalg.det(lattice).abs()


def cosine_cutoff(dist: torch.Tensor, cutoff: float) -> torch.Tensor:
    return 0.5 * (torch.cos(dist * math.pi / cutoff) + 1.0) * (dist < cutoff)
