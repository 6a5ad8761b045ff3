"""Sampling throughput of the shipped CDVAE on CPU, and metric drop vs the full CDVAE schedule.

Prints measured numbers (no assertions). Example (2 cores)::

    python benchmarks/bench_sampling.py --threads 2 --n-fast 3000 --n-full 50 \
        --metrics-n 1000 --out bench.json --save-records cands.json

Throughput is measured end to end (latent sampling, Langevin decoding, conversion to pymatgen,
flags, re-encoding for the T_c head): what ``sc-inverse generate`` costs. Both schedules start
from the same latents (same seed), so the first ``n_full`` structures of each are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch


def run(n: int, steps: int, seed: int):
    from sc_inverse.generative.sample import generate_candidates

    t0 = time.perf_counter()
    recs = generate_candidates(n, seed=seed, steps_per_level=steps, progress=False)
    return recs, time.perf_counter() - t0


def main() -> None:
    from sc_inverse.generative.metrics import evaluate_records
    from sc_inverse.generative.sample import CDVAE_STEPS_PER_LEVEL, DEFAULT_STEPS_PER_LEVEL
    from sc_inverse.records import save_records

    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-fast", type=int, default=3000, help="structures at the shipped schedule")
    ap.add_argument("--n-full", type=int, default=50, help="structures at the CDVAE schedule (0: skip)")
    ap.add_argument("--fast-steps", type=int, default=DEFAULT_STEPS_PER_LEVEL)
    ap.add_argument("--metrics-n", type=int, default=0, help="metrics on the first N fast structures")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    ap.add_argument("--save-records", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result: dict = {"threads": args.threads, "cpu_count": os.cpu_count(), "load_avg_start": os.getloadavg()}

    def timed(label, n, steps):
        recs, dt = run(n, steps, args.seed)
        result[label] = {"steps_per_level": steps, "n": n, "seconds": round(dt, 1),
                         "structures_per_s": round(n / dt, 3),
                         "minutes_for_3000": round(3000 / (n / dt) / 60, 1),
                         "load_avg_after": os.getloadavg()}
        print(label, result[label], flush=True)
        return recs

    fast = timed("shipped", args.n_fast, args.fast_steps)
    if args.save_records:
        save_records(fast, args.save_records)
    if args.metrics_n:
        result["shipped"]["metrics"] = evaluate_records(fast[: args.metrics_n], n_coverage=args.metrics_n,
                                                        progress=False)
        print("shipped metrics", json.dumps(result["shipped"]["metrics"]), flush=True)
    if args.n_full:
        full = timed("cdvae_full", args.n_full, CDVAE_STEPS_PER_LEVEL)
        result["comparison_n"] = args.n_full
        result["comparison_shipped"] = evaluate_records(fast[: args.n_full], n_coverage=args.n_full, progress=False)
        result["comparison_full"] = evaluate_records(full, n_coverage=args.n_full, progress=False)
        print("same latents, shipped:", json.dumps(result["comparison_shipped"]), flush=True)
        print("same latents, full   :", json.dumps(result["comparison_full"]), flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
