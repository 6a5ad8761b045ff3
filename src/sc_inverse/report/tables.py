"""Text tables of results: the joined ``superconductors``/``thermo`` rows (``query``, ``run``)
and the per-candidate table of a screen (``screen --csv``)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from sc_inverse.records import CandidateRecord

COLUMNS = ("material_id", "formula", "spacegroup", "tc_K", "tc_mcmillan_K", "lambda",
           "omega_log_K", "dynamically_stable", "e_form_eV_per_atom", "e_above_hull_eV_per_atom",
           "e_phase_separation_eV_per_atom", "origin", "ml_tc_K", "dft_minus_ml_tc_K")


def format_rows(rows: list[dict], fmt: str) -> str:
    """Render query rows as an aligned table, JSON or CSV."""
    if fmt == "json":
        return json.dumps(rows, indent=1, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue().rstrip("\n")

    def cell(v):
        if isinstance(v, float):
            return f"{v:.3f}"
        return "-" if v is None else str(v)

    table = [list(COLUMNS)] + [[cell(r.get(c)) for c in COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
                     for row in table)


def write_screen_table(records: Sequence[CandidateRecord], path: Path) -> Path:
    """CSV with one row per candidate: id, formula, every prediction, every verdict, the MLIP
    phonon check (verdict, potential, softest q) when there is one, passed, rank."""
    pred_keys = sorted({k for r in records for k in r.predictions})
    verdict_keys = list(dict.fromkeys(k for r in records for k in r.verdicts))
    phonons = any(r.phonons for r in records)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "formula", *pred_keys, *(f"verdict:{k}" for k in verdict_keys),
                    *(["mlip_phonons", "mlip_phonon_potential", "mlip_softest_q"] if phonons else []),
                    "passed", "rank", "selected", "flags", "errors"])
        for r in records:
            ph = ([r.phonons.verdict, r.phonons.potential, r.phonons.softest_q] if r.phonons
                  else [None, None, None]) if phonons else []
            w.writerow([r.id, r.formula, *(r.predictions.get(k) for k in pred_keys),
                        *(r.verdicts.get(k) for k in verdict_keys), *ph, r.passed, r.rank, r.selected,
                        ";".join(r.flags), json.dumps(r.errors)])
    return path
