"""Generator metrics: validity, uniqueness, novelty, coverage, property statistics.

Definitions (CDVAE's, Xie et al. 2022, where one exists):

* structural validity: shortest interatomic distance (periodic images included) > 0.5 Å and
  cell volume > 0.1 Å³;
* compositional validity: SMACT charge neutrality + Pauling electronegativity test, alloys of
  metals accepted (``smact.screening.smact_validity``);
* uniqueness: distinct structures (StructureMatcher stol 0.5, ltol 0.3, angle_tol 10) among the
  valid ones / number of valid ones;
* novelty: valid structures matching no training structure of the same reduced formula / valid;
* COV-R / COV-P: CrystalNN site fingerprints ("ops" preset, averaged over sites) and Magpie
  composition fingerprints (standardised with training-set statistics); a reference crystal is
  covered when some valid generated crystal is within 0.4 (structure) and, independently, within
  10 (composition); COV-P counts generated crystals within both cutoffs of some reference,
  divided by all generated ones evaluated;
* Wasserstein distances of density (g/cm³) and number of distinct elements vs the reference set;
* fraction with predicted T_c > 5 K, from the records' ``tc_K`` prediction if a screening model
  filled it, else the generator's own T_c head (``tc_K_cdvae``).
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from functools import lru_cache

import numpy as np
from tqdm.auto import tqdm

from sc_inverse.data import load_jarvis_sc
from sc_inverse.errors import InputError

# matminer, smact, scipy.stats/spatial, pymatgen's StructureMatcher and torch (model, sample)
# are imported inside the functions that use them: each costs 0.5-3 s and the evaluate
# command needs only some of them

log = logging.getLogger(__name__)

STRUCT_CUTOFF = 0.4
COMP_CUTOFF = 10.0


def _matcher():
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)


def min_distance(structure) -> float:
    """Shortest distance between two atoms or an atom and its own periodic image (Å)."""
    dm = structure.distance_matrix
    np.fill_diagonal(dm, np.inf)
    d = float(dm.min()) if len(structure) > 1 else np.inf
    # own images: the shortest lattice vector (Niggli-reduced cell makes a, b, c the candidates)
    red = structure.lattice.get_niggli_reduced_lattice() if structure.volume > 1e-3 else structure.lattice
    return min(d, min(red.abc))


def structural_validity(structure) -> bool:
    if not (np.isfinite(structure.frac_coords).all() and np.isfinite(structure.lattice.matrix).all()):
        return False
    try:
        return structure.volume > 0.1 and min_distance(structure) > 0.5
    except Exception:  # noqa: BLE001 - a degenerate lattice is simply invalid
        return False


@lru_cache(maxsize=100_000)
def _smact_valid(formula: str) -> bool:
    from smact.screening import smact_validity

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return bool(smact_validity(formula, use_pauling_test=True, include_alloys=True))
        except Exception:  # noqa: BLE001 - elements without oxidation data fail the test
            return False


def compositional_validity(structure) -> bool:
    return _smact_valid(structure.composition.formula)


def unique_groups(structures) -> list[list[int]]:
    """Indices grouped by StructureMatcher equivalence (formula bucketed first, for speed)."""
    sm = _matcher()
    by_formula = defaultdict(list)
    for i, s in enumerate(structures):
        by_formula[s.composition.reduced_formula].append(i)
    groups: list[list[int]] = []
    for idx in by_formula.values():
        reps: list[list[int]] = []
        for i in idx:
            for g in reps:
                if sm.fit(structures[g[0]], structures[i]):
                    g.append(i)
                    break
            else:
                reps.append([i])
        groups.extend(reps)
    return groups


def novelty_flags(structures, reference) -> list[bool]:
    """True where a structure matches no reference structure of the same reduced formula."""
    sm = _matcher()
    ref = defaultdict(list)
    for r in reference:
        ref[r.composition.reduced_formula].append(r)
    return [not any(sm.fit(s, r) for r in ref.get(s.composition.reduced_formula, [])) for s in structures]


def _site_fp(structure):
    from matminer.featurizers.site import CrystalNNFingerprint

    fp = _crystalnn()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return np.mean([fp.featurize(structure, i) for i in range(len(structure))], axis=0)
        except Exception:  # noqa: BLE001 - CrystalNN fails on pathological cells
            return None
    _ = CrystalNNFingerprint  # keep import visible to readers


@lru_cache(maxsize=1)
def _crystalnn():
    from matminer.featurizers.site import CrystalNNFingerprint

    return CrystalNNFingerprint.from_preset("ops")


@lru_cache(maxsize=1)
def _magpie():
    from matminer.featurizers.composition import ElementProperty

    return ElementProperty.from_preset("magpie", impute_nan=True)


def comp_fingerprint(structure) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(_magpie().featurize(structure.composition), dtype=float)


def fingerprints(structures, progress: bool = False) -> tuple[list, np.ndarray]:
    it = structures
    if progress:
        it = tqdm(structures, desc="fingerprints")
    site, comp = [], []
    for s in it:
        site.append(_site_fp(s))
        comp.append(comp_fingerprint(s))
    return site, np.array(comp)


def coverage(gen_site, gen_comp, gen_valid, ref_site, ref_comp, comp_scale,
             struct_cutoff: float = STRUCT_CUTOFF, comp_cutoff: float = COMP_CUTOFF) -> dict:
    """COV-R and COV-P (see module docstring); ``comp_scale`` = (mean, std) for composition."""
    from scipy.spatial.distance import cdist

    mean, std = comp_scale
    keep = [i for i, (v, f) in enumerate(zip(gen_valid, gen_site, strict=True)) if v and f is not None]
    ref_ok = [i for i, f in enumerate(ref_site) if f is not None]
    if not keep or not ref_ok:
        return {"cov_recall": 0.0, "cov_precision": 0.0}
    gs = np.array([gen_site[i] for i in keep])
    gc = (gen_comp[keep] - mean) / std
    rs = np.array([ref_site[i] for i in ref_ok])
    rc = (ref_comp[ref_ok] - mean) / std
    ds, dc = cdist(gs, rs), cdist(gc, rc)
    recall = np.logical_and(ds.min(0) <= struct_cutoff, dc.min(0) <= comp_cutoff)
    precision = np.logical_and(ds.min(1) <= struct_cutoff, dc.min(1) <= comp_cutoff)
    return {"cov_recall": float(recall.sum() / len(ref_site)),
            "cov_precision": float(precision.sum() / len(gen_valid)),
            "cov_recall_structure_only": float((ds.min(0) <= struct_cutoff).sum() / len(ref_site)),
            "cov_recall_composition_only": float((dc.min(0) <= comp_cutoff).sum() / len(ref_site))}


def evaluate_structures(
    structures,
    train_structures,
    ref_structures,
    tc_pred_K: list[float | None] | None = None,
    n_coverage: int = 1000,
    progress: bool = True,
) -> dict:
    """All metrics as a JSON-ready dict (``ref_structures``: the test split by default)."""
    from scipy.stats import wasserstein_distance

    n = len(structures)
    struct_valid = [structural_validity(s) for s in structures]
    comp_valid = [compositional_validity(s) for s in structures]
    valid = [a and b for a, b in zip(struct_valid, comp_valid, strict=True)]
    valid_s = [s for s, v in zip(structures, struct_valid, strict=True) if v]
    groups = unique_groups(valid_s)
    uniq = len(groups) / max(1, len(valid_s))
    nov = novelty_flags(valid_s, train_structures)
    train_formulas = {s.composition.reduced_formula for s in train_structures}
    comp_novel = [s.composition.reduced_formula not in train_formulas for s in valid_s]

    sub = list(range(min(n, n_coverage)))
    gen_site, gen_comp = fingerprints([structures[i] for i in sub], progress)
    ref_site, ref_comp = fingerprints(ref_structures, progress)
    train_comp = np.array([comp_fingerprint(s) for s in train_structures])
    scale = (train_comp.mean(0), train_comp.std(0) + 1e-8)
    cov = coverage(gen_site, gen_comp, [valid[i] for i in sub], ref_site, ref_comp, scale)

    def density(s):
        return float(s.density)

    gen_v = [s for s, v in zip(structures, valid, strict=True) if v]
    out = {
        "n_generated": n,
        "structural_validity": float(np.mean(struct_valid)) if n else 0.0,
        "compositional_validity": float(np.mean(comp_valid)) if n else 0.0,
        "validity": float(np.mean(valid)) if n else 0.0,
        "uniqueness": uniq,
        "novelty": float(np.mean(nov)) if nov else 0.0,
        "composition_novelty": float(np.mean(comp_novel)) if comp_novel else 0.0,
        "cov_recall": cov["cov_recall"],
        "cov_precision": cov["cov_precision"],
        "cov_recall_structure_only": cov.get("cov_recall_structure_only"),
        "cov_recall_composition_only": cov.get("cov_recall_composition_only"),
        "n_coverage_evaluated": len(sub),
        "n_reference": len(ref_structures),
        "wdist_density": float(wasserstein_distance([density(s) for s in gen_v],
                                                    [density(s) for s in ref_structures])) if gen_v else None,
        "wdist_num_elements": float(wasserstein_distance([len(s.composition) for s in gen_v],
                                                         [len(s.composition) for s in ref_structures])) if gen_v else None,
        "mean_density_generated_g_cm3": float(np.mean([density(s) for s in gen_v])) if gen_v else None,
        "mean_density_reference_g_cm3": float(np.mean([density(s) for s in ref_structures])),
    }
    if tc_pred_K is not None:
        known = [t for t in tc_pred_K if t is not None]
        out["fraction_tc_above_5K"] = float(np.mean([t > 5.0 for t in known])) if known else None
        out["mean_predicted_tc_K"] = float(np.mean(known)) if known else None
    return out


def evaluate_records(records, model_dir=None, reference: str = "test", n_coverage: int = 1000,
                     progress: bool = True) -> dict:
    """Metrics of CandidateRecords against the packaged JARVIS-SC splits (train for novelty)."""
    if not records:
        raise InputError("no generated records to evaluate")
    structures = [r.get_structure() for r in records]
    tc = []
    missing = []
    for i, r in enumerate(records):
        val = r.predictions.get("tc_K", r.predictions.get("tc_K_cdvae"))
        tc.append(val)
        if val is None:
            missing.append(i)
    if missing:
        from sc_inverse.generative.model import load_model
        from sc_inverse.generative.sample import encode_structures

        model, _ = load_model(model_dir)
        try:
            import torch

            with torch.no_grad():
                vals = model.predict_tc_K(encode_structures(model, [structures[i] for i in missing])).tolist()
            for i, v in zip(missing, vals, strict=True):
                tc[i] = v
        except InputError as exc:  # elements outside the model's vocabulary
            log.warning("no T_c head prediction for some records: %s", exc)
    source = "generator T_c head" if all("tc_K" not in r.predictions for r in records) else "records' tc_K"
    train = [r["structure"] for r in load_jarvis_sc("train")]
    ref = [r["structure"] for r in load_jarvis_sc(reference)]
    out = evaluate_structures(structures, train, ref, tc, n_coverage, progress)
    out["reference_split"] = reference
    out["tc_source"] = source
    return out


def reconstruction_match_rate(model, structures, steps_per_level: int = 2, seed: int = 0) -> dict:
    """Fraction of ``structures`` whose encode→decode reconstruction by ``model`` (a CDVAE)
    matches (the uniqueness matcher) and the mean normalised RMS of the matches."""
    from sc_inverse.generative.sample import reconstruct  # torch: kept off this module's import

    sm = _matcher()
    recon = reconstruct(model, structures, steps_per_level, seed)
    rms = []
    for a, b in zip(structures, recon, strict=True):
        r = sm.get_rms_dist(a, b)
        if r is not None:
            rms.append(r[0])
    return {"match_rate": len(rms) / max(1, len(structures)),
            "mean_rms": float(sum(rms) / len(rms)) if rms else None, "n": len(structures)}
