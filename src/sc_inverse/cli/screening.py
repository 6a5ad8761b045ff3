"""Click commands of the screening concern: ``train-predictor``, ``predict``, ``screen``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from sc_inverse.cli.options import device_option
from sc_inverse.cli.preflight import check_output_dir, check_output_file
from sc_inverse.records import load_records, save_records
from sc_inverse.report.tables import write_screen_table
from sc_inverse.screening.criteria import load_criteria
from sc_inverse.screening.feature_model import train_feature_model
from sc_inverse.screening.predictors import load_predictor
from sc_inverse.screening.screen import predict_records, screen_records
from sc_inverse.screening.train import train_alignn


@click.command("train-predictor")
@click.option("--data", type=click.Path(exists=True, dir_okay=True), default=None,
              help="JSON/CSV of records with the target (and optional 'split'); default: packaged JARVIS-SC.")
@click.option("--target", default="tc_K", show_default=True, help="Record field to learn.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Model directory to write.")
@click.option("--epochs", type=int, default=150, show_default=True)
@click.option("--batch-size", type=int, default=None, help="Default 32.")
@click.option("--hidden", type=int, default=None, help="Hidden features (default 128).")
@click.option("--layers", type=int, default=None, help="ALIGNN and GCN layers each (default 4).")
@click.option("--lr", type=float, default=None, help="Peak one-cycle learning rate (default 1e-3).")
@click.option("--weight-decay", type=float, default=None, help="AdamW weight decay (default 1e-5).")
@click.option("--seed", type=int, default=None, help="Random seed (ALIGNN default 123, chgnet-hgb 0).")
@click.option("--kind", type=click.Choice(["alignn", "chgnet-hgb"]), default="alignn", show_default=True,
              help="alignn: train ALIGNN from scratch; chgnet-hgb: gradient boosting on frozen CHGNet "
                   "embeddings + composition features (seconds; ignores the ALIGNN options).")
def train_predictor(data, target, out_dir, epochs, batch_size, hidden, layers, lr, weight_decay, seed,
                    kind) -> None:
    """Train a property model (ALIGNN by default) and write its model directory with MODEL_CARD.md."""
    check_output_dir(out_dir, "--out")
    if kind == "chgnet-hgb":
        command = "sc-inverse " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("sc-inverse") else (
            f"sc-inverse train-predictor --kind chgnet-hgb --target {target} --out {out_dir}")
        metrics = train_feature_model(out_dir, target=target, data=data, seed=seed or 0, command=command)
        click.echo(json.dumps({"out": str(out_dir), **metrics}, indent=1))
        return

    overrides = {}
    if hidden:
        overrides["hidden_features"] = hidden
    if layers:
        overrides.update(alignn_layers=layers, gcn_layers=layers)
    training = {k: v for k, v in (("learning_rate", lr), ("weight_decay", weight_decay), ("random_seed", seed))
                if v is not None}
    command = "sc-inverse " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("sc-inverse") else None
    if command is None:
        parts = ["sc-inverse train-predictor", f"--target {target}", f"--out {out_dir}", f"--epochs {epochs}"]
        if data:
            parts.append(f"--data {data}")
        command = " ".join(parts)
    click.echo(f"training ALIGNN on {data or 'packaged JARVIS-SC train split'} for {epochs} epochs "
               f"(log: {Path(out_dir) / 'train.log'})")
    res = train_alignn(out_dir, target=target, data=data, epochs=epochs, batch_size=batch_size,
                       model_overrides=overrides or None, training_overrides=training or None,
                       command=command)
    click.echo(json.dumps({"out": str(res.out_dir), "val_mae": res.val_mae,
                           "val_baseline_mae": res.val_baseline_mae, "n_train": res.n_train,
                           "n_val": res.n_val, "seconds": round(res.seconds, 1)}, indent=1))


@click.command("predict")
@click.argument("structures", type=click.Path(exists=True))
@click.option("--model", "models", multiple=True,
              help="Model dir or name (ALIGNN, CHGNet-feature or ensemble dir, shipped name, ALIGNN2 "
                   "registry name); repeatable. Default: shipped T_c model (tc_ensemble_jarvis_sc).")
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True, help="Output JSON of records.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@device_option
def predict(structures, models, out, batch_size, device) -> None:
    """Predictions only (no relaxation, no criteria); records keep their id, T_c under tc_K in K.

    A record that cannot be scored (unreadable, unknown element, atoms closer than 0.5 Å, ...)
    is reported, keeps its reason in ``errors`` and is skipped; the others are predicted.
    """
    check_output_file(out, "--out")
    records = load_records(structures, keep_unreadable=True)
    preds = [load_predictor(m or None, device=device) for m in (models or (None,))]
    res = predict_records(records, preds, batch_size=batch_size, device=device, progress=True)
    save_records(res, out)
    n_fail = sum(1 for r in res if any(r.predictions.get(p.key) is None for p in preds))
    click.echo(f"{len(res)} records -> {out} ({', '.join(p.key for p in preds)}; {n_fail} with errors)")


@click.command("screen")
@click.argument("candidates", type=click.Path(exists=True))
@click.option("--criteria", "criteria_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON/YAML list of {predictor, key, comparison, threshold}; default: the paper's three.")
@click.option("--top", "top_k", type=int, default=None, help="Mark the K best survivors as selected.")
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True, help="Output JSON of records.")
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False), default=None,
              help="Also write a CSV table (default: OUT with .csv).")
@click.option("--no-relax", is_flag=True, help="Skip the MLIP relaxation stage (its criteria: not evaluated).")
@click.option("--calculator", default="CHGNet", show_default=True, help="atomate2 MLFF name for relaxation.")
@click.option("--keep-known", is_flag=True, help="Let training structures/compositions pass (flagged only).")
@click.option("--strict", is_flag=True, help="A criterion that cannot be evaluated fails everyone.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--rescue/--no-rescue", default=False, show_default=True,
              help="Soft-mode rescue of candidates the MLIP phonon check finds unstable: children are "
                   "added as new records (origin 'rescue', parent_id), parents kept.")
@device_option
def screen(candidates, criteria_file, top_k, out, csv_out, no_relax, calculator, keep_known, strict,
           batch_size, rescue, device) -> None:
    """Screen candidates: dedup, novelty, ALIGNN criteria, CHGNet relaxation of survivors, ranking.

    A record that cannot be scored (unreadable, unknown element, atoms closer than 0.5 Å, ...)
    is reported, keeps its reason in ``errors`` and is skipped; the others are screened.
    """
    check_output_file(out, "--out")
    check_output_file(csv_out or Path(out).with_suffix(".csv"), "--csv")
    records = load_records(candidates, keep_unreadable=True)
    criteria = load_criteria(criteria_file) if criteria_file else None
    res, summary = screen_records(records, criteria=criteria, top_k=top_k, relax=not no_relax,
                                  calculator=calculator, exclude_known=not keep_known, strict=strict,
                                  batch_size=batch_size, device=device, progress=True,
                                  rescue=rescue)
    out = Path(out)
    save_records(res, out)
    write_screen_table(res, Path(csv_out) if csv_out else out.with_suffix(".csv"))
    summary_path = out.with_name(out.stem + ".summary.json")
    summary_path.write_text(json.dumps(summary, indent=1))
    click.echo(f"{summary['n_input']} candidates: {summary['n_duplicates']} duplicates, "
               f"{summary['n_known_structure']} training structures, {summary['n_known_composition']} "
               f"training compositions; {summary['n_alive_after_ml']} alive after ALIGNN criteria; "
               f"{summary['relaxation']['n_relaxed']} relaxed; {summary['n_passed']} passed; "
               f"{summary['n_selected']} selected -> {out}")
    for c in summary["criteria"]:
        state = "evaluated" if c["available"] else f"NOT EVALUATED: {c['reason_unavailable'][:160]}"
        state += ", advisory: ranks, never rejects" if c["mode"] == "advisory" else ""
        click.echo(f"  {c['criterion']}: pass {c['n_pass']}, fail {c['n_fail']}, "
                   f"not evaluated {c['n_not_evaluated']} [{state}]")
    if "rescue" in summary:
        r = summary["rescue"]
        click.echo(f"  soft-mode rescue: {r.get('n_attempted', 0)} unstable tried, {r.get('n_rescued', 0)} "
                   f"rescued to a stable structure, {r.get('n_children', 0)} child records added")
    click.echo(f"summary -> {summary_path}")
