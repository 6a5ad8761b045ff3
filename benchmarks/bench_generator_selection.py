"""Choose a CDVAE checkpoint by sample metrics on the **validation** split (never test).

The training loop keeps the epoch with the lowest validation loss, but that loss is dominated by
the property heads (they overfit 846 crystals within ~100 epochs) while the score decoder keeps
improving; snapshots (``train-generator --snapshot-every N``) let us compare what actually matters
for generation. Prints one row per checkpoint (no assertions). Example::

    python benchmarks/bench_generator_selection.py /tmp/run/snapshots/epoch_* /tmp/run \
        --n 500 --seed 7 --out selection.json

Each checkpoint gets the aggregate-posterior prior fitted on the train split (as ``fit`` does for
the best epoch), then ``--n`` structures at the shipped Langevin schedule, evaluated against the
val split: uniqueness, SMACT validity, COV-R/P, density. The score printed last is
``cov_recall + uniqueness + compositional_validity`` (equal weights; all in [0, 1]).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

KEYS = ("uniqueness", "compositional_validity", "structural_validity", "novelty", "cov_recall",
        "cov_recall_structure_only", "cov_precision", "mean_density_generated_g_cm3", "wdist_num_elements")


def evaluate_checkpoint(model_dir: Path, n: int, seed: int, steps: int | None, reference: str) -> dict:
    from sc_inverse.generative.data import load_structures, to_items
    from sc_inverse.generative.metrics import evaluate_records
    from sc_inverse.generative.model import load_model
    from sc_inverse.generative.sample import DEFAULT_STEPS_PER_LEVEL, generate_candidates
    from sc_inverse.generative.train import refit_prior

    model, _ = load_model(model_dir)
    if not bool(model.prior_fitted) or not bool(model.nelem_counts.sum() > 0):
        refit_prior(model_dir, to_items(load_structures("jarvis", "train"), model.cfg.elements))
    t = time.perf_counter()
    recs = generate_candidates(n, model_dir=model_dir, seed=seed, progress=False,
                               steps_per_level=steps or DEFAULT_STEPS_PER_LEVEL)
    gen_s = time.perf_counter() - t
    m = evaluate_records(recs, model_dir=model_dir, reference=reference, n_coverage=n, progress=False)
    m["sampling_seconds"] = gen_s
    m["score"] = m["cov_recall"] + m["uniqueness"] + m["compositional_validity"]
    return m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+", type=Path, help="checkpoint dirs (each with model.pt)")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--steps-per-level", type=int, default=None)
    ap.add_argument("--reference", default="val", choices=["val"], help="selection never uses test")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = {}
    print("checkpoint".ljust(40), " ".join(k[:10].rjust(10) for k in KEYS), "score".rjust(7), flush=True)
    for d in args.dirs:
        m = evaluate_checkpoint(d, args.n, args.seed, args.steps_per_level, args.reference)
        rows[str(d)] = m
        print(str(d)[-40:].ljust(40), " ".join(f"{m[k]:10.3f}" for k in KEYS), f"{m['score']:7.3f}", flush=True)
        if args.out:
            args.out.write_text(json.dumps(rows, indent=1))
    best = max(rows, key=lambda k: rows[k]["score"])
    print(f"best on {args.reference}: {best} (score {rows[best]['score']:.3f})")


if __name__ == "__main__":
    main()
