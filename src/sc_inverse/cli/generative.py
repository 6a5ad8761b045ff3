"""Click commands: ``train-generator``, ``generate``, ``evaluate-generator``.

Modules that import torch are imported inside the commands, so ``sc-inverse generate --help``
answers without loading torch.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import click

from sc_inverse.cli.options import ElementList, device_option, from_settings
from sc_inverse.cli.preflight import check_output_dir, check_output_file
from sc_inverse.data import load_jarvis_sc
from sc_inverse.generative.config import CDVAEConfig
from sc_inverse.generative.metrics import evaluate_records, reconstruction_match_rate
from sc_inverse.records import load_records, save_records


@click.command("train-generator")
@click.option("--data", default="jarvis", show_default=True,
              help="'jarvis' (packaged JARVIS-SC train/val split) or a records file/folder/CSV.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Checkpoint dir.")
@click.option("--epochs", default=1000, show_default=True)
@device_option
@click.option("--preset", default="medium", show_default=True, type=click.Choice(["cdvae", "medium", "small"]))
@click.option("--batch-size", default=64, show_default=True)
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--beta", default=None, type=float, help="KL weight (default: the preset's).")
@click.option("--dropout", default=None, type=float, help="Dropout in the property heads.")
@click.option("--patience", default=150, show_default=True, help="Early stopping (epochs).")
@click.option("--max-minutes", default=None, type=float, help="Stop after this wall time.")
@click.option("--val-fraction", default=0.1, show_default=True, help="For user data only.")
@click.option("--seed", default=0, show_default=True)
@click.option("--resume/--no-resume", default=False, show_default=True,
              help="Continue from OUT/train_state.pt.")
@click.option("--snapshot-every", default=None, type=int,
              help="Also keep the weights of every N-th epoch in OUT/snapshots/ (for selection by sample metrics).")
def train_generator(data, out_dir, epochs, device, preset, batch_size, lr, beta, dropout, patience,
                    max_minutes, val_fraction, seed, resume, snapshot_every):
    """Train the CDVAE generator; the best-on-validation weights go to OUT/model.pt."""
    check_output_dir(out_dir, "--out")
    from sc_inverse.generative.data import build_vocabulary, load_structures, split_items, to_items
    from sc_inverse.generative.train import fit

    if data == "jarvis":
        train_t, val_t = load_structures("jarvis", "train"), load_structures("jarvis", "val")
        elements = build_vocabulary([s for _, s, _ in train_t + val_t])
        train, val = to_items(train_t, elements), to_items(val_t, elements)
    else:
        triples = load_structures(data)
        elements = build_vocabulary([s for _, s, _ in triples])
        train, val = split_items(to_items(triples, elements), val_fraction, seed)
    overrides = {k: v for k, v in {"beta": beta, "dropout": dropout}.items() if v is not None}
    cfg = CDVAEConfig.preset(preset, elements=elements,
                             max_atoms=max(20, max(len(i.types) for i in train + val)), **overrides)
    meta = {"data": str(data), "preset": preset, "n_train": len(train), "n_val": len(val),
            "command": "sc-inverse " + " ".join(sys.argv[1:])}
    summary = fit(cfg, train, val, out_dir, epochs=epochs, device=device, seed=seed,
                  batch_size=batch_size, lr=lr, patience=patience, resume=resume,
                  max_minutes=max_minutes, meta=meta, snapshot_every=snapshot_every)
    (Path(out_dir) / "training_summary.json").write_text(json.dumps(summary, indent=1))
    click.echo(f"best epoch {summary['best_epoch']} val loss {summary['best_val'].get('loss', float('nan')):.4f} "
               f"({summary['stopped']}, {summary['epochs_run']} epochs) -> {out_dir}/model.pt")


@click.command("generate")
@click.option("--n", "n", default=3000, show_default=True, help="Number of structures.")
@click.option("--model", "model_dir", default=None, type=click.Path(file_okay=False),
              help="Checkpoint dir (default: settings.generator_model or the shipped one).")
@click.option("--steps-per-level", default=None, type=int,
              help="Langevin steps per noise level (CDVAE: 100; default: the fast schedule).")
@click.option("--step-lr", default=None, type=float, help="Langevin step size (default depends on steps).")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Output JSON.")
@click.option("--optimize-tc/--no-optimize-tc", default=False, show_default=True,
              help="Gradient ascent on the T_c head in latent space before decoding.")
@click.option("--opt-steps", default=20, show_default=True,
              help="Adam steps on z (100 collapses onto B/B-N cells: uniqueness 0.30).")
@click.option("--symmetrize/--no-symmetrize", default=None,
              help="Recover symmetry with spglib (records keep both space groups; "
                   f"{from_settings('symmetrize')}).")
@click.option("--prior", default="auto", show_default=True,
              type=click.Choice(["auto", "aggregate", "standard"]))
@device_option
@click.option("--batch-size", default=512, show_default=True)
@click.option("--threads", default=1, show_default=True, type=int,
              help="torch CPU threads; 0 = torch's default. On a busy 2-core machine 1 thread was "
                   "2x faster than 2 (3 000 structures: 352 s vs 720 s).")
@click.option("--elements", type=ElementList(), default=None,
              help="Comma-separated chemical space, e.g. 'Mg,B,C,Al' (default: the model's whole vocabulary).")
def generate(n, model_dir, steps_per_level, step_lr, seed, out, optimize_tc, opt_steps, symmetrize,
             prior, device, batch_size, threads, elements):
    """Sample new crystals; writes a JSON list of CandidateRecords."""
    check_output_file(out, "--out")
    if threads:
        import torch

        torch.set_num_threads(threads)
    from sc_inverse.generative.sample import DEFAULT_STEPS_PER_LEVEL, generate_candidates

    records = generate_candidates(
        n, model_dir=model_dir, seed=seed, steps_per_level=steps_per_level or DEFAULT_STEPS_PER_LEVEL,
        step_lr=step_lr, optimize_tc=optimize_tc, opt_steps=opt_steps, symmetrize=symmetrize,
        batch_size=batch_size, device=device, prior=prior, elements=elements or None,
    )
    save_records(records, out)
    flags = Counter(f for r in records for f in r.flags)
    click.echo(f"wrote {len(records)} structures to {out}; flagged: {dict(flags) or 'none'}")


@click.command("evaluate-generator")
@click.option("--input", "input_path", required=True, type=click.Path(exists=True),
              help="Generated records (output of `generate`).")
@click.option("--model", "model_dir", default=None, type=click.Path(file_okay=False),
              help="Checkpoint for the T_c head (default: shipped).")
@click.option("--reference", default="test", show_default=True, type=click.Choice(["test", "val"]),
              help="JARVIS-SC split for coverage and Wasserstein distances.")
@click.option("--n-coverage", default=1000, show_default=True, help="Generated structures fingerprinted.")
@click.option("--reconstruction", "n_recon", default=0, show_default=True,
              help="Also measure encode->decode match rate on this many reference structures.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Metrics JSON.")
def evaluate_generator(input_path, model_dir, reference, n_coverage, n_recon, out):
    """Validity, uniqueness, novelty, COV-R/P, Wasserstein distances, fraction T_c > 5 K."""
    check_output_file(out, "--out")
    records = load_records(input_path)
    metrics = evaluate_records(records, model_dir, reference, n_coverage)
    if n_recon:
        from sc_inverse.generative.model import load_model

        model, _ = load_model(model_dir)
        ref = [r["structure"] for r in load_jarvis_sc(reference)][:n_recon]
        metrics["reconstruction"] = reconstruction_match_rate(model, ref)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(metrics, indent=1))
    click.echo(json.dumps(metrics, indent=1))
    click.echo(f"metrics -> {out}", err=True)
