"""Figures mirroring Wines, Xie & Choudhary (JPCL 2023), drawn with matplotlib (Agg).

Each function takes plain data (structures, numbers, dicts) and writes one PNG whose axes are
labelled; none of them reads a store, so they are usable on any set of results.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from pymatgen.core import Element, Structure  # noqa: E402

#: row offset of the f-block rows drawn below the main table
_F_BLOCK_ROWS = {6: 8.5, 7: 9.5}


def _table_position(el: Element) -> tuple[float, float]:
    """(column, row) of an element in the usual 18-column layout with detached f-block."""
    if el.is_lanthanoid or el.is_actinoid:
        first = 57 if el.is_lanthanoid else 89
        row = 6 if el.is_lanthanoid else 7
        return 3 + (el.Z - first), _F_BLOCK_ROWS[row]
    return el.group, el.row


def element_hit_rates(
    structures: Sequence[Structure], values: Sequence[float | None], threshold: float
) -> dict[str, tuple[int, int]]:
    """Per element: (#compounds containing it with value > threshold, #compounds containing it).

    ``None``/NaN values are not counted at all (they were not evaluated).
    """
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for s, v in zip(structures, values, strict=True):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        for el in {e.symbol for e in s.composition.elements}:
            totals[el] += 1
            hits[el] += int(v > threshold)
    return {el: (hits[el], totals[el]) for el in totals}


def periodic_table_heatmap(
    rates: dict[str, tuple[int, int]], path: Path, title: str, min_count: int = 1
) -> Path:
    """Fig. 1b: P(property > threshold | compound contains element) on a periodic table."""
    fig, ax = plt.subplots(figsize=(13, 7))
    cmap = plt.get_cmap("viridis")
    for z in range(1, 104):
        el = Element.from_Z(z)
        col, row = _table_position(el)
        hit, tot = rates.get(el.symbol, (0, 0))
        text_color = "black"
        if tot >= min_count and tot > 0:
            face = cmap(hit / tot)
            label = f"{el.symbol}\n{hit / tot:.2f}\n({tot})"
            text_color = "white" if hit / tot < 0.45 else "black"
        else:
            face = "#eeeeee"
            label = el.symbol
        ax.add_patch(plt.Rectangle((col - 0.5, row - 0.5), 0.95, 0.95, color=face))
        ax.text(col - 0.03, row - 0.03, label, ha="center", va="center", fontsize=6.5, color=text_color)
    ax.set_xlim(0.4, 18.6)
    ax.set_ylim(10.2, 0.4)
    ax.set_xticks(range(1, 19))
    ax.set_yticks(range(1, 8))
    ax.set_xlabel("Group")
    ax.set_ylabel("Period")
    ax.set_title(title)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    fig.colorbar(sm, ax=ax, fraction=0.025, label="probability (count in parentheses)")
    return _save(fig, path)


def n_species(structure: Structure) -> int:
    return len(structure.composition.elements)


def packing_fraction(structure: Structure) -> float:
    """Sum of atomic-radius sphere volumes over the cell volume (radii: pymatgen atomic_radius)."""
    vol = 0.0
    for site in structure:
        for el, occ in site.species.items():
            r = el.atomic_radius or el.atomic_radius_calculated or 1.5
            vol += occ * 4.0 / 3.0 * math.pi * float(r) ** 3
    return vol / structure.volume


def formula_type_counts(structures: Iterable[Structure]) -> Counter[str]:
    """Counts of 'unary', 'binary', 'ternary', 'quaternary', '5+' compounds."""
    names = {1: "unary", 2: "binary", 3: "ternary", 4: "quaternary"}
    return Counter(names.get(n_species(s), "5+") for s in structures)


def structure_distributions(
    generated: Sequence[Structure], training: Sequence[Structure], path: Path
) -> Path:
    """Fig. 2: formula types, density and packing fraction, generated vs training."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    kinds = ["unary", "binary", "ternary", "quaternary", "5+"]
    for offset, (label, structs) in zip((-0.2, 0.2), (("training", training), ("generated", generated)), strict=True):
        counts = formula_type_counts(structs)
        total = max(1, len(structs))
        axes[0].bar(np.arange(len(kinds)) + offset, [counts[k] / total for k in kinds], width=0.4, label=label)
    axes[0].set_xticks(range(len(kinds)), kinds)
    axes[0].set_xlabel("Formula type (number of species)")
    axes[0].set_ylabel("Fraction of structures")
    axes[0].legend()
    for ax, fn, xlabel in (
        (axes[1], lambda s: s.density, "Density (g/cm³)"),
        (axes[2], packing_fraction, "Packing fraction"),
    ):
        data = {name: [float(fn(s)) for s in structs] for name, structs in (("training", training), ("generated", generated))}
        allv = [v for vs in data.values() for v in vs if np.isfinite(v)]
        bins = np.linspace(min(allv), max(allv), 40) if allv else 10
        for name, vs in data.items():
            ax.hist([v for v in vs if np.isfinite(v)], bins=bins, alpha=0.55, density=True, label=name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Probability density")
        ax.legend()
    fig.suptitle("Generated vs training structures")
    return _save(fig, path)


def tc_distributions(training_tc_K: Sequence[float], generated_tc_K: Sequence[float], path: Path) -> Path:
    """Fig. 3a: T_c of the training set (DFT) vs ML-predicted T_c of generated structures."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    vals = [v for v in list(training_tc_K) + list(generated_tc_K) if np.isfinite(v)]
    bins = np.linspace(min(0.0, *vals) if vals else 0, max(vals) if vals else 1, 40)
    ax.hist(list(training_tc_K), bins=bins, alpha=0.55, density=True, label="training (DFT)")
    ax.hist(list(generated_tc_K), bins=bins, alpha=0.55, density=True, label="generated (ML)")
    ax.set_xlabel("T$_c$ (K)")
    ax.set_ylabel("Probability density")
    ax.legend()
    ax.set_title("T$_c$ distributions")
    return _save(fig, path)


def lambda_vs_omega_log(
    lambdas: Sequence[float], omega_log_K: Sequence[float], tc_K: Sequence[float], path: Path,
    labels: Sequence[str] | None = None,
) -> Path:
    """Fig. 3b: λ vs ω_log of DFT-validated candidates, coloured by Allen–Dynes T_c."""
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    sc = ax.scatter(omega_log_K, lambdas, c=tc_K, cmap="plasma", s=60, edgecolors="k")
    for i, text in enumerate(labels or []):
        ax.annotate(text, (omega_log_K[i], lambdas[i]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    fig.colorbar(sc, ax=ax, label="T$_c$ (K)")
    ax.set_xlabel("ω$_{log}$ (K)")
    ax.set_ylabel("λ (electron–phonon coupling)")
    ax.set_title("DFT-validated candidates")
    if not lambdas:
        ax.text(0.5, 0.5, "no DFT results yet", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, path)


def funnel_chart(funnel: dict[str, int], path: Path) -> Path:
    """Counts at each stage of the pipeline, as a horizontal bar chart."""
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(funnel) + 1.5))
    names = list(funnel)[::-1]
    ax.barh(names, [funnel[n] for n in names], color="tab:blue")
    for i, n in enumerate(names):
        ax.text(funnel[n], i, f" {funnel[n]}", va="center")
    ax.set_xlabel("Number of structures")
    ax.set_ylabel("Stage")
    ax.set_title("Inverse-design funnel")
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
