"""Model configuration: one dataclass, CDVAE sizes by default, a ``small`` preset for CPU/tests.

Kept as a plain dataclass (no pydantic) so the training core also runs on a bare torch machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from sc_inverse.errors import InputError, ModelLoadError

#: bump when the parameterisation of the network or the checkpoint layout changes
MODEL_VERSION = 1


@dataclass
class CDVAEConfig:
    """Sizes, noise schedules and loss weights of the CDVAE.

    Defaults follow CDVAE (Xie et al., ICLR 2022): latent 256, property heads 256 wide,
    encoder/decoder hidden 128, cutoff 7 Å with at most 20 neighbours, coordinate noise
    σ 10 → 0.01 in 50 geometric levels, type noise 5 → 0.01, β = 0.01.
    """

    elements: list[str] = field(default_factory=list)  # vocabulary; set from the training data
    max_atoms: int = 20
    latent_dim: int = 256
    head_hidden: int = 256
    head_layers: int = 3
    enc_hidden: int = 128
    enc_layers: int = 4
    dec_hidden: int = 128
    dec_layers: int = 3
    num_rbf: int = 32
    cutoff: float = 7.0
    max_neighbors: int = 20
    max_images: int = 4  # cap on periodic images per axis (guards unphysical tiny cells)
    sigma_begin: float = 10.0
    sigma_end: float = 0.01
    num_noise_levels: int = 50
    type_sigma_begin: float = 5.0
    type_sigma_end: float = 0.01
    beta: float = 0.01
    w_num_atoms: float = 1.0
    w_lattice: float = 10.0
    w_composition: float = 1.0
    w_coord: float = 10.0
    w_type: float = 1.0
    w_property: float = 1.0
    dropout: float = 0.0
    # 1: CDVAE's lattice head (MSE on the 6 scaled parameters). K > 1: a K-component Gaussian
    # mixture trained by likelihood, decoded at the most probable component's mean. Why: the data
    # mix 60°, 90°, 109.5° and 120° cells; MSE regresses γ of hexagonal cells towards ~100° and
    # the generator then (almost) never emits AlB2/MgB2-type cells (see the medium model card).
    lattice_components: int = 1
    lattice_min_std: float = 0.05  # floor on component std (normalised units): exact 90° is a delta

    @classmethod
    def small(cls, **overrides) -> CDVAEConfig:
        """CPU-friendly preset used by tests and quick experiments."""
        base = dict(
            latent_dim=32,
            head_hidden=64,
            head_layers=2,
            enc_hidden=32,
            enc_layers=2,
            dec_hidden=32,
            dec_layers=2,
            num_rbf=16,
            cutoff=5.0,
            max_neighbors=12,
        )
        base.update(overrides)
        return cls(**base)

    @classmethod
    def preset(cls, name: str, **overrides) -> CDVAEConfig:
        """``cdvae`` (paper sizes), ``medium`` (what we ship: CPU-fast sampling) or ``small``."""
        if name == "cdvae":
            return cls(**overrides)
        if name == "small":
            return cls.small(**overrides)
        if name == "medium":
            base = dict(latent_dim=128, head_hidden=256, enc_hidden=96, dec_hidden=64,
                        enc_layers=3, dec_layers=3, max_neighbors=16, cutoff=6.0, lattice_components=8)
            base.update(overrides)
            return cls(**base)
        raise InputError(f"unknown model preset {name!r}; use cdvae, medium or small")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CDVAEConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelLoadError(f"checkpoint config has unknown fields {unknown}")
        return cls(**data)
