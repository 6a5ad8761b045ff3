"""Train an ALIGNN property model (pure-torch backend) with alignn's own training loop.

Data: the packaged JARVIS-SC train split (model selection on its val split) or a user JSON of
records carrying the target and optionally a ``split`` field. The test split is never read:
records tagged ``split == "test"`` are dropped before anything else happens.

We call :func:`alignn.train.train_dgl` (alignn's training entry point, which also trains the
pure-torch model) with loaders built by :func:`alignn.pure_lmdb_dataset.get_torch_dataset`,
so the saved ``config.json`` + ``best_model.pt`` are a regular alignn model directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure
from tqdm.auto import tqdm

from sc_inverse.data import load_jarvis_sc
from sc_inverse.errors import CalculationError, InputError
from sc_inverse.records import load_records
from sc_inverse.screening.alignn_model import load_alignn_dir, predict_structures, to_jarvis_atoms

log = logging.getLogger(__name__)

#: the shipped T_c model's architecture and graph (1.0 M parameters, ~4 MB of float32 weights)
DEFAULT_MODEL: dict[str, Any] = {
    "name": "alignn_atomwise_pure",
    "alignn_layers": 4,
    "gcn_layers": 4,
    "atom_input_features": 92,  # cgcnn feature length
    "edge_input_features": 80,
    "triplet_input_features": 40,
    "embedding_features": 64,
    "hidden_features": 128,
    "output_features": 1,
    "calculate_gradient": False,  # intensive property, no forces
    "energy_mult_natoms": False,
    "use_penalty": False,
    "atomwise_output_features": 0,
    "gradwise_weight": 0.0,
    "stresswise_weight": 0.0,
    "atomwise_weight": 0.0,
}

DEFAULT_TRAINING: dict[str, Any] = {
    "dataset": "user_data",
    "target": "target",
    "atom_features": "cgcnn",
    "neighbor_strategy": "pure_torch",
    "id_tag": "jid",
    "cutoff": 8.0,
    "max_neighbors": 12,
    "three_body_cutoff": 3.5,
    "batch_size": 32,
    "learning_rate": 1e-3,
    "weight_decay": 1e-5,
    "scheduler": "onecycle",
    "optimizer": "adamw",
    # alignn's train_dgl uses L1Loss for every alignn_* model whatever this says (alignn/train.py);
    # stated so that config.json records the loss actually used
    "criterion": "l1",
    "random_seed": 123,
    "num_workers": 0,
    "pin_memory": False,
    "use_lmdb": True,
    "keep_data_order": True,
    "write_predictions": False,
    "compute_line_graph": True,
}

KEEP_FILES = ("config.json", "best_model.pt", "MODEL_CARD.md", "metrics.json", "ids_train_val.json",
              "history_train.json", "history_val.json", "val_predictions.json")


class _EpochProgress:
    """tqdm bar fed by alignn's ``history_val.json`` (alignn itself only prints to stdout)."""

    def __init__(self, out: Path, epochs: int, enabled: bool):
        self.file, self.epochs, self.enabled = out / "history_val.json", epochs, enabled
        self._stop = threading.Event()
        self._stream = sys.stderr  # captured before alignn's own output is redirected

    def _run(self) -> None:
        bar = tqdm(total=self.epochs, desc="ALIGNN epochs", unit="epoch", file=self._stream)
        done = 0
        while True:
            stopping = self._stop.wait(2.0)
            with contextlib.suppress(OSError, ValueError):
                hist = json.loads(self.file.read_text()) if self.file.exists() else []
                if len(hist) > done:
                    bar.update(len(hist) - done)
                    done = len(hist)
                    bar.set_postfix(val_mae=f"{hist[-1][0]:.3f}", best=f"{min(h[0] for h in hist):.3f}")
            if stopping:
                break
        bar.close()

    def __enter__(self):
        if self.enabled:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._stop.set()
            self._thread.join(timeout=10)
        return False


@dataclass
class Sample:
    id: str
    structure: Structure
    y: float


@dataclass
class TrainResult:
    out_dir: Path
    val_mae: float
    val_baseline_mae: float
    n_train: int
    n_val: int
    epochs: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def _packaged_split(target: str, split: str) -> list[Sample]:
    key = "tc_K" if target in ("tc_K", "Tc", "tc") else target
    out = []
    for rec in load_jarvis_sc(split):
        y = rec.get(key)
        if y is None:
            raise InputError(f"packaged JARVIS-SC has no field {target!r} (available: tc_K)")
        out.append(Sample(rec["jid"], rec["structure"], float(y)))
    return out


def load_training_data(
    target: str = "tc_K", data: str | Path | None = None, val_fraction: float = 0.1, seed: int = 123
) -> tuple[list[Sample], list[Sample]]:
    """Train/val samples. ``data=None`` = packaged JARVIS-SC; test-split records are never used."""
    if data is None:
        return _packaged_split(target, "train"), _packaged_split(target, "val")
    recs = load_records(data)
    train, val, rest, n_test, n_missing = [], [], [], 0, 0
    for r in recs:
        extra = r.model_extra or {}
        split = extra.get("split")
        if split == "test":
            n_test += 1
            continue
        y = extra.get(target, r.predictions.get(target))
        if y is None or not math.isfinite(float(y)):
            n_missing += 1
            continue
        s = Sample(r.id, r.get_structure(), float(y))
        {"train": train, "val": val}.get(split, rest).append(s)
    if n_test:
        log.info("%s: ignored %d test-split records", data, n_test)
    if n_missing:
        log.warning("%s: %d records have no usable %r", data, n_missing, target)
    if rest:  # untagged records: seeded random split
        random.Random(seed).shuffle(rest)
        n_val = max(1, int(round(val_fraction * len(rest)))) if not val else 0
        val += rest[:n_val]
        train += rest[n_val:]
    if len(train) < 2 or not val:
        raise InputError(f"{data}: need >= 2 train and >= 1 val records with field {target!r}")
    return train, val


def _alignn_records(samples: list[Sample]) -> list[dict]:
    return [{"jid": s.id, "atoms": to_jarvis_atoms(s.structure).to_dict(), "target": s.y} for s in samples]


def _loader(samples, cfg, out_dir: Path, name: str, batch_size: int, shuffle: bool, drop_last: bool):
    # alignn and torch stay out of this module's import (reading training data needs neither)
    from alignn.pure_lmdb_dataset import get_torch_dataset
    from torch.utils.data import DataLoader

    ds = get_torch_dataset(
        dataset=_alignn_records(samples),
        id_tag="jid",
        target="target",
        neighbor_strategy="pure_torch",
        atom_features=cfg["atom_features"],
        line_graph=True,
        cutoff=cfg["cutoff"],
        max_neighbors=cfg["max_neighbors"],
        three_body_cutoff=cfg["three_body_cutoff"],
        output_dir=str(out_dir),
        tmp_name=str(out_dir / f"lmdb_{name}"),
        map_size=2**30,
    )
    return DataLoader(
        ds, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
        collate_fn=ds.collate_line_graph, num_workers=0,
    )


def train_alignn(
    out_dir: str | Path,
    target: str = "tc_K",
    data: str | Path | None = None,
    epochs: int = 150,
    batch_size: int | None = None,
    model_overrides: dict[str, Any] | None = None,
    training_overrides: dict[str, Any] | None = None,
    train_samples: list[Sample] | None = None,
    val_samples: list[Sample] | None = None,
    command: str | None = None,
    log_file: str | Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ALIGNN on ``target``; keep the best-on-val weights; write a model card.

    ``train_samples``/``val_samples`` bypass file loading (tests use tiny sets).
    """
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if train_samples is None or val_samples is None:
        train_samples, val_samples = load_training_data(target, data)
    if len(train_samples) < 2 or not val_samples:
        raise InputError("training needs >= 2 train samples and >= 1 val sample")
    cfg = training_config(out, len(train_samples), len(val_samples), epochs, batch_size,
                          model_overrides, training_overrides)
    config = _alignn_config(cfg)
    t0 = time.time()
    log_path = Path(log_file) if log_file else out / "train.log"
    _run_train_dgl(config, cfg, train_samples, val_samples, out, log_path, progress)
    seconds = time.time() - t0
    conf = _tidy_model_dir(out, target, train_samples, val_samples, log_path)
    metrics = _validate(out, target, train_samples, val_samples, int(epochs), seconds)
    write_model_card(out, metrics, conf, command or " ".join(sys.argv), data)
    return TrainResult(out, metrics["val_mae"], metrics["val_baseline_mae_train_median"], len(train_samples),
                       len(val_samples), int(epochs), seconds, extra=metrics)


def training_config(out: Path, n_train: int, n_val: int, epochs: int, batch_size: int | None = None,
                    model_overrides: dict[str, Any] | None = None,
                    training_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """alignn ``TrainingConfig`` fields: our defaults, the overrides, this run's sizes and paths.

    The batch size never exceeds the training set (alignn drops a last partial batch).
    """
    cfg = {**DEFAULT_TRAINING, **(training_overrides or {})}
    model = {**DEFAULT_MODEL, **(model_overrides or {})}
    cfg.update(epochs=int(epochs), output_dir=str(out), model=model, n_train=n_train,
               n_val=n_val, n_test=0, filename=str(out / "alignn"))
    if batch_size is not None:
        cfg["batch_size"] = int(batch_size)
    cfg["batch_size"] = min(cfg["batch_size"], n_train)
    return cfg


def _alignn_config(cfg: dict[str, Any]):
    """alignn's validated ``TrainingConfig``; a bad user override is an InputError."""
    from alignn.config import TrainingConfig  # heavy (torch): only when training

    try:
        return TrainingConfig(**cfg)
    except Exception as exc:  # noqa: BLE001 - pydantic validation of user overrides
        raise InputError(f"invalid ALIGNN training config: {exc}") from exc


def _run_train_dgl(config, cfg: dict[str, Any], train_samples: list[Sample], val_samples: list[Sample],
                   out: Path, log_path: Path, progress: bool) -> None:
    """alignn's own training loop, its output captured in ``log_path``; writes ``best_model.pt``."""
    import torch  # heavy: only when training
    from alignn.train import train_dgl

    bs = cfg["batch_size"]
    with log_path.open("w") as fh, _EpochProgress(out, cfg["epochs"], progress), \
            contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        train_loader = _loader(train_samples, cfg, out, "train", bs, True, True)
        # alignn averages the val loss over batches: one batch makes it the exact val MAE that
        # picks best_model.pt (a short last batch would otherwise be over-weighted)
        val_bs = len(val_samples) if len(val_samples) <= 2048 else bs
        val_loader = _loader(val_samples, cfg, out, "val", val_bs, False, False)
        # train_dgl evaluates a "test" loader after the last epoch; we give it val (batch 1)
        # because the real test split must never be touched.
        val1_loader = _loader(val_samples, cfg, out, "val1", 1, False, False)
        try:
            train_dgl(config, train_val_test_loaders=[train_loader, val_loader, val1_loader,
                                                      train_loader.dataset.prepare_batch])
        except Exception as exc:  # noqa: BLE001
            raise CalculationError(f"ALIGNN training failed ({type(exc).__name__}: {exc}); see {log_path}") from exc
        finally:
            torch.set_default_dtype(torch.float32)


def _tidy_model_dir(out: Path, target: str, train_samples: list[Sample], val_samples: list[Sample],
                    log_path: Path) -> dict[str, Any]:
    """Our metadata next to alignn's config, the split ids, then only :data:`KEEP_FILES`.

    Returns the completed ``config.json``.
    """
    conf = json.loads((out / "config.json").read_text())
    conf["sc_inverse"] = {"target": target, "unit": "K" if target.endswith("_K") else ""}
    (out / "config.json").write_text(json.dumps(conf, indent=2))
    (out / "ids_train_val.json").write_text(json.dumps(
        {"id_train": [s.id for s in train_samples], "id_val": [s.id for s in val_samples]}))
    for p in out.iterdir():
        if p.name in KEEP_FILES or p == log_path:
            continue
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return conf


def _validate(out: Path, target: str, train_samples: list[Sample], val_samples: list[Sample],
              epochs: int, seconds: float) -> dict[str, Any]:
    """Val MAE of the saved best weights over every val structure (alignn drops a last partial
    batch); writes ``metrics.json`` and ``val_predictions.json``, returns the metrics."""
    import torch  # heavy; loaded already by training

    loaded = load_alignn_dir(out)
    pred, _ = predict_structures(loaded, [s.structure for s in val_samples], batch_size=64)
    y = np.array([s.y for s in val_samples])
    ok = np.isfinite(pred)
    val_mae = float(np.mean(np.abs(pred[ok] - y[ok]))) if ok.any() else float("nan")
    baseline = float(np.mean(np.abs(y - np.median([s.y for s in train_samples]))))
    hist = json.loads((out / "history_val.json").read_text()) if (out / "history_val.json").exists() else []
    best_epoch = int(np.argmin([h[0] for h in hist])) + 1 if hist else None
    metrics = {
        "target": target, "val_mae": val_mae, "val_baseline_mae_train_median": baseline,
        "n_train": len(train_samples), "n_val": len(val_samples), "n_val_failed": int((~ok).sum()),
        "epochs": epochs, "best_epoch": best_epoch, "train_seconds": round(seconds, 1),
        "n_parameters": int(sum(p.numel() for p in loaded.model.parameters())),
        "torch_threads": torch.get_num_threads(),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "val_predictions.json").write_text(json.dumps(
        [{"id": s.id, "target": s.y, "pred": None if not math.isfinite(p) else p}
         for s, p in zip(val_samples, pred.tolist(), strict=True)]))
    return metrics


def write_model_card(out: Path, metrics: dict, conf: dict, command: str, data) -> Path:
    """MODEL_CARD.md: what was trained, how, on what, and how well on val."""
    m = conf["model"]
    text = f"""# ALIGNN model: {metrics['target']}

Trained by sc-inverse (`sc_inverse.screening.train.train_alignn`, alignn `train_dgl`, pure-torch backend).

- Command: `{command}`
- Data: {"packaged JARVIS-SC (train split; model selection on val split; test split never read)" if data is None else data}
- n_train = {metrics['n_train']}, n_val = {metrics['n_val']}
- Epochs: {metrics['epochs']} (best val loss at epoch {metrics['best_epoch']}), batch size {conf['batch_size']},
  AdamW lr {conf['learning_rate']} one-cycle, weight decay {conf['weight_decay']}, L1 loss, seed {conf['random_seed']}
- Architecture: `{m['name']}`, {m['alignn_layers']} ALIGNN + {m['gcn_layers']} GCN layers,
  hidden {m['hidden_features']}, {metrics['n_parameters']} parameters; cgcnn atom features
- Graph: `{conf['neighbor_strategy']}`, cutoff {conf['cutoff']} A, max {conf['max_neighbors']} neighbours,
  three-body cutoff {conf['three_body_cutoff']} A
- Training time: {metrics['train_seconds']} s on CPU ({metrics['torch_threads']} threads)

## Validation
- **val MAE = {metrics['val_mae']:.3f}** (all {metrics['n_val']} val structures, best-on-val weights)
- baseline (predict the train median) val MAE = {metrics['val_baseline_mae_train_median']:.3f}

The val split also chose the epoch, so its MAE is slightly optimistic. The test split was not
used; its MAE is for the project to measure.

## Use
`sc_inverse.screening.predictors.load_predictor("<this dir>")` (or `sc-inverse predict --model
<this dir>`); the shipped model is the default of `predict` and `screen`. Inputs are graphed with
the settings above; structures with elements outside the cgcnn table (Z > 100) or without
neighbours within the cutoff are rejected per structure.
"""
    path = out / "MODEL_CARD.md"
    path.write_text(text)
    return path
