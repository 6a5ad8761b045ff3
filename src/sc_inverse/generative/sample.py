"""Annealed Langevin sampling, batched over crystals, and conversion to CandidateRecords.

For each σ level (10 → 0.01 Å, geometric) we take ``steps_per_level`` Langevin steps
``x ← x + α s_θ(x, σ) + sqrt(2α) ξ`` with ``α = step_lr · (σ/σ_min)²``, set atom types to the
decoder's argmax after each step, and end with one noise-free denoising step. Where the checkpoint
has the training set's (N, number of elements) table, each crystal first draws its number of
elements m | N, takes m elements from the composition head and the decoder's argmax is limited to
them (see :func:`allocate_types`). CDVAE's own
schedule is 100 steps per level (5 000 decoder calls); :data:`DEFAULT_STEPS_PER_LEVEL` is what
``generate`` uses (see ``benchmarks/bench_sampling.py`` and the model card for the trade-off).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pymatgen.core import Element, Lattice, Structure
from tqdm.auto import tqdm

from sc_inverse.errors import InputError
from sc_inverse.generative.data import collate, structure_to_item
from sc_inverse.generative.graph import batch_index, lattice_from_params
from sc_inverse.generative.model import CDVAE, load_model
from sc_inverse.generative.optimize import optimize_latent_tc
from sc_inverse.generative.symmetry import recover_symmetry
from sc_inverse.records import MIN_DISTANCE_A, CandidateRecord, atoms_too_close
from sc_inverse.settings import get_settings

log = logging.getLogger(__name__)

CDVAE_STEPS_PER_LEVEL = 100
DEFAULT_STEPS_PER_LEVEL = 2
COMPOSITION_TEMPERATURE = 1.0
MAX_SCORE_NORM = 10.0  # per-atom cap on the decoder's (−ε) estimate; genuine values are ~√3


def default_step_lr(steps_per_level: int) -> float:
    """CDVAE uses 1e-4 at 100 steps/level; fewer steps need larger steps (capped for stability)."""
    return min(1e-4 * (CDVAE_STEPS_PER_LEVEL / steps_per_level) ** 0.5, 4e-4)


def allocate_types(comp: torch.Tensor, num_atoms: torch.Tensor, generator=None,
                   n_elements: torch.Tensor | None = None,
                   element_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial atom types and each crystal's allowed elements (bool, (B, K)).

    ``element_mask`` (bool, (K,)) restricts every crystal to a chemical space (``generate
    --elements``): the head's probabilities outside it are zeroed before anything is drawn.

    Without ``n_elements``: N·p rounded by largest remainder (after a Gumbel-perturbed draw of
    the probabilities, so z with the same mode still vary); every element is allowed. Drawing
    every atom independently instead gives cells with as many elements as atoms.
    With ``n_elements`` (m per crystal): m elements drawn from p without replacement (Gumbel
    top-m), each given one atom, the other N − m shared by largest remainder over the renormalised
    p; only those m elements are allowed.
    """
    gumbel = -torch.log(-torch.log(torch.rand(comp.shape, generator=generator, device=comp.device)
                                   .clamp(1e-9, 1 - 1e-9)))
    space = (torch.ones(comp.shape[1], dtype=torch.bool, device=comp.device)
             if element_mask is None else element_mask.to(comp.device))
    logp = torch.log(comp.clamp_min(1e-12)).masked_fill(~space, -math.inf)
    p = F.softmax(logp + 0.3 * gumbel, -1)
    if n_elements is None:
        allowed = space.expand_as(comp).clone()
        base = torch.zeros_like(comp, dtype=torch.long)
        share = num_atoms
    else:
        m = torch.minimum(torch.minimum(n_elements, num_atoms), space.sum()).clamp_min(1)
        rank = torch.argsort(torch.argsort(logp + gumbel, dim=-1, descending=True), dim=-1)
        allowed = rank < m[:, None]
        p = p * allowed
        p = p / p.sum(-1, keepdim=True)
        base = allowed.long()
        share = num_atoms - m
    exact = p * share[:, None].float()
    counts = exact.floor().long()
    rest = share - counts.sum(-1)
    remainder = torch.where(allowed, exact - counts, torch.full_like(exact, -1.0))
    order = torch.argsort(remainder, dim=-1, descending=True)
    rank = torch.argsort(order, dim=-1)
    counts = base + counts + (rank < rest[:, None]).long()
    k = comp.shape[1]
    types = torch.repeat_interleave(torch.arange(k, device=comp.device).repeat(len(num_atoms)), counts.flatten())
    return types, allowed


def bounded_score(u: torch.Tensor, max_norm: float = MAX_SCORE_NORM) -> torch.Tensor:
    """The decoder output estimates −ε with ε ~ N(0, I) (norm ≈ √3); cap each atom's vector.

    Why: when a sampled cell collapses (all atoms within ~0.03 Å of one point) the network's
    output overflows (2.6e37 measured, then NaN coordinates). Capped, such a cell ends as a
    collapsed structure that ``structure_flags`` marks ``atoms_too_close`` instead of NaN.
    """
    u = torch.nan_to_num(u, nan=0.0, posinf=0.0, neginf=0.0)
    norm = u.norm(dim=-1, keepdim=True)
    return u * (max_norm / norm.clamp_min(max_norm))


def update_types(logits: torch.Tensor, allowed: torch.Tensor, num_atoms: torch.Tensor,
                 keep_every_element: bool) -> torch.Tensor:
    """Atom types from the decoder's logits: argmax over each crystal's allowed elements.

    With ``keep_every_element`` (the element-count prior is active) an allowed element that lost
    all its atoms takes back the atom that prefers it most among atoms whose own element keeps
    another atom. Why: unrepaired, the argmax merged 2-element cells into one element, giving 8 %
    elemental cells (JARVIS-SC: 0.9 %), mostly duplicates of solid O2.
    """
    bidx = batch_index(num_atoms)
    types = logits.masked_fill(~allowed[bidx], -math.inf).argmax(-1)
    if not keep_every_element:
        return types
    counts = torch.zeros_like(allowed, dtype=torch.long).index_put_(
        (bidx, types), torch.ones_like(types), accumulate=True)
    missing = (allowed & (counts == 0)).nonzero().tolist()
    if not missing:
        return types
    ptr = torch.cat([num_atoms.new_zeros(1), num_atoms.cumsum(0)]).tolist()
    for b, k in missing:
        lo, hi = ptr[b], ptr[b + 1]
        t = types[lo:hi]
        margin = logits[lo:hi, k] - logits[lo:hi].gather(1, t[:, None]).squeeze(1)
        margin = margin.masked_fill(counts[b, t] < 2, -math.inf)
        i = int(margin.argmax())
        if not math.isfinite(float(margin[i])):
            continue  # every atom is its element's last one (cannot happen for m <= N)
        counts[b, t[i]] -= 1
        counts[b, k] += 1
        types[lo + i] = k
    return types


@torch.no_grad()
def langevin_decode(
    model: CDVAE,
    z: torch.Tensor,
    steps_per_level: int = DEFAULT_STEPS_PER_LEVEL,
    step_lr: float | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 512,
    progress: bool = False,
    composition_temperature: float = COMPOSITION_TEMPERATURE,
    type_update_min_sigma: float = 0.0,
    element_mask: torch.Tensor | None = None,
) -> list[dict]:
    """Decode latents ``z`` (M, latent) into crystals; returns one dict of tensors per crystal.

    ``composition_temperature`` < 1 sharpens the composition head before the initial types are
    allocated: at 1 the initial cells get ~3.3 elements on average vs 2.6 in JARVIS-SC, at 0.7
    ~2.8; on 200-300 samples 0.7 lowered SMACT validity (0.85 -> 0.81) and uniqueness without a
    clear gain in the element-count distance, so the default stays 1.
    """
    if steps_per_level < 1:
        raise InputError(f"steps_per_level must be >= 1, got {steps_per_level}")
    step_lr = default_step_lr(steps_per_level) if step_lr is None else step_lr
    model.eval()
    dev = z.device
    sigmas = model.sigmas
    s_min = float(sigmas[-1])
    out: list[dict] = []
    chunks = list(range(0, len(z), batch_size))
    bar = None
    if progress:
        bar = tqdm(total=len(chunks) * len(sigmas) * steps_per_level, desc="Langevin", unit="step")
    for start in chunks:
        zc = z[start : start + batch_size]
        n = model.predict_num_atoms(zc)
        lengths, angles = model.predict_lattice(zc, n)
        lattice = lattice_from_params(lengths, angles)
        inv = torch.linalg.inv(lattice)
        bidx = batch_index(n)
        comp = F.softmax(model.composition_logits(zc, n) / composition_temperature, -1)
        n_elements = model.sample_num_elements(n, generator)
        types, allowed = allocate_types(comp, n, generator, n_elements, element_mask)
        restricted = n_elements is not None
        frac = torch.rand(len(bidx), 3, generator=generator, device=dev)
        inv_atom = inv[bidx]
        u = torch.zeros_like(frac)
        for sigma in sigmas.tolist():
            alpha = step_lr * (sigma / s_min) ** 2
            sig_vec = torch.full((len(n),), sigma, device=dev)
            for _ in range(steps_per_level):
                u, logits = model.decoder(zc, types, frac, lattice, n, sig_vec)
                u = bounded_score(u)
                noise = torch.randn(frac.shape, generator=generator, device=dev) * math.sqrt(2 * alpha)
                dcart = alpha * u / sigma + noise
                frac = (frac + torch.einsum("nk,nkl->nl", dcart, inv_atom)) % 1.0
                if sigma >= type_update_min_sigma:
                    types = update_types(logits, allowed, n, restricted)
                if bar is not None:
                    bar.update(1)
        u, logits = model.decoder(zc, types, frac, lattice, n, torch.full((len(n),), s_min, device=dev))
        u = bounded_score(u)
        frac = (frac + torch.einsum("nk,nkl->nl", s_min * u, inv_atom)) % 1.0
        if s_min >= type_update_min_sigma:
            types = update_types(logits, allowed, n, restricted)
        counts = n.tolist()
        for i, (f, t) in enumerate(zip(frac.split(counts), types.split(counts), strict=True)):
            out.append({"frac": f.cpu(), "types": t.cpu(), "lengths": lengths[i].cpu(),
                        "angles": angles[i].cpu(), "num_atoms": int(counts[i])})
    if bar is not None:
        bar.close()
    return out


def crystal_to_structure(crystal: dict, elements: list[str]) -> Structure:
    lat = Lattice.from_parameters(*crystal["lengths"].tolist(), *crystal["angles"].tolist())
    species = [elements[i] for i in crystal["types"].tolist()]
    return Structure(lat, species, crystal["frac"].numpy())


def structure_flags(structures) -> list[list[str]]:
    """Flags for generated cells: ``atoms_too_close`` (< 0.5 Å, periodic images included) and
    ``unphysical_lattice`` (volume < 0.1 Å³, a length < 1 Å, an angle outside 30–150° or more
    than 200 Å³ per atom), ``non_finite_coordinates``. Flagged structures are kept: downstream decides."""
    flags = []
    for s in structures:
        f = []
        if not (np.isfinite(s.frac_coords).all() and np.isfinite(s.lattice.matrix).all()):
            flags.append(["non_finite_coordinates"])
            continue
        if atoms_too_close(s, MIN_DISTANCE_A):  # the test every command flags with
            f.append("atoms_too_close")
        lengths, angles = s.lattice.abc, s.lattice.angles
        if (s.volume < 0.1 or min(lengths) < 1.0 or min(angles) < 30 or max(angles) > 150
                or s.volume / len(s) > 200):
            f.append("unphysical_lattice")
        flags.append(f)
    return flags


@torch.no_grad()
def encode_structures(model: CDVAE, structures, batch_size: int = 256) -> torch.Tensor:
    """μ of q(z|structure) for pymatgen structures (unknown elements raise InputError)."""
    dev = next(model.parameters()).device
    items = [structure_to_item(s, model.cfg.elements, None, f"#{i}") for i, s in enumerate(structures)]
    mus = []
    for i in range(0, len(items), batch_size):
        mu, _ = model.encode(collate(items[i : i + batch_size], dev))
        mus.append(mu)
    return torch.cat(mus) if mus else torch.zeros(0, model.cfg.latent_dim)


def reconstruct(model: CDVAE, structures, steps_per_level: int = 2, seed: int = 0,
                step_lr: float | None = None) -> list:
    """Encode (μ) then decode with annealed Langevin; returns pymatgen Structures."""
    mu = encode_structures(model, structures)
    gen = torch.Generator(device=mu.device).manual_seed(seed)
    crystals = langevin_decode(model, mu, steps_per_level, step_lr, gen)
    return [crystal_to_structure(c, model.cfg.elements) for c in crystals]


def element_space_mask(vocabulary: list[str], elements: Sequence[str]) -> torch.Tensor:
    """Bool mask over the model's vocabulary for a requested chemical space.

    Symbols that are not elements are an error; elements the model never saw are ignored with a
    warning (it cannot place them), and a space with none of the model's elements is an error.
    """
    bad = [e for e in elements if not Element.is_valid_symbol(str(e))]
    if bad:
        raise InputError(f"not element symbols: {bad}")
    wanted = set(map(str, elements))
    unseen = sorted(wanted - set(vocabulary))
    if unseen:
        log.warning("elements outside the generator's training vocabulary are ignored: %s", unseen)
    mask = torch.tensor([e in wanted for e in vocabulary], dtype=torch.bool)
    if not bool(mask.any()):
        raise InputError(f"none of the requested elements {sorted(wanted)} is in the generator's "
                         f"vocabulary ({len(vocabulary)} elements: {', '.join(vocabulary)})")
    return mask


def generate_candidates(
    n: int,
    model_dir: str | Path | None = None,
    seed: int = 0,
    steps_per_level: int = DEFAULT_STEPS_PER_LEVEL,
    step_lr: float | None = None,
    optimize_tc: bool = False,
    opt_steps: int = 20,
    opt_lr: float = 0.05,
    symmetrize: bool | None = None,
    batch_size: int = 512,
    device: str | None = None,
    progress: bool = True,
    prior: str = "auto",
    prior_scale: float = 1.0,
    elements: Sequence[str] | None = None,
) -> list[CandidateRecord]:
    """Sample ``n`` crystals from a CDVAE checkpoint and return ``list[CandidateRecord]``.

    ``optimize_tc`` first moves each prior latent uphill on the T_c head (:mod:`.optimize`);
    ``symmetrize`` refines each result with :func:`.symmetry.recover_symmetry`. Provenance holds
    the model hash, seed, index, latent z and sampling schedule; predictions hold the T_c head's
    value for the re-encoded result (``tc_K_cdvae``). Problematic cells are flagged, not dropped.
    ``elements`` limits the crystals to that chemical space (e.g. the elements a pseudopotential
    library covers); it must share at least one element with the model's vocabulary.
    ``symmetrize``/``device`` None: ``settings.symmetrize``/``settings.device``.
    """
    settings = get_settings()
    symmetrize = settings.symmetrize if symmetrize is None else symmetrize
    device = device or settings.device
    if n < 1:
        raise InputError(f"number of structures to generate must be >= 1, got {n}")
    model, info = load_model(model_dir, device)
    mask = element_space_mask(model.cfg.elements, elements) if elements is not None else None
    gen = torch.Generator(device=device).manual_seed(seed)
    z = model.sample_latent(n, gen, prior, prior_scale)
    if optimize_tc:
        z, tc_latent = optimize_latent_tc(model, z, steps=opt_steps, lr=opt_lr)
    else:
        with torch.no_grad():
            tc_latent = model.predict_tc_K(z)
    crystals = langevin_decode(model, z, steps_per_level, step_lr, gen, batch_size, progress,
                               element_mask=mask)
    structures = [crystal_to_structure(c, model.cfg.elements) for c in crystals]
    flags = structure_flags(structures)
    with torch.no_grad():
        tc_re = model.predict_tc_K(encode_structures(model, structures)).cpu().tolist()
    sym_info = [None] * len(structures)
    if symmetrize:
        for i, s in enumerate(structures):
            structures[i], sym_info[i] = recover_symmetry(s)
    run = {"generator": "cdvae", "model_hash": info["model_hash"], "model_dir": info["model_dir"],
           "seed": seed}
    sampling = {
        "schedule": {"steps_per_level": steps_per_level,
                     "step_lr": step_lr or default_step_lr(steps_per_level),
                     "sigma_levels": len(model.sigmas)},
        "optimize_tc": optimize_tc,
        "latent_prior": "aggregate" if (prior != "standard" and bool(model.prior_fitted)) else "standard",
        "prior_scale": prior_scale,
        "elements": sorted(elements) if elements is not None else None,
    }
    return [
        CandidateRecord.from_structure(
            s,
            id=f"cdvae-{info['model_hash'][:8]}-s{seed}-{i:05d}",
            origin="generated",
            provenance={**run, "index": i, "latent_z": [round(float(x), 5) for x in z[i].tolist()],
                        **sampling, "tc_K_latent": float(tc_latent[i])},
            flags=flags[i],
            symmetry=sym_info[i].model_dump() if sym_info[i] is not None else None,
            predictions={"tc_K_cdvae": float(tc_re[i])},
        )
        for i, s in enumerate(structures)
    ]
