"""Markdown summary + figures of one run folder (see :mod:`sc_inverse.runs`)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

from pymatgen.core import Structure

from sc_inverse.data import load_jarvis_sc
from sc_inverse.records import CandidateRecord, load_records
from sc_inverse.report import figures
from sc_inverse.runs import RunDir

logger = logging.getLogger(__name__)

#: Fig. 1b threshold of the paper (K)
HEATMAP_TC_K = 3.0


def _fmt(v, nd=2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def table_rows(dft_rows: list[dict]) -> list[dict]:
    """Table 1: DFT-validated candidates sorted by T_c (highest first); skipped ones last."""
    done = [r for r in dft_rows if r.get("tc_K") is not None]
    return sorted(done, key=lambda r: -r["tc_K"]) + [r for r in dft_rows if r.get("tc_K") is None]


def build_report(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write every figure and ``summary.md`` for a run folder; return the summary path."""
    run = RunDir(Path(run_dir))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    screened = load_records(run.screened) if run.screened.exists() else load_records(run.candidates)
    dft_rows: list[dict] = run.read_json(run.dft, default=[])
    funnel: dict = run.read_json(run.funnel, default={})
    figs = draw_figures(screened, dft_rows, funnel.get("counts", {}), out)
    summary = out / "summary.md"
    summary.write_text(summary_markdown(run.root, funnel, dft_rows, figs))
    logger.info("report written to %s", summary)
    return summary


def draw_figures(screened: list[CandidateRecord], dft_rows: list[dict], counts: dict[str, int],
                 out: Path) -> dict[str, Path]:
    """The paper's Fig. 1b, 2, 3a, 3b (+ the funnel when counted) as PNGs in ``out``;
    ``{caption: path}``."""
    screened = [r for r in screened if r.structure]  # unreadable --include records have none
    gen_structs = [r.get_structure() for r in screened]
    gen_tc = [r.predictions.get("tc_K") for r in screened]
    training = [r for r in load_jarvis_sc() if r["split"] in ("train", "val")]
    train_structs: list[Structure] = [r["structure"] for r in training]
    train_tc = [r["tc_K"] for r in training]

    figs = {
        "Fig. 1b — P(predicted T_c > 3 K | element), generated set": figures.periodic_table_heatmap(
            figures.element_hit_rates(gen_structs, gen_tc, HEATMAP_TC_K),
            out / "fig1b_element_heatmap.png",
            f"P(ML T$_c$ > {HEATMAP_TC_K:g} K | element) over {len(gen_structs)} generated structures",
        ),
        "Fig. 2 — formula types, density, packing fraction": figures.structure_distributions(
            gen_structs, train_structs, out / "fig2_structure_distributions.png"
        ),
        "Fig. 3a — T_c distributions": figures.tc_distributions(
            train_tc, [v for v in gen_tc if v is not None and math.isfinite(v)], out / "fig3a_tc_distributions.png"
        ),
    }
    validated = [r for r in dft_rows if r.get("lambda_") is not None]
    figs["Fig. 3b — λ vs ω_log of DFT-validated candidates"] = figures.lambda_vs_omega_log(
        [r["lambda_"] for r in validated],
        [r["omega_log_K"] for r in validated],
        [r["tc_K"] for r in validated],
        out / "fig3b_lambda_vs_omega_log.png",
        labels=[r.get("formula", "") for r in validated],
    )
    if counts:
        figs["Funnel"] = figures.funnel_chart(counts, out / "funnel.png")
    return figs


def criteria_from_dft_lines(entries: list[dict]) -> list[str]:
    """One line per screen criterion checked on the DFT results (the band gap from the scf):
    whether it stood in for the ML model in the funnel, and its tally."""
    if not entries:
        return []
    lines = ["## Criteria evaluated from DFT", ""]
    for e in entries:
        if e.get("applied"):
            role = ("evaluated from the DFT scf (the ML model was not available: "
                    f"{e.get('ml_reason_unavailable') or 'not evaluated'}); counted in the funnel")
        elif e.get("ml_model_available"):
            role = "evaluated by the ML screen; the DFT scf values are a cross-check"
        else:
            role = "recorded from the DFT scf (not a criterion of this screen, or no DFT gap)"
        lines.append(f"- `{e.get('criterion')}`: {role}. Pass {e.get('n_pass', 0)}, "
                     f"fail {e.get('n_fail', 0)}, not evaluated {e.get('n_not_evaluated', 0)}.")
    return [*lines, ""]


def summary_markdown(root: Path, funnel: dict, dft_rows: list[dict], figs: dict[str, Path]) -> str:
    """``summary.md``: funnel, timings, Table 1 and the figures (by file name, next to it)."""
    counts = funnel.get("counts", {})
    lines = ["# sc-inverse run report", "", f"Run folder: `{root}`", ""]
    if counts:
        lines += ["## Funnel", "", "| stage | count |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in counts.items()]
        lines.append("")
    lines += criteria_from_dft_lines(funnel.get("dft_criteria", []))
    timings = funnel.get("timings_s", {})
    if timings:
        lines += ["## Timings", "", "| stage | wall time (s) |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
        lines.append("")
    lines += [
        "## Table 1 — DFT-validated candidates",
        "",
        "| id | formula | T_c (K) | λ | ω_log (K) | dyn. stable | E_form (eV/atom) | E_above_hull (eV/atom) | space group before → after | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table_rows(dft_rows):
        lines.append(
            f"| {r.get('id')} | {r.get('formula')} | {_fmt(r.get('tc_K'))} | {_fmt(r.get('lambda_'), 3)} "
            f"| {_fmt(r.get('omega_log_K'), 1)} | {_fmt(r.get('dynamically_stable'))} "
            f"| {_fmt(r.get('e_form_eV_per_atom'), 3)} | {_fmt(r.get('e_above_hull_eV_per_atom'), 3)} "
            f"| {r.get('spacegroup_before') or '–'} → {r.get('spacegroup_after') or '–'} | {r.get('note') or ''} |"
        )
    if not dft_rows:
        lines.append("| – | no DFT results in this run | | | | | | | | |")
    lines += ["", "## Figures", ""]
    for caption, path in figs.items():
        lines += [f"### {caption}", "", f"![{caption}]({path.name})", ""]
    return "\n".join(lines)
