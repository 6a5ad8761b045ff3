"""MLIP phonon pre-screen: verdict logic, the filter/advisory switch, the screen stage (EMT), real CHGNet."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from ase.calculators.emt import EMT
from pymatgen.core import Lattice, Structure
from screening_testutils import FakeTcPredictor, b2, cu3al, fcc

from sc_inverse.errors import InputError, ModelLoadError
from sc_inverse.records import CandidateRecord
from sc_inverse.report.tables import write_screen_table
from sc_inverse.screening.criteria import (
    PHONON_CRITERION,
    PHONON_KEY,
    Criterion,
    default_criteria,
    load_criteria,
    parse_criteria,
)
from sc_inverse.screening.phonons import (
    DEFAULT_POTENTIAL,
    DEFAULT_TOLERANCE_THZ,
    PhononSettings,
    _softest,
    mlip_phonons,
    phonon_calculator,
    stability_verdict,
    supercell_dims,
)
from sc_inverse.screening.relax import ElementalReferences, MlipRelaxer
from sc_inverse.screening.screen import ScreenConfig, passes, run_screen
from sc_inverse.screening.triage import TrainingIndex

#: small, fast phonon settings for EMT tests (the verdicts below do not depend on them)
FAST = PhononSettings(mesh=8, min_supercell_length_A=7.0)


def bcc_cu(a: float = 2.87) -> Structure:
    """bcc Cu: dynamically unstable under EMT (soft zone-boundary mode), as in DFT."""
    return Structure(Lattice.cubic(a), ["Cu", "Cu"], [[0, 0, 0], [0.5, 0.5, 0.5]])


# --- verdict logic on synthetic spectra ---------------------------------------------------------

def test_acoustic_modes_at_gamma_are_excluded_and_the_softest_other_mode_is_found():
    q = np.array([[0, 0, 0], [0.25, 0, 0], [0.5, 0.5, 0]])
    f = np.array([[-0.4, -0.01, 0.02, 3.0, 3.1, 3.2],  # Γ: three near-zero acoustic (one noisy) + optical
                  [0.8, 0.9, 1.5, 3.0, 3.1, 3.2],
                  [1.2, 1.3, 2.0, 2.9, 3.0, 3.3]])
    fmin, qmin, gamma_opt = _softest(q, f)
    assert fmin == pytest.approx(0.8) and qmin == (0.25, 0.0, 0.0) and gamma_opt == pytest.approx(3.0)
    f[2, 0] = -2.0  # a real zone-boundary instability
    fmin, qmin, _ = _softest(q, f)
    assert fmin == pytest.approx(-2.0) and qmin == (0.5, 0.5, 0.0)
    f[0, 3] = -5.0  # an unstable optical mode at Γ is not mistaken for an acoustic one
    assert _softest(q, f)[0] == pytest.approx(-5.0)


@pytest.mark.parametrize(("fmin", "tol", "expected"), [
    (0.3, 0.5, "stable"), (-0.49, 0.5, "stable"), (-0.5, 0.5, "stable"), (-0.51, 0.5, "unstable"),
    (-0.2, -0.1, "unstable"), (None, 0.5, "not_evaluated"), (float("nan"), 0.5, "not_evaluated")])
def test_stability_verdict(fmin, tol, expected):
    assert stability_verdict(fmin, tol) == expected


def test_supercell_reaches_the_minimum_length_on_every_axis():
    s = Structure(Lattice.from_parameters(3.0, 4.5, 9.5, 90, 90, 120), ["Mg"], [[0, 0, 0]])
    assert supercell_dims(s, 9.0) == (3, 2, 1)
    assert supercell_dims(s, 9.5) == (4, 3, 1)


# --- criterion: shorthand, filter/advisory switch, pass rule ------------------------------------

def test_default_phonon_criterion_is_advisory_and_last():
    crit = {c.label: c for c in default_criteria()}
    c = crit[PHONON_CRITERION]
    assert (c.mode, c.stage, c.key, c.comparison, c.threshold) == (
        "advisory", "mlip", PHONON_KEY, ">=", -DEFAULT_TOLERANCE_THZ)
    assert ScreenConfig().criteria[-1].is_phonon  # cost order: after the energies


def test_criteria_file_switches_filter_and_advisory(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(f"criteria:\n  - {{key: tc_K, comparison: '>', threshold: 5, mode: advisory}}\n"
                 f"  - {{key: {PHONON_CRITERION}, mode: filter, threshold: -0.3}}\n")
    tc, ph = load_criteria(f)
    assert tc.mode == "advisory" and ph.mode == "filter" and ph.threshold == -0.3 and ph.label == PHONON_CRITERION
    (tmp_path / "c.json").write_text(json.dumps([{"predictor": "mlip_phonons"}]))
    (only,) = load_criteria(tmp_path / "c.json")
    assert only.is_phonon and only.mode == "advisory"
    with pytest.raises(InputError, match="mode"):
        parse_criteria([{"key": PHONON_CRITERION, "mode": "sometimes"}])


def test_advisory_criterion_never_decides_the_pass_rule():
    tc, ph = parse_criteria([{"key": "tc_K", "comparison": ">", "threshold": 5}, {"key": PHONON_CRITERION}])
    assert passes({tc.label: "pass", ph.label: "fail"}, [tc, ph], {}, strict=True)
    assert passes({tc.label: "pass", ph.label: "not_evaluated"}, [tc, ph], {}, strict=True)
    ph_filter = Criterion(key=PHONON_CRITERION, mode="filter")
    assert not passes({tc.label: "pass", ph.label: "fail"}, [tc, ph_filter], {}, strict=False)


# --- the phonon step itself (EMT: a real phonopy run in ~1 s) ------------------------------------

def test_emt_phonons_stable_fcc_and_unstable_bcc_copper():
    ok = mlip_phonons(fcc("Cu", 3.7), EMT(), FAST, potential="EMT")  # strained: re-relaxed first
    assert ok.error is None and ok.verdict() == "stable" and ok.min_frequency_THz > 0
    assert ok.spacegroup == "Fm-3m" and ok.relax_converged and ok.supercell == (3, 3, 3)
    assert ok.structure.lattice.a == pytest.approx(ok.structure.lattice.b)  # symmetry kept
    bad = mlip_phonons(bcc_cu(), EMT(), FAST, potential="EMT")
    assert bad.verdict() == "unstable" and bad.min_frequency_THz < -0.5
    assert bad.softest_q is not None and max(abs(x) for x in bad.softest_q) > 0  # not at Γ
    s = bad.summary()
    assert s["displacement_A"] == FAST.displacement_A and s["mesh"] == 8 and "structure" not in s


def test_failure_is_reported_not_raised():
    class Broken(EMT):
        def calculate(self, *a, **k):
            raise RuntimeError("boom")

    r = mlip_phonons(fcc("Cu", 3.6), Broken(), FAST, potential="broken")
    assert r.verdict() == "not_evaluated" and "boom" in r.error and r.min_frequency_THz is None


def test_unknown_potential_is_model_load_error():
    with pytest.raises(ModelLoadError):
        phonon_calculator("NotAPotential")


# --- the screen stage ---------------------------------------------------------------------------

TC = {"predictor": "fake", "key": "tc_K", "comparison": ">", "threshold": 5.0}
EFORM = {"predictor": "mlip", "key": "e_form_eV_per_atom", "comparison": "<", "threshold": 0.5}


@pytest.fixture
def emt_screen(tmp_path):
    relaxer = MlipRelaxer(EMT(), steps=200)
    refs = ElementalReferences(relaxer, cache_file=tmp_path / "emt_refs.json")
    recs = [CandidateRecord.from_structure(s, id=k, origin="generated") for k, s in
            {"cu3al": cu3al(), "cu-fcc": fcc("Cu", 3.62), "cu-bcc": bcc_cu(), "cual": b2()}.items()]

    def run(mode: str, rescue: bool = False):
        cfg = ScreenConfig(criteria=[TC, EFORM, {"key": PHONON_CRITERION, "mode": mode}], phonon_settings=FAST,
                           rescue=rescue)
        return run_screen(recs, cfg, predictors={"fake": FakeTcPredictor()}, relaxer=relaxer, references=refs,
                          training_index=TrainingIndex(), phonon_calculator=EMT())

    return run


def test_screen_records_phonons_advisory_ranks_unstable_last(emt_screen, tmp_path):
    out, summary = emt_screen("advisory")
    by = {r.id: r for r in out}
    bcc, cu = by["cu-bcc"], by["cu-fcc"]
    assert bcc.passed and bcc.verdicts[PHONON_CRITERION] == "fail"
    assert bcc.phonons.verdict == "unstable" and bcc.phonons.potential == "EMT" and bcc.phonons.mode == "advisory"
    assert bcc.phonons.min_frequency_THz == bcc.predictions[PHONON_KEY] < -0.5
    assert bcc.phonons.softest_q and bcc.phonons.settings["displacement_A"] == FAST.displacement_A
    assert cu.phonons.verdict == "stable" and by["cu3al"].phonons.verdict == "stable"
    # bcc Cu has the highest T_c (10 K, like fcc Cu) but ranks after Cu3Al (7.5 K): advisory ranking
    assert [r.id for r in sorted(out, key=lambda r: r.rank or 99) if r.rank] == ["cu-fcc", "cu3al", "cu-bcc"]
    # CuAl fails T_c: no phonons computed for it
    assert by["cual"].phonons is None and by["cual"].verdicts[PHONON_CRITERION] == "not_evaluated"
    crit = {c["criterion"]: c for c in summary["criteria"]}[PHONON_CRITERION]
    assert crit["mode"] == "advisory" and (crit["n_pass"], crit["n_fail"]) == (2, 1)
    assert summary["phonons"]["n_evaluated"] == 3 and summary["phonons"]["potential"] == "EMT"
    assert math.isfinite(summary["timings"]["phonons_s"])
    rows = list(csv.DictReader(write_screen_table(out, tmp_path / "s.csv").open()))
    row = next(r for r in rows if r["id"] == "cu-bcc")
    assert (row["mlip_phonons"], row["mlip_phonon_potential"], row["verdict:mlip_dynamically_stable"]) == (
        "unstable", "EMT", "fail") and float(row[PHONON_KEY]) < 0


def test_screen_records_phonons_as_filter_rejects_the_unstable_one(emt_screen):
    out, _ = emt_screen("filter")
    by = {r.id: r for r in out}
    assert not by["cu-bcc"].passed and by["cu-bcc"].rank is None
    assert by["cu-fcc"].passed and by["cu3al"].passed and by["cu-fcc"].phonons.mode == "filter"


def test_screen_rescue_adds_children_and_keeps_the_parent(emt_screen):
    """--rescue: bcc Cu (unstable under EMT) is kept and its soft-mode child, hcp Cu (measured:
    33.6 meV/atom lower, stable), is a new record screened like the rest; the others are untouched."""
    out, summary = emt_screen("advisory", rescue=True)
    by = {r.id: r for r in out}
    parent = by["cu-bcc"]
    assert parent.phonons.verdict == "unstable" and parent.origin == "generated"
    account = parent.provenance["rescue"]
    assert account["steps"] and account["reason"]
    children = [r for r in out if r.origin == "rescue"]
    assert [c.id for c in children] == account["children"]
    assert summary["rescue"] == {"n_attempted": 1, "n_children": 1, "n_rescued": 1}
    (child,) = children
    assert child.provenance["rescue"]["spacegroup"] == "P6_3/mmc" and child.phonons.verdict == "stable"
    assert summary["n_input"] == 4 and len(out) == 4 + len(children)
    for c in children:
        assert c.parent_id in {"cu-bcc", *(x.id for x in children)} and c.id.startswith("cu-bcc-r")
        assert c.provenance["rescue"]["energy_after_eV_per_atom"] < c.provenance["rescue"]["energy_before_eV_per_atom"]
        assert c.verdicts  # screened itself
    assert "rescue" not in by["cu-fcc"].provenance


def test_no_relaxation_means_no_phonons(tmp_path):
    recs = [CandidateRecord.from_structure(fcc("Cu", 3.62), id="cu")]
    cfg = ScreenConfig(criteria=[TC, {"key": PHONON_CRITERION}], relax=False)
    (out,), summary = run_screen(recs, cfg, predictors={"fake": FakeTcPredictor()}, training_index=TrainingIndex())
    assert out.verdicts[PHONON_CRITERION] == "not_evaluated" and out.passed and out.phonons is None
    assert summary["not_evaluated_criteria"][0]["criterion"] == PHONON_CRITERION


# --- real MLIP ----------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.ci
@pytest.mark.parametrize("potential", ["CHGNet", DEFAULT_POTENTIAL])
def test_real_mlip_phonons_of_fcc_aluminium_are_stable(potential):
    """Real CHGNet / SevenNet-MF-0 (weights in their wheels) at the default settings: fcc Al is
    stable (at 0.01 Å CHGNet puts a spurious -1.2 THz mode at X), ~5-10 s each."""
    al = Structure(Lattice.cubic(4.04), ["Al"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    r = mlip_phonons(al, phonon_calculator(potential), potential=potential)
    assert r.error is None and r.spacegroup == "Fm-3m"
    assert r.verdict() == "stable", r.summary()
    assert 0 < r.min_frequency_THz < 2.0  # the softest mode is acoustic near Γ, not a spurious optical one
