"""Screening throughput: batched ALIGNN inference vs one structure at a time; CHGNet relax cost.

Prints measured numbers (no assertions). Run on an otherwise idle machine, e.g.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_screening.py --n 1000 --threads 2

The 1 000 structures are JARVIS-SC train+val cells (plus rattled copies to reach --n), i.e. the
kind of small cells the generator emits. Both loops use the same predictor and include graph
building; the "forward only" lines time the network alone on pre-built graphs.

Batched variants (``--batched``) are ``batch_size:max_triplets:fast``: ``64:none:0`` is the
earlier code path (64 structures per pass, alignn's own forward); the others cap each pass by
line-graph edges (triplets) and use :func:`~sc_inverse.screening.alignn_model.inference_forward`.
The one-at-a-time loop always runs the current default path with one structure per call.
"""

from __future__ import annotations

import argparse
import json
import os
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


def _caps(batch_size: int, max_triplets: int | None) -> str:
    return f"bs{batch_size}_cap{max_triplets or 'none'}"


def bench_alignn(model: str | None, n: int, batched: list[tuple[int, int | None, bool]], n_single: int,
                 rounds: int = 5) -> dict:
    """Interleaved rounds (single, then each batched variant) so a shared machine's load hits all alike.

    Each round times ``n_single`` structures one at a time (``predict([s])``: same predictor, same
    graph building, one structure per call) and all ``n`` structures batched; each batched variant
    is ``(batch_size, max_triplets, fast)``. Reported throughputs and speedups are medians over
    rounds; ``max_abs_diff`` compares each variant's predictions with the one-at-a-time ones.
    """
    import torch
    from alignn.torch_graph_builder import batch_torch_graph_pairs

    from sc_inverse.screening.alignn_model import (
        batched_forward,
        inference_forward,
        predict_structures,
        structure_to_graph,
    )
    from sc_inverse.screening.predictors import SHIPPED_ALIGNN_TC_MODEL, AlignnPredictor

    p = AlignnPredictor(model or SHIPPED_ALIGNN_TC_MODEL)
    structs = structures(n)
    p.predict(structs[:16], batch_size=16)  # warm-up
    res: dict = {"model": p.source, "n_structures": n, "rounds": rounds,
                 "n_parameters": sum(x.numel() for x in p.loaded.model.parameters())}
    single_sps: list[float] = []
    bsps: dict[str, list[float]] = {}
    single_ref = None
    for r in range(rounds):
        sub = structs[(r * n_single) % n:][:n_single]
        t = time.perf_counter()
        single = np.array([p.predict([s], batch_size=1)[0] for s in sub])
        single_sps.append(len(sub) / (time.perf_counter() - t))
        if r == 0:
            single_ref = (sub, single)
        for bs, cap, fast in batched:
            k = _caps(bs, cap) + ("" if fast else "_alignn_forward")
            t = time.perf_counter()
            predict_structures(p.loaded, structs, batch_size=bs, max_triplets=cap, fast=fast)
            bsps.setdefault(k, []).append(n / (time.perf_counter() - t))
    res["one_at_a_time_structures_per_s"] = float(np.median(single_sps))
    for (bs, cap, fast), (k, v) in zip(batched, bsps.items(), strict=True):
        check = predict_structures(p.loaded, single_ref[0], batch_size=bs, max_triplets=cap, fast=fast)[0]
        res[f"batched_{k}_structures_per_s"] = float(np.median(v))
        res[f"speedup_{k}"] = float(np.median(np.array(v) / np.array(single_sps)))
        res[f"max_abs_diff_{k}_vs_single_K"] = float(np.nanmax(np.abs(check - single_ref[1])))
    res["per_round_single_sps"] = [round(x, 1) for x in single_sps]
    res["per_round_batched_sps"] = {k: [round(x, 1) for x in v] for k, v in bsps.items()}

    # where the time goes: graph building vs network, on pre-built graphs
    m = min(n, 5 * n_single)
    t = time.perf_counter()
    pairs = [structure_to_graph(s, p.loaded.graph) for s in structs[:m]]
    res["graph_build_ms_per_structure"] = (time.perf_counter() - t) / m * 1e3
    res["triplets_per_structure"] = float(np.mean([lg.num_edges for _, lg in pairs]))
    res["bonds_per_structure"] = float(np.mean([g.num_edges for g, _ in pairs]))
    mdl = p.loaded.model
    with torch.inference_mode():
        for name, fwd in (("alignn_forward", lambda g, lg: mdl((g, lg, None))),
                          ("inference_forward", lambda g, lg: inference_forward(mdl, g, lg))):
            t = time.perf_counter()
            for i in range(n_single):
                fwd(*batch_torch_graph_pairs(pairs[i:i + 1]))
            res[f"forward_only_single_ms_{name}"] = (time.perf_counter() - t) / n_single * 1e3
            for cap in (2048, 8192, 32768):
                t = time.perf_counter()
                i = 0
                while i < m:
                    j, tot = i, 0
                    while j < m and (j == i or tot + pairs[j][1].num_edges <= cap):
                        tot += pairs[j][1].num_edges
                        j += 1
                    fwd(*batch_torch_graph_pairs(pairs[i:j]))
                    i = j
                res[f"forward_only_cap{cap}_ms_{name}"] = (time.perf_counter() - t) / m * 1e3
    t = time.perf_counter()
    for i in range(0, m, 64):
        batched_forward(p.loaded, pairs[i:i + 64])
    res["batched_forward_incl_batching_bs64_ms"] = (time.perf_counter() - t) / m * 1e3
    return res


def bench_default_model(n: int, n_single: int) -> dict:
    """The default T_c model (ensemble: ALIGNN seeds share graphs + CHGNet-feature member)."""
    from sc_inverse.screening.predictors import load_predictor

    p = load_predictor()
    structs = structures(n)
    p.predict(structs[:8])  # warm-up (CHGNet + magpie tables load)
    t = time.perf_counter()
    for s in structs[:n_single]:
        p.predict([s], batch_size=1)
    single = n_single / (time.perf_counter() - t)
    t = time.perf_counter()
    p.predict(structs, batch_size=256)
    batched = n / (time.perf_counter() - t)
    return {"model": p.source, "members": [m.source for m in getattr(p, "members", [p])],
            "one_at_a_time_structures_per_s": single, "batched_structures_per_s": batched,
            "speedup": batched / single}


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
    ap.add_argument("--batched", default="64:none:0,256:2048:1,256:4096:1,256:8192:1,256:16384:1",
                    help="comma list of batch_size:max_triplets(none):fast(0/1) variants")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chgnet", type=int, default=20, help="structures to relax with CHGNet (0 = skip)")
    ap.add_argument("--default-model", type=int, default=300,
                    help="structures for the default (ensemble) T_c model timing (0 = skip)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    variants = []
    for v in args.batched.split(","):
        bs, cap, fast = v.split(":")
        variants.append((int(bs), None if cap == "none" else int(cap), fast == "1"))
    out = {"load_average_before": list(os.getloadavg()),
           "machine": f"{platform.processor() or platform.machine()}, torch threads {args.threads}",
           "alignn": bench_alignn(args.model, args.n, variants, args.n_single, args.rounds)}
    if args.default_model:
        out["default_tc_model"] = bench_default_model(args.default_model, min(args.n_single, args.default_model))
    if args.chgnet:
        out["chgnet"] = bench_chgnet(args.chgnet)
    out["load_average_after"] = list(os.getloadavg())
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
