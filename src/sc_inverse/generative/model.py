"""The CDVAE: encoder, property heads, score decoder, losses, checkpoint I/O.

Own implementation of the method of Xie et al. (ICLR 2022, "Crystal Diffusion Variational
Autoencoder"): z ~ q(z|crystal); heads predict the number of atoms, the lattice (lengths scaled
by N^(1/3) and angles, standardised), the composition and the property (T_c) from z; a
noise-conditional score network denoises coordinates and atom types given z.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sc_inverse.errors import InputError, ModelLoadError
from sc_inverse.generative.config import MODEL_VERSION, CDVAEConfig
from sc_inverse.generative.decoder import ScoreDecoder
from sc_inverse.generative.encoder import Encoder
from sc_inverse.generative.graph import batch_index, lattice_from_params

CHECKPOINT_FORMAT = "sc_inverse.cdvae"
#: columns of the (N, number of elements) table; more distinct elements are counted here
MAX_ELEMENTS_PER_CELL = 8
WEIGHTS_FILE = "model.pt"
DEFAULT_CHECKPOINT = "jarvis_sc_medium"


def mlp(n_in: int, hidden: int, n_out: int, layers: int, dropout: float = 0.0) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = n_in
    for _ in range(layers - 1):
        mods += [nn.Linear(d, hidden), nn.SiLU()]
        if dropout:
            mods.append(nn.Dropout(dropout))
        d = hidden
    mods.append(nn.Linear(d, n_out))
    return nn.Sequential(*mods)


class CDVAE(nn.Module):
    def __init__(self, cfg: CDVAEConfig):
        super().__init__()
        if not cfg.elements:
            raise ModelLoadError("CDVAEConfig.elements is empty: the element vocabulary is unset")
        self.cfg = cfg
        k = len(cfg.elements)
        n_cls = cfg.max_atoms + 1
        self.encoder = Encoder(cfg)
        self.decoder = ScoreDecoder(cfg)
        z, h, nl, dp = cfg.latent_dim, cfg.head_hidden, cfg.head_layers, cfg.dropout
        self.num_atoms_head = mlp(z, h, n_cls, nl, dp)
        n_lat = 6 if cfg.lattice_components == 1 else cfg.lattice_components * 13
        self.lattice_head = mlp(z + n_cls, h, n_lat, nl, dp)
        self.composition_head = mlp(z + n_cls, h, k, nl, dp)
        self.property_head = mlp(z, h, 1, nl, dp)
        sig = torch.logspace(math.log10(cfg.sigma_begin), math.log10(cfg.sigma_end), cfg.num_noise_levels)
        tsig = torch.logspace(
            math.log10(cfg.type_sigma_begin), math.log10(cfg.type_sigma_end), cfg.num_noise_levels
        )
        self.register_buffer("sigmas", sig)
        self.register_buffer("type_sigmas", tsig)
        # data statistics (set by set_normalizer before training; saved in the state dict)
        self.register_buffer("lat_mean", torch.zeros(6))
        self.register_buffer("lat_std", torch.ones(6))
        self.register_buffer("tc_mean", torch.zeros(()))
        self.register_buffer("tc_std", torch.ones(()))
        # aggregate-posterior prior N(latent_mean, L Lᵀ), fitted after training (see fit_latent_prior)
        self.register_buffer("latent_mean", torch.zeros(cfg.latent_dim))
        self.register_buffer("latent_tril", torch.eye(cfg.latent_dim))
        self.register_buffer("prior_fitted", torch.zeros((), dtype=torch.bool))
        # training-set counts of (number of atoms N, number of distinct elements m): sampling draws
        # m | N from it (all zeros = not fitted: the composition head alone sets the elements)
        self.register_buffer("nelem_counts", torch.zeros(cfg.max_atoms + 1, MAX_ELEMENTS_PER_CELL + 1))

    # ------------------------------------------------------------------ normalisation
    def set_normalizer(self, lengths, angles, num_atoms, tc) -> None:
        scaled = torch.cat([lengths / num_atoms[:, None].float() ** (1 / 3), angles], -1)
        self.lat_mean.copy_(scaled.mean(0))
        self.lat_std.copy_(scaled.std(0).clamp_min(1e-3))
        known = tc[~torch.isnan(tc)]
        if len(known) > 1:
            self.tc_mean.copy_(known.mean())
            self.tc_std.copy_(known.std().clamp_min(1e-3))

    def lattice_target(self, lengths, angles, num_atoms):
        scaled = torch.cat([lengths / num_atoms[:, None].float() ** (1 / 3), angles], -1)
        return (scaled - self.lat_mean) / self.lat_std

    def lattice_from_output(self, out, num_atoms):
        raw = out * self.lat_std + self.lat_mean
        lengths = raw[:, :3].clamp_min(0.1) * num_atoms[:, None].float() ** (1 / 3)
        angles = raw[:, 3:].clamp(20.0, 160.0)
        return lengths, angles

    # ------------------------------------------------------------------ pieces
    def encode(self, batch):
        lattice = lattice_from_params(batch["lengths"], batch["angles"])
        return self.encoder(batch["types"], batch["frac"], lattice, batch["num_atoms"])

    def n_onehot(self, num_atoms):
        return F.one_hot(num_atoms.clamp(0, self.cfg.max_atoms), self.cfg.max_atoms + 1).float()

    def predict_num_atoms(self, z):
        return self.num_atoms_head(z).argmax(-1).clamp_min(1)

    def _lattice_mixture(self, out):
        """Split the mixture head's output into log-weights (B, K), means and stds (B, K, 6)."""
        k = self.cfg.lattice_components
        logw = F.log_softmax(out[:, :k], -1)
        mean = out[:, k : 7 * k].view(-1, k, 6)
        std = F.softplus(out[:, 7 * k :].view(-1, k, 6)) + self.cfg.lattice_min_std
        return logw, mean, std

    def lattice_loss(self, out, target):
        """MSE (CDVAE) or the mixture's negative log-likelihood per parameter."""
        if self.cfg.lattice_components == 1:
            return F.mse_loss(out, target)
        logw, mean, std = self._lattice_mixture(out)
        normal = torch.distributions.Normal(mean, std)
        logp = normal.log_prob(target[:, None, :]).sum(-1) + logw
        return -torch.logsumexp(logp, -1).mean() / 6

    def predict_lattice(self, z, num_atoms):
        """Lengths (Å) and angles (°): the head's output, or the most probable component's mean."""
        out = self.lattice_head(torch.cat([z, self.n_onehot(num_atoms)], -1))
        if self.cfg.lattice_components > 1:
            logw, mean, _ = self._lattice_mixture(out)
            out = mean[torch.arange(len(out), device=out.device), logw.argmax(-1)]
        return self.lattice_from_output(out, num_atoms)

    def composition_logits(self, z, num_atoms):
        return self.composition_head(torch.cat([z, self.n_onehot(num_atoms)], -1))

    def predict_tc_K(self, z):
        return self.property_head(z).squeeze(-1) * self.tc_std + self.tc_mean

    # ------------------------------------------------------------------ latent prior
    @torch.no_grad()
    def fit_latent_prior(self, batches, shrinkage: float = 0.05) -> None:
        """Fit a full-covariance Gaussian to the aggregate posterior of the training set.

        CDVAE samples z ~ N(0, I), but with a small data set the encoder's aggregate posterior
        is far from N(0, I) (the paper's stated cause of low-density outputs); sampling from
        N(mean μ, Cov(μ) + mean σ²) lands where the heads and decoder were trained.
        """
        mus, variances = [], []
        for batch in batches:
            mu, logvar = self.encode(batch)
            mus.append(mu)
            variances.append(logvar.exp())
        mu = torch.cat(mus).double()
        cov = torch.cov(mu.T) + torch.diag(torch.cat(variances).double().mean(0))
        cov = (1 - shrinkage) * cov + shrinkage * torch.diag(torch.diag(cov))
        self.latent_mean.copy_(mu.mean(0).float())
        self.latent_tril.copy_(torch.linalg.cholesky(cov).float())
        self.prior_fitted.fill_(True)

    @torch.no_grad()
    def fit_element_count_prior(self, types: torch.Tensor, num_atoms: torch.Tensor) -> None:
        """Count (N, number of distinct elements) over the training crystals.

        Why: the composition head is a blurry distribution (top element ~0.33 on average), and
        rounding N·p spreads a 4-atom cell over 4 elements; JARVIS-SC has 1-3 elements in 99.6 %
        of its cells but samples had >= 4 in a third of them.
        """
        counts = torch.zeros_like(self.nelem_counts)
        for t, n in zip(types.split(num_atoms.tolist()), num_atoms.tolist(), strict=True):
            m = min(len(torch.unique(t)), MAX_ELEMENTS_PER_CELL)
            counts[min(n, self.cfg.max_atoms), m] += 1
        self.nelem_counts.copy_(counts)

    def sample_num_elements(self, num_atoms: torch.Tensor, generator=None) -> torch.Tensor | None:
        """m | N from the fitted counts (rows without data fall back to all N); None if unfitted."""
        if not bool(self.nelem_counts.sum() > 0):
            return None
        rows = self.nelem_counts[num_atoms.clamp(0, self.cfg.max_atoms)].clone()
        rows[:, 0] = 0
        m_max = torch.arange(rows.shape[1], device=rows.device)[None, :] <= num_atoms[:, None]
        rows = rows * m_max
        empty = rows.sum(-1) == 0
        rows[empty] = (self.nelem_counts.sum(0) * m_max[empty]).clamp_min(0)
        rows[:, 0] = 0
        rows[rows.sum(-1) == 0, 1] = 1.0  # nothing known: one element
        return torch.multinomial(rows / rows.sum(-1, keepdim=True), 1, generator=generator).squeeze(-1)

    def sample_latent(self, n: int, generator=None, prior: str = "auto", scale: float = 1.0) -> torch.Tensor:
        """z from the fitted aggregate prior (``auto``/``aggregate``) or N(0, I) (``standard``);
        ``scale`` multiplies the spread (> 1: more diverse, further from the data)."""
        eps = scale * torch.randn(n, self.cfg.latent_dim, generator=generator, device=self.latent_mean.device)
        if prior == "standard" or (prior == "auto" and not bool(self.prior_fitted)):
            return eps
        if prior not in ("auto", "aggregate"):
            raise InputError(f"unknown latent prior {prior!r}; use auto, aggregate or standard")
        if not bool(self.prior_fitted):
            raise ModelLoadError("this checkpoint has no fitted aggregate prior; use prior='standard'")
        return self.latent_mean + eps @ self.latent_tril.T

    # ------------------------------------------------------------------ training loss
    def forward(self, batch, sample_z: bool = True) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        types, frac, num_atoms = batch["types"], batch["frac"], batch["num_atoms"]
        B = len(num_atoms)
        bidx = batch_index(num_atoms)
        mu, logvar = self.encode(batch)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample_z else mu
        kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(-1)).mean()

        loss_natom = F.cross_entropy(self.num_atoms_head(z), num_atoms.clamp(0, cfg.max_atoms))
        lat_out = self.lattice_head(torch.cat([z, self.n_onehot(num_atoms)], -1))
        loss_lattice = self.lattice_loss(lat_out, self.lattice_target(batch["lengths"], batch["angles"], num_atoms))
        comp_logits = self.composition_logits(z, num_atoms)
        loss_comp = F.cross_entropy(comp_logits[bidx], types)

        tc = batch["tc"]
        known = ~torch.isnan(tc)
        if known.any():
            pred = self.property_head(z).squeeze(-1)
            loss_prop = F.mse_loss(pred[known], (tc[known] - self.tc_mean) / self.tc_std)
        else:
            loss_prop = torch.zeros((), device=z.device)

        # coordinate noise: one σ level per crystal, Gaussian in Cartesian space, wrapped
        lattice = lattice_from_params(batch["lengths"], batch["angles"])
        lvl = torch.randint(0, cfg.num_noise_levels, (B,), device=z.device)
        sigma = self.sigmas[lvl]
        eps = torch.randn_like(frac)
        cart_noise = eps * sigma[bidx, None]
        noisy_frac = (frac + torch.einsum("nk,nkl->nl", cart_noise, torch.linalg.inv(lattice)[bidx])) % 1.0

        # type noise: one-hot + σ_type · crystal composition, resampled
        tlvl = torch.randint(0, cfg.num_noise_levels, (B,), device=z.device)
        k = len(cfg.elements)
        onehot = F.one_hot(types, k).float()
        comp = torch.zeros(B, k, device=z.device).index_add_(0, bidx, onehot) / num_atoms[:, None]
        probs = onehot + self.type_sigmas[tlvl][bidx, None] * comp[bidx]
        noisy_types = torch.multinomial(probs / probs.sum(-1, keepdim=True), 1).squeeze(-1)

        unit_score, type_logits = self.decoder(z, noisy_types, noisy_frac, lattice, num_atoms, sigma)
        loss_coord = ((unit_score + eps) ** 2).sum(-1).mean()
        loss_type = F.cross_entropy(type_logits, types)

        total = (
            cfg.w_num_atoms * loss_natom
            + cfg.w_lattice * loss_lattice
            + cfg.w_composition * loss_comp
            + cfg.w_coord * loss_coord
            + cfg.w_type * loss_type
            + cfg.w_property * loss_prop
            + cfg.beta * kl
        )
        return {
            "loss": total,
            "kl": kl.detach(),
            "num_atoms": loss_natom.detach(),
            "lattice": loss_lattice.detach(),
            "composition": loss_comp.detach(),
            "coord": loss_coord.detach(),
            "type": loss_type.detach(),
            "property": loss_prop.detach(),
        }


# ---------------------------------------------------------------------- checkpoint I/O
def shipped_checkpoint_dir(name: str = DEFAULT_CHECKPOINT) -> Path:
    return Path(__file__).parent / "checkpoints" / name


def save_model(model: CDVAE, out_dir: str | Path, meta: dict | None = None) -> Path:
    """Write ``model.pt`` (config, version, weights, metadata) atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_version": MODEL_VERSION,
        "config": model.cfg.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta or {},
    }
    tmp = out_dir / (WEIGHTS_FILE + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(out_dir / WEIGHTS_FILE)
    return out_dir / WEIGHTS_FILE


def model_hash(model_dir: str | Path) -> str:
    """sha256 (first 16 hex) of the weights file: the provenance id of generated structures."""
    data = (Path(model_dir) / WEIGHTS_FILE).read_bytes()
    return hashlib.sha256(data).hexdigest()[:16]


def load_model(model_dir: str | Path | None = None, device: str = "cpu") -> tuple[CDVAE, dict]:
    """Load a checkpoint dir (default: ``settings.generator_model`` or the shipped one).

    Returns the model in eval mode and an info dict (``model_dir``, ``model_hash``, ``meta``).
    """
    if model_dir is None:
        try:  # lazy: checkpoints must also load on a bare-torch machine
            from sc_inverse.settings import get_settings

            model_dir = get_settings().generator_model
        except ImportError:  # bare-torch machine without pydantic-settings
            model_dir = None
    model_dir = Path(model_dir) if model_dir is not None else shipped_checkpoint_dir()
    path = model_dir / WEIGHTS_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path}: no CDVAE checkpoint (expected {WEIGHTS_FILE} in the directory)")
    try:
        payload = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ModelLoadError(f"{path}: cannot be read as a torch checkpoint ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ModelLoadError(f"{path}: not a sc-inverse CDVAE checkpoint (format field missing)")
    if payload.get("model_version") != MODEL_VERSION:
        raise ModelLoadError(
            f"{path}: written by CDVAE model version {payload.get('model_version')}, this code "
            f"reads version {MODEL_VERSION}; retrain with `sc-inverse train-generator`"
        )
    cfg = CDVAEConfig.from_dict(payload["config"])
    model = CDVAE(cfg)
    try:
        missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
        # absent = standard prior / elements from the composition head alone (older checkpoints)
        optional = {"latent_mean", "latent_tril", "prior_fitted", "nelem_counts"}
        if unexpected or set(missing) - optional:
            raise RuntimeError(f"missing {sorted(set(missing) - optional)}, unexpected {sorted(unexpected)}")
    except RuntimeError as exc:
        raise ModelLoadError(f"{path}: weights do not fit the stored config ({exc})") from exc
    model.to(device).eval()
    info = {"model_dir": str(model_dir), "model_hash": model_hash(model_dir), "meta": payload.get("meta", {})}
    return model, info


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=1, default=str))
