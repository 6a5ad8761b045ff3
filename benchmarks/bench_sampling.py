"""Sampling throughput of the shipped CDVAE on CPU, and metric drop vs the full CDVAE schedule.

Prints measured numbers (no assertions). Example (2 cores)::

    OMP_NUM_THREADS=2 python benchmarks/bench_sampling.py --threads 2 --n-fast 3000 \
        --n-full 100 --metrics-n 100 --out bench.json

Throughput is measured end to end (latent sampling, Langevin decoding, conversion to pymatgen,
flags, re-encoding for the T_c head): what `sc-inverse generate` costs. The metric comparison
uses the same seed and number of structures for both schedules.
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
    dt = time.perf_counter() - t0
    return recs, dt


def main() -> None:
    from sc_inverse.generative.sample import CDVAE_STEPS_PER_LEVEL, DEFAULT_STEPS_PER_LEVEL

    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-fast", type=int, default=3000, help="structures at the shipped schedule")
    ap.add_argument("--n-full", type=int, default=50, help="structures at the CDVAE schedule")
    ap.add_argument("--fast-steps", type=int, default=DEFAULT_STEPS_PER_LEVEL)
    ap.add_argument("--metrics-n", type=int, default=0, help="also compare metrics on this many")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result = {"threads": args.threads, "cpu_count": os.cpu_count(),
              "load_avg_start": os.getloadavg()}
    for label, n, steps in (("shipped", args.n_fast, args.fast_steps),
                            ("cdvae_full", args.n_full, CDVAE_STEPS_PER_LEVEL)):
        recs, dt = run(n, steps, args.seed)
        result[label] = {"steps_per_level": steps, "n": n, "seconds": round(dt, 1),
                         "structures_per_s": round(n / dt, 3),
                         "minutes_for_3000": round(3000 / (n / dt) / 60, 1)}
        print(label, result[label], flush=True)
        if args.metrics_n:
            from sc_inverse.generative.metrics import evaluate_records

            m = evaluate_records(recs[: args.metrics_n], n_coverage=args.metrics_n, progress=False)
            result[label]["metrics"] = m
            print(label, json.dumps(m), flush=True)
    result["load_avg_end"] = os.getloadavg()
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
