"""Equal-weight mean of several predictors of the same target (ALIGNN seeds, feature models).

Why equal weights: with 105 val structures, weights fitted on val would overfit it and we have
no out-of-fold ALIGNN predictions on train to fit them honestly; a plain mean of members that
err differently is the standard, selection-free ensemble.

A model directory holds ``ensemble.json`` (``{"kind": "mean_ensemble", "target": "tc_K",
"members": [...]}``) and ``MODEL_CARD.md``. Members are model directories relative to the
ensemble directory (e.g. ``../alignn_tc_jarvis_sc``), absolute paths, or shipped model names.
A structure that any member rejects is rejected by the ensemble (NaN + the member's message),
so every reported value is the same model.

Write one with ``python -m sc_inverse.screening.ensemble OUT MEMBER [MEMBER ...]``; the
predictor that reads it, :class:`~sc_inverse.screening.predictors.EnsemblePredictor`, sits
next to :func:`~sc_inverse.screening.predictors.load_predictor`, which loads its members.
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

from sc_inverse.screening.predictors import (
    ENSEMBLE_FILE,
    ENSEMBLE_KIND,
    EnsemblePredictor,
    is_ensemble_dir,
    member_ref,
)
from sc_inverse.screening.train import load_training_data


def write_ensemble(out_dir: str | Path, members: Sequence[str], target: str = "tc_K",
                   val_samples: list | None = None, train_samples: list | None = None,
                   command: str | None = None, notes: str | None = None) -> dict[str, Any]:
    """Write ``ensemble.json``, evaluate members and mean on the val split, write the card.

    ``notes`` (markdown) is appended to the card, e.g. baselines and what was tried.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / ENSEMBLE_FILE).write_text(json.dumps({"kind": ENSEMBLE_KIND, "target": target, "members": list(members)},
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
        "target": target, "kind": ENSEMBLE_KIND, "members": list(members), "member_val_mae": member_mae,
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
    ref = member_ref(out, member)
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
