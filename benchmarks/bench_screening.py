"""Screening throughput: batched ALIGNN inference vs one structure at a time; CHGNet relax cost.

Prints measured numbers (no assertions). Run on an otherwise idle machine, e.g.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_screening.py --n 1000 --threads 2

The 1 000 structures are JARVIS-SC train+val cells (plus rattled copies to reach --n), i.e. the
kind of small cells the generator emits. Both loops use the same predictor and include graph
building; the "forward only" lines time the network alone on pre-built graphs.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np


def structures(n: int, seed: int = 0):
    from sc_inverse.data import load_jarvis_sc

    base = [r["structure"] for r in load_jarvis_sc("train") + load_jarvis_sc("val")]
    rng = np.random.default_rng(seed)
    out = list(base[:n])
    while len(out) < n:
        s = base[int(rng.integers(len(base)))].copy()
        s.perturb(0.05)
        out.append(s)
    return out


def bench_alignn(model: str | None, n: int, batch_sizes: list[int], n_single: int, rounds: int = 5) -> dict:
    """Interleaved rounds (single, then each batch size) so a shared machine's load hits all alike.

    Each round times ``n_single`` structures one at a time and all ``n`` structures batched;
    the reported throughputs and speedups are medians over rounds.
    """
    import torch
    from alignn.torch_graph_builder import batch_torch_graph_pairs

    from sc_inverse.screening.alignn_model import structure_to_graph
    from sc_inverse.screening.predictors import load_predictor

    p = load_predictor(model)
    structs = structures(n)
    p.predict(structs[:16], batch_size=16)  # warm-up
    res: dict = {"model": p.source, "n_structures": n, "rounds": rounds,
                 "n_parameters": sum(x.numel() for x in p.loaded.model.parameters())}
    single_sps, batched_sps = [], {bs: [] for bs in batch_sizes}
    single_ref = None
    for r in range(rounds):
        sub = structs[(r * n_single) % n:][:n_single]
        t = time.perf_counter()
        single = np.array([p.predict([s], batch_size=1)[0] for s in sub])
        single_sps.append(len(sub) / (time.perf_counter() - t))
        if r == 0:
            single_ref = (sub, single)
        for bs in batch_sizes:
            t = time.perf_counter()
            p.predict(structs, batch_size=bs)
            batched_sps[bs].append(n / (time.perf_counter() - t))
    res["one_at_a_time_structures_per_s"] = float(np.median(single_sps))
    check = p.predict(single_ref[0], batch_size=max(batch_sizes))
    res["max_abs_diff_batched_vs_single_K"] = float(np.nanmax(np.abs(check - single_ref[1])))
    for bs in batch_sizes:
        res[f"batched_{bs}_structures_per_s"] = float(np.median(batched_sps[bs]))
        res[f"speedup_{bs}"] = float(np.median(np.array(batched_sps[bs]) / np.array(single_sps)))
    res["per_round_single_sps"] = [round(x, 1) for x in single_sps]
    res["per_round_batched_sps"] = {bs: [round(x, 1) for x in v] for bs, v in batched_sps.items()}

    # where the time goes: graph building vs network (one pass each)
    m = n_single
    t = time.perf_counter()
    pairs = [structure_to_graph(s, p.loaded.graph) for s in structs[:m]]
    res["graph_build_ms_per_structure"] = (time.perf_counter() - t) / m * 1e3
    with torch.inference_mode():
        t = time.perf_counter()
        for g, lg in pairs:
            p.loaded.model((g, lg, None))
        res["forward_only_single_ms"] = (time.perf_counter() - t) / m * 1e3
        bs = min(batch_sizes)
        t = time.perf_counter()
        for i in range(0, m, bs):
            g, lg = batch_torch_graph_pairs(pairs[i:i + bs])
            p.loaded.model((g, lg, None))
        res[f"forward_only_batched_{bs}_ms"] = (time.perf_counter() - t) / m * 1e3
    return res


def bench_chgnet(n: int) -> dict:
    from sc_inverse.screening.relax import ElementalReferences, MlipRelaxer

    rng = np.random.default_rng(1)
    structs = []
    for s in structures(200)[::7][:n]:  # strained + rattled: like an unrelaxed generator output
        s = s.copy()
        s.apply_strain(float(rng.uniform(-0.05, 0.08)))
        s.perturb(0.1)
        structs.append(s)
    relaxer = MlipRelaxer("CHGNet", steps=300)
    t = time.perf_counter()
    _ = relaxer.calculator
    load_s = time.perf_counter() - t
    relaxer.relax(structs[0])  # warm-up
    res = [relaxer.relax(s) for s in structs]
    ok = [r for r in res if r.error is None]
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        refs = ElementalReferences(relaxer, cache_file=f"{d}/refs.json")
        t = time.perf_counter()
        refs.energy_per_atom("Nb")
        ref_s = time.perf_counter() - t
    return {
        "n": len(structs), "n_ok": len(ok), "model_load_s": load_s,
        "seconds_per_structure_mean": float(np.mean([r.seconds for r in ok])),
        "seconds_per_structure_median": float(np.median([r.seconds for r in ok])),
        "steps_mean": float(np.mean([r.steps for r in ok])),
        "atoms_mean": float(np.mean([len(s) for s in structs])),
        "converged_fraction": float(np.mean([r.converged for r in ok])),
        "elemental_reference_s_per_element": ref_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="ALIGNN model (default: shipped T_c model)")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--n-single", type=int, default=100, help="structures timed one at a time per round")
    ap.add_argument("--batch-sizes", default="16,64")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chgnet", type=int, default=20, help="structures to relax with CHGNet (0 = skip)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    out = {"machine": f"{platform.processor() or platform.machine()}, torch threads {args.threads}",
           "alignn": bench_alignn(args.model, args.n, [int(b) for b in args.batch_sizes.split(",")], args.n_single,
                                 args.rounds)}
    if args.chgnet:
        out["chgnet"] = bench_chgnet(args.chgnet)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
