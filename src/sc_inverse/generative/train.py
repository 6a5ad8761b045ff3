"""Training loop: Adam, plateau LR schedule, early stopping on validation loss, resumable.

Needs only torch (+ tqdm if present), so ``fit_prepared`` also runs on an accelerator machine
that has no pymatgen: prepare the dataset file with ``data.save_prepared`` first.
Files in ``out_dir``: ``model.pt`` (best on validation), ``train_state.pt`` (last epoch:
weights, optimiser, scheduler, RNG, counters — what ``--resume`` continues from),
``history.json`` (per-epoch losses).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sc_inverse.errors import InputError, ModelLoadError
from sc_inverse.generative.config import MODEL_VERSION, CDVAEConfig
from sc_inverse.generative.data import CrystalItem, collate, load_prepared
from sc_inverse.generative.model import CDVAE, load_model, save_model
from sc_inverse.settings import get_settings

log = logging.getLogger(__name__)
STATE_FILE = "train_state.pt"
COMPONENTS = ("loss", "kl", "num_atoms", "lattice", "composition", "coord", "type", "property")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _epoch_batches(n: int, batch_size: int, gen: torch.Generator) -> list[list[int]]:
    perm = torch.randperm(n, generator=gen).tolist()
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


@torch.no_grad()
def evaluate_loss(model: CDVAE, items: list[CrystalItem], batch_size: int, device, seed: int = 1234) -> dict:
    """Mean loss components over ``items`` with a fixed noise seed (comparable across epochs)."""
    was_training = model.training
    model.eval()
    cpu_state = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    torch.manual_seed(seed)
    sums = {k: 0.0 for k in COMPONENTS}
    for i in range(0, len(items), batch_size):
        chunk = items[i : i + batch_size]
        out = model(collate(chunk, device))
        for k in COMPONENTS:
            sums[k] += float(out[k]) * len(chunk)
    torch.set_rng_state(cpu_state)
    if cuda_state is not None:
        torch.cuda.set_rng_state_all(cuda_state)
    model.train(was_training)
    return {k: v / len(items) for k, v in sums.items()}


@dataclass
class TrainState:
    """Where a run stands after an epoch; ``train_state.pt`` keeps it so ``resume`` continues."""

    start_epoch: int = 0
    best: float = math.inf  # best validation loss so far
    best_epoch: int = -1
    bad: int = 0  # epochs since the best one (early stopping counter)
    history: list[dict] = field(default_factory=list)
    best_val: dict = field(default_factory=dict)


def _new_model(cfg: CDVAEConfig, train_items: list[CrystalItem], device: str) -> CDVAE:
    """A fresh CDVAE with the training set's normalisers and element-count table."""
    model = CDVAE(cfg).to(device)
    tr = collate(train_items)
    model.set_normalizer(tr["lengths"].to(device), tr["angles"].to(device), tr["num_atoms"].to(device), tr["tc"].to(device))
    model.fit_element_count_prior(tr["types"].to(device), tr["num_atoms"].to(device))  # data only: every save has it
    return model


def _restore(state_path: Path, cfg: CDVAEConfig, model: CDVAE, opt, sched, gen: torch.Generator,
             device: str) -> TrainState:
    """Load weights, optimiser, scheduler, RNGs and counters saved by :func:`_save_state`."""
    st = torch.load(state_path, map_location=device, weights_only=False)
    if st.get("model_version") != MODEL_VERSION:
        raise ModelLoadError(f"{state_path}: from model version {st.get('model_version')}, need {MODEL_VERSION}")
    if st["config"] != cfg.to_dict():
        raise InputError(f"{state_path}: stored config differs from the requested one; use a new --out")
    model.load_state_dict(st["model"])
    opt.load_state_dict(st["optimizer"])
    sched.load_state_dict(st["scheduler"])
    gen.set_state(st["gen_state"])
    torch.set_rng_state(st["torch_rng"])
    state = TrainState(st["epoch"] + 1, st["best"], st["best_epoch"], st["bad"], st["history"],
                       st.get("best_val", {}))
    log.info("resuming from epoch %d (best val %.4f at %d)", state.start_epoch, state.best, state.best_epoch)
    return state


def _save_state(out_dir: Path, epoch: int, state: TrainState, cfg: CDVAEConfig, model: CDVAE, opt, sched,
                gen: torch.Generator) -> None:
    """``train_state.pt`` after ``epoch``, written atomically."""
    tmp = out_dir / (STATE_FILE + ".tmp")
    torch.save(
        {"model_version": MODEL_VERSION, "config": cfg.to_dict(), "model": model.state_dict(),
         "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "gen_state": gen.get_state(),
         "torch_rng": torch.get_rng_state(), "epoch": epoch, "best": state.best,
         "best_epoch": state.best_epoch, "bad": state.bad, "history": state.history,
         "best_val": state.best_val},
        tmp,
    )
    tmp.replace(out_dir / STATE_FILE)


def train_epoch(model: CDVAE, opt, items: list[CrystalItem], batch_size: int, gen: torch.Generator,
                device) -> tuple[dict, int]:
    """One pass over ``items`` in ``gen``'s order; returns (mean loss components, skipped batches).

    A batch with a non-finite loss is skipped, not applied: one bad batch must not poison the
    weights (the count goes into the history).
    """
    model.train()
    sums = {k: 0.0 for k in COMPONENTS}
    skipped = 0
    for idx in _epoch_batches(len(items), batch_size, gen):
        out = model(collate([items[i] for i in idx], device))
        if not torch.isfinite(out["loss"]):
            skipped += 1
            continue
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        for k in COMPONENTS:
            sums[k] += float(out[k].detach()) * len(idx)
    return {k: v / len(items) for k, v in sums.items()}, skipped


def _epochs(start: int, epochs: int, progress: bool):
    """The epoch range, with a tqdm bar when asked and tqdm is installed (the accelerator
    machines that run :func:`fit_prepared` may have torch alone)."""
    if progress:
        try:
            from tqdm.auto import tqdm

            return tqdm(range(start, epochs), desc="train CDVAE", initial=start, total=epochs)
        except ImportError:  # pragma: no cover
            pass
    return range(start, epochs)


def fit(
    cfg: CDVAEConfig,
    train_items: list[CrystalItem],
    val_items: list[CrystalItem],
    out_dir: str | Path,
    epochs: int = 1000,
    device: str | None = None,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 1e-3,
    patience: int = 200,
    resume: bool = False,
    max_minutes: float | None = None,
    progress: bool = True,
    meta: dict | None = None,
    snapshot_every: int | None = None,
) -> dict:
    """Train a CDVAE; returns a summary (best epoch, best validation losses, epochs run).

    ``snapshot_every`` also keeps the weights of every N-th epoch in ``snapshots/epoch_NNNN/``
    (loadable checkpoint dirs): the validation loss is dominated by the property heads, which
    overfit early, while the decoder keeps improving, so sample metrics on the validation split
    (``benchmarks/bench_generator_selection.py``) can prefer a later epoch. ``device`` None:
    ``settings.device``.
    """
    if not train_items:
        raise InputError("training set is empty")
    if not val_items:
        raise InputError("validation set is empty")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = device or get_settings().device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda requested but torch sees no CUDA device")
    seed_everything(seed)
    model = _new_model(cfg, train_items, device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.6, patience=30, min_lr=1e-4)
    gen = torch.Generator().manual_seed(seed)
    state_path = out_dir / STATE_FILE
    st = _restore(state_path, cfg, model, opt, sched, gen, device) if resume and state_path.is_file() else TrainState()

    t0 = time.time()
    bar = _epochs(st.start_epoch, epochs, progress)
    stopped = "epochs"
    epoch = st.start_epoch - 1
    for epoch in bar:
        train_loss, skipped = train_epoch(model, opt, train_items, batch_size, gen, device)
        val = evaluate_loss(model, val_items, 256, device)
        sched.step(val["loss"])
        st.history.append({"epoch": epoch, "train": train_loss, "val": val, "lr": opt.param_groups[0]["lr"],
                           "skipped_batches": skipped})
        if math.isfinite(val["loss"]) and val["loss"] < st.best:
            st.best, st.best_epoch, st.bad, st.best_val = val["loss"], epoch, 0, val
            save_model(model, out_dir, {**(meta or {}), "epoch": epoch, "val": val, "seed": seed})
        else:
            st.bad += 1
        if snapshot_every and (epoch + 1) % snapshot_every == 0:
            save_model(model, out_dir / "snapshots" / f"epoch_{epoch + 1:04d}",
                       {**(meta or {}), "epoch": epoch, "val": val, "seed": seed})
        _save_state(out_dir, epoch, st, cfg, model, opt, sched, gen)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(train=f"{train_loss['loss']:.3f}", val=f"{val['loss']:.3f}", best=f"{st.best:.3f}")
        if st.bad >= patience:
            stopped = "early_stopping"
            break
        if max_minutes is not None and time.time() - t0 > 60 * max_minutes:
            stopped = "time_limit"
            break
    (out_dir / "history.json").write_text(json.dumps(st.history))
    if (out_dir / "model.pt").is_file():
        refit_prior(out_dir, train_items, device)
    return {"best_epoch": st.best_epoch, "best_val": st.best_val, "epochs_run": epoch + 1,
            "stopped": stopped, "minutes": (time.time() - t0) / 60}


def fit_prepared(prepared: str | Path, out_dir: str | Path, preset: str = "medium",
                 overrides: dict | None = None, **kw) -> dict:
    """Train from a ``data.save_prepared`` file (torch only; used for accelerator runs)."""
    train, val, elements, source = load_prepared(prepared)
    cfg = CDVAEConfig.preset(preset, elements=elements,
                             max_atoms=max(20, max(len(i.types) for i in train + val)),
                             **(overrides or {}))
    meta = {"data": source, "preset": preset, "n_train": len(train), "n_val": len(val)}
    return fit(cfg, train, val, out_dir, meta=meta, **kw)


def refit_prior(model_dir: str | Path, train_items: list[CrystalItem], device: str = "cpu") -> None:
    """Fit the aggregate-posterior latent prior of the checkpoint in ``model_dir`` and re-save."""
    model, info = load_model(model_dir, device)
    batches = (collate(train_items[i : i + 256], device) for i in range(0, len(train_items), 256))
    model.fit_latent_prior(batches)
    tr = collate(train_items, device)
    model.fit_element_count_prior(tr["types"], tr["num_atoms"])
    save_model(model, model_dir, info["meta"])
