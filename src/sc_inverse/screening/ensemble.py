"""Equal-weight mean of several predictors of the same target (ALIGNN seeds, feature models).

Why equal weights: with 105 val structures, weights fitted on val would overfit it and we have
no out-of-fold ALIGNN predictions on train to fit them honestly; a plain mean of members that
err differently is the standard, selection-free ensemble.

A model directory holds ``ensemble.json`` (``{"kind": "mean_ensemble", "target": "tc_K",
"members": [...]}``) and ``MODEL_CARD.md``. Members are model directories relative to the
ensemble directory (e.g. ``../alignn_tc_jarvis_sc``), absolute paths, or shipped model names.
A structure that any member rejects is rejected by the ensemble (NaN + the member's message),
so every reported value is the same model.

Write one with ``python -m sc_inverse.screening.ensemble OUT MEMBER [MEMBER ...]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from sc_inverse.errors import ModelLoadError
from sc_inverse.screening.predictors import Predictor

ENSEMBLE_FILE = "ensemble.json"
KIND = "mean_ensemble"


def is_ensemble_dir(path: str | Path) -> bool:
    return (Path(path) / ENSEMBLE_FILE).is_file()


def _member_ref(path: Path, member: str) -> str | Path:
    p = Path(member).expanduser()
    if not p.is_absolute():
        rel = (path / p).resolve()
        if rel.is_dir():
            return rel
    return p if p.is_dir() else member  # else: a shipped / registry name


class EnsemblePredictor(Predictor):
    """Mean of member predictors; all members must predict the same key."""

    def __init__(self, path: str | Path, source: str | None = None, key: str | None = None,
                 device: str | None = None):
        from sc_inverse.screening.predictors import load_predictor

        path = Path(path)
        spec_file = path / ENSEMBLE_FILE
        try:
            self.spec: dict[str, Any] = json.loads(spec_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"{spec_file}: cannot read ({exc})") from exc
        members = self.spec.get("members")
        if self.spec.get("kind") != KIND or not isinstance(members, list) or not members:
            raise ModelLoadError(f"{spec_file}: expected kind {KIND!r} and a non-empty 'members' list")
        self.source = source or str(path)
        self.key = key or self.spec.get("target") or "tc_K"
        self.members = []
        for m in members:
            ref = _member_ref(path, str(m))
            if isinstance(ref, Path) and is_ensemble_dir(ref) and ref.resolve() == path.resolve():
                raise ModelLoadError(f"{spec_file}: an ensemble cannot contain itself")
            try:
                self.members.append(load_predictor(ref, key=self.key, device=device))
            except ModelLoadError as exc:
                raise ModelLoadError(f"{spec_file}: member {m!r}: {exc}") from exc

    def __repr__(self) -> str:
        return f"EnsemblePredictor(key={self.key!r}, source={self.source!r}, members={len(self.members)})"

    def predict_members(
        self, structures: Sequence[Structure], batch_size: int = 64, device: str | None = None,
        progress: bool = False,
    ) -> list[tuple[np.ndarray, list[str | None]]]:
        """Every member's ``(values, errors)``, in member order.

        ALIGNN members with the same graph settings share one graph build per structure
        (graph building is ~20 % of an ALIGNN prediction).
        """
        from sc_inverse.screening.alignn_model import predict_structures_shared_graphs
        from sc_inverse.screening.predictors import AlignnPredictor

        structures = list(structures)
        out: list[tuple[np.ndarray, list[str | None]] | None] = [None] * len(self.members)
        groups: dict[tuple, list[int]] = {}
        for j, m in enumerate(self.members):
            if isinstance(m, AlignnPredictor):
                groups.setdefault((m.loaded.graph, device or m.device), []).append(j)
        for (_, dev), js in groups.items():
            for j in js:
                self.members[j].to_device(dev)
            res = predict_structures_shared_graphs([self.members[j].loaded for j in js], structures,
                                                   batch_size=batch_size, device=dev, progress=progress)
            for j, r in zip(js, res, strict=True):
                out[j] = r
        for j, m in enumerate(self.members):
            if out[j] is None:
                out[j] = m.predict_with_errors(structures, batch_size=batch_size, device=device,
                                               progress=progress)
        return out  # type: ignore[return-value]

    def predict_with_errors(
        self,
        structures: Sequence[Structure],
        batch_size: int = 64,
        device: str | None = None,
        progress: bool = False,
    ) -> tuple[np.ndarray, list[str | None]]:
        outs = self.predict_members(structures, batch_size=batch_size, device=device, progress=progress)
        vals = np.vstack([v for v, _ in outs])
        errors: list[str | None] = []
        for i in range(vals.shape[1]):
            bad = [f"{m.source}: {errs[i] or 'NaN'}" for m, (v, errs) in zip(self.members, outs, strict=True)
                   if errs[i] is not None or not math.isfinite(v[i])]
            errors.append("ensemble member failed: " + "; ".join(bad) if bad else None)
        mean = vals.mean(axis=0)
        mean[[e is not None for e in errors]] = np.nan
        return mean, errors


def write_ensemble(out_dir: str | Path, members: Sequence[str], target: str = "tc_K",
                   val_samples: list | None = None, train_samples: list | None = None,
                   command: str | None = None, notes: str | None = None) -> dict[str, Any]:
    """Write ``ensemble.json``, evaluate members and mean on the val split, write the card.

    ``notes`` (markdown) is appended to the card, e.g. baselines and what was tried.
    """
    from sc_inverse.screening.train import load_training_data

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / ENSEMBLE_FILE).write_text(json.dumps({"kind": KIND, "target": target, "members": list(members)},
                                                indent=2))
    if val_samples is None or train_samples is None:
        train_samples, val_samples = load_training_data(target)
    ens = EnsemblePredictor(out)
    structs = [s.structure for s in val_samples]
    y = np.array([s.y for s in val_samples])
    per = ens.predict_members(structs)
    vals = np.vstack([v for v, _ in per])
    ok = np.isfinite(vals).all(axis=0)
    member_mae = {str(m): float(np.mean(np.abs(v[ok] - y[ok]))) for m, v in zip(members, vals, strict=True)}
    mean = vals.mean(axis=0)
    metrics = {
        "target": target, "kind": KIND, "members": list(members), "member_val_mae": member_mae,
        "val_mae": float(np.mean(np.abs(mean[ok] - y[ok]))), "n_val": len(y), "n_val_failed": int((~ok).sum()),
        "val_baseline_mae_train_median": float(np.mean(np.abs(y - np.median([s.y for s in train_samples])))),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "val_predictions.json").write_text(json.dumps(
        [{"id": s.id, "target": s.y, "pred": float(p) if math.isfinite(p) else None,
          "members": [float(x) if math.isfinite(x) else None for x in vals[:, j]]}
         for j, (s, p) in enumerate(zip(val_samples, mean.tolist(), strict=True))]))
    rows = "\n".join(_member_row(out, m, mae) for m, mae in member_mae.items())
    (out / "MODEL_CARD.md").write_text(f"""# Mean ensemble: {target}

- Command: `{command or ' '.join(sys.argv)}`
- Members (equal weights, fixed before looking at val; a structure any member rejects is rejected):

| member | kind | how it was trained (its own card has the rest) | epochs (best) | train CV MAE | val MAE |
|---|---|---|---|---|---|
{rows}

## Validation
- **val MAE of the mean = {metrics['val_mae']:.3f}** ({metrics['n_val']} val structures,
  {metrics['n_val_failed']} failed)
- baseline (predict the train median) val MAE = {metrics['val_baseline_mae_train_median']:.3f}

Each member's card says how it was trained; the test split was never read.
{notes or ""}""")
    return metrics


def _member_row(out: Path, member: str, mae: float) -> str:
    """One card row from the member directory's metrics.json and the Command line of its card."""
    ref = _member_ref(out, member)
    metrics: dict[str, Any] = {}
    command = kind = ""
    if isinstance(ref, Path):
        kind = "ensemble" if is_ensemble_dir(ref) else (
            "chgnet_hgb" if (ref / "feature_model.json").is_file() else "alignn")
        with contextlib.suppress(OSError, json.JSONDecodeError):
            metrics = json.loads((ref / "metrics.json").read_text())
        with contextlib.suppress(OSError):
            command = next((ln.split("`")[1] for ln in (ref / "MODEL_CARD.md").read_text().splitlines()
                            if ln.startswith("- Command:") and ln.count("`") >= 2), "")
    epochs = f"{metrics['epochs']} ({metrics.get('best_epoch')})" if "epochs" in metrics else "-"
    cv = f"{metrics['cv_mae_train']:.3f}" if metrics.get("cv_mae_train") is not None else "-"
    return f"| `{member}` | {kind} | `{command}` | {epochs} | {cv} | {mae:.3f} |"


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write an equal-weight ensemble model directory.")
    ap.add_argument("out", help="ensemble directory to write")
    ap.add_argument("members", nargs="+", help="member dirs (relative to OUT, absolute) or shipped names")
    ap.add_argument("--target", default="tc_K")
    ap.add_argument("--notes", default=None, help="markdown file appended to the model card")
    args = ap.parse_args(argv)
    cmd = "python -m sc_inverse.screening.ensemble " + " ".join(sys.argv[1:] if argv is None else argv)
    notes = Path(args.notes).read_text() if args.notes else None
    print(json.dumps(write_ensemble(args.out, args.members, target=args.target, command=cmd, notes=notes),
                     indent=1))


if __name__ == "__main__":
    main()
