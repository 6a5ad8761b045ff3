"""screen_records end to end on constructed candidates (fast: fake T_c model, real EMT relaxation)."""

from __future__ import annotations

import math

import pytest
from ase.calculators.emt import EMT
from screening_testutils import FakeTcPredictor, b2, cu3al, fcc, isolated_atom

from sc_inverse.records import CandidateRecord
from sc_inverse.screening.relax import ElementalReferences, MlipRelaxer
from sc_inverse.screening.screen import screen_records
from sc_inverse.screening.triage import TrainingIndex

TC = {"predictor": "fake", "key": "tc_K", "comparison": ">", "threshold": 5.0}
GAP = {"predictor": "optb88vdw_bandgap_radius", "key": "gap_eV", "comparison": "<", "threshold": 0.05}
EFORM = {"predictor": "mlip", "key": "e_form_eV_per_atom", "comparison": "<", "threshold": 0.5}


class CountingRelaxer(MlipRelaxer):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.seen: list[str] = []

    def relax_many(self, structures, progress=False):
        self.seen += [s.composition.reduced_formula for s in structures]
        return super().relax_many(structures, progress)


@pytest.fixture
def emt(tmp_path):
    relaxer = CountingRelaxer(EMT(), steps=200)
    return relaxer, ElementalReferences(relaxer, cache_file=tmp_path / "emt_refs.json")


def _records():
    cu_rich = cu3al()
    dup = cu3al()
    dup.make_supercell([1, 1, 2])
    structs = {
        "cu3al": cu_rich,  # T_c 7.5 -> passes
        "cu3al-dup": dup,  # duplicate of cu3al
        "cual": b2(),  # T_c 5.0 -> fails (not > 5)
        "cu": fcc("Cu", 3.62),  # T_c 10 -> passes, ranked first
        "ag": fcc("Ag", 4.1),  # NaN prediction -> never passes
        "lonely": isolated_atom(),  # rejected by the (real) graph builder of a real model? fake: T_c 10
        "known": fcc("Ni", 3.52),  # in the (test) training index -> excluded
    }
    return [CandidateRecord.from_structure(s, id=k, origin="generated") for k, s in structs.items()]


def _screen(emt, **kw):
    relaxer, refs = emt
    index = TrainingIndex.from_pairs([("train-Ni", fcc("Ni", 3.52))])
    kw.setdefault("criteria", [TC, GAP, EFORM])
    return screen_records(_records(), predictors={"fake": FakeTcPredictor()}, relaxer=relaxer, references=refs,
                          training_index=index, **kw)


def test_screen_verdicts_ranks_and_summary(emt, monkeypatch):
    import socket

    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    recs, summary = _screen(emt, top_k=1)
    by = {r.id: r for r in recs}
    assert [r.id for r in recs] == [r.id for r in _records()]  # one record per input, same order

    # the gap model cannot be downloaded: not evaluated for everyone, loudly
    assert all(r.verdicts["gap_eV < 0.05"] == "not_evaluated" for r in recs)
    (ne,) = summary["not_evaluated_criteria"]
    assert ne["criterion"] == "gap_eV < 0.05" and "optb88vdw_bandgap_radius" in ne["reason"]
    crit = {c["criterion"]: c for c in summary["criteria"]}
    assert crit["gap_eV < 0.05"]["available"] is False and crit["gap_eV < 0.05"]["n_not_evaluated"] == len(recs)

    assert by["cu3al-dup"].flags == ["duplicate"] and by["cu3al-dup"].duplicate_of == "cu3al"
    assert by["cu3al-dup"].passed is False and by["cu3al-dup"].predictions == {}
    assert by["cual"].verdicts["tc_K > 5"] == "fail" and by["cual"].passed is False
    assert by["ag"].verdicts["tc_K > 5"] == "not_evaluated" and "non-finite" in by["ag"].errors["tc_K"]
    assert by["ag"].passed is False
    assert "known_structure" in by["known"].flags and by["known"].passed is False

    for rid in ("cu3al", "cu"):
        r = by[rid]
        assert r.passed is True and r.verdicts["e_form_eV_per_atom < 0.5"] == "pass", rid
        assert r.relaxation.steps >= 0 and r.relaxation.calculator == "EMT"
        assert math.isfinite(r.predictions["e_form_eV_per_atom"])
        assert "unrelaxed_structure" in r.provenance
    assert by["cu"].rank == 1 and by["cu3al"].rank == 2
    assert by["cu"].selected is True and by["cu3al"].selected is False  # top_k = 1
    assert summary["n_passed"] >= 2 and summary["n_selected"] == 1
    assert summary["n_duplicates"] == 1 and summary["n_known_structure"] == 1


def test_mlip_runs_only_on_survivors_of_cheap_criteria(emt):
    _screen(emt)
    relaxer, _ = emt
    assert sorted(relaxer.seen) == ["AlCu3", "Cu", "Cu"]  # cu3al, cu, lonely (fake model graphs it)
    assert "Ag" not in relaxer.seen and "AlCu" not in relaxer.seen and "Ni" not in relaxer.seen


def test_failing_energy_criterion_and_strict_mode(emt):
    strict_eform = {**EFORM, "threshold": -5.0}
    recs, _ = _screen(emt, criteria=[TC, strict_eform])
    assert not any(r.passed for r in recs)
    assert {r.id: r.verdicts["e_form_eV_per_atom < -5"] for r in recs}["cu"] == "fail"
    recs, summary = _screen(emt, strict=True)  # the unavailable gap model now blocks everyone
    assert not any(r.passed for r in recs) and summary["strict"] is True


def test_no_relax_marks_energy_criteria_not_evaluated(emt):
    recs, summary = _screen(emt, criteria=[TC, EFORM], relax=False)
    assert all(r.verdicts["e_form_eV_per_atom < 0.5"] == "not_evaluated" for r in recs)
    assert summary["not_evaluated_criteria"][0]["criterion"] == "e_form_eV_per_atom < 0.5"
    assert emt[0].seen == []
    assert {r.id for r in recs if r.passed} == {"cu3al", "cu", "lonely"}


def test_real_tiny_model_rejects_isolated_atom_without_aborting(tiny_model_dir, emt):
    crit = [{"predictor": str(tiny_model_dir), "key": "tc_K", "comparison": ">", "threshold": -1e9}]
    recs, summary = screen_records(_records(), criteria=crit, relax=False, training_index=TrainingIndex())
    by = {r.id: r for r in recs}
    assert by["lonely"].verdicts["tc_K > -1e+09"] == "not_evaluated"
    assert "graph rejected" in by["lonely"].errors["tc_K"] and by["lonely"].passed is False
    assert by["cu"].passed is True and by["ag"].passed is True
    assert summary["n_prediction_errors"] == 1


def test_unreadable_structure_is_reported(emt):
    recs = _records()[:2]
    recs.append(CandidateRecord(id="broken", structure={"lattice": "nonsense"}))
    out, summary = screen_records(recs, criteria=[TC], relax=False, predictors={"fake": FakeTcPredictor()},
                                  training_index=TrainingIndex())
    assert out[-1].passed is False and "structure" in out[-1].errors
    assert summary["n_unreadable"] == 1


def test_rescreening_does_not_reuse_stale_values(emt):
    first, _ = _screen(emt)
    cual = next(r for r in first if r.id == "cual")
    cual.predictions["e_form_eV_per_atom"] = -9.9  # as if an earlier screen had relaxed it
    again, _ = screen_records(first, criteria=[TC, EFORM], predictors={"fake": FakeTcPredictor()},
                              relaxer=emt[0], references=emt[1], training_index=TrainingIndex())
    r = next(r for r in again if r.id == "cual")
    assert "e_form_eV_per_atom" not in r.predictions
    assert r.verdicts["e_form_eV_per_atom < 0.5"] == "not_evaluated" and r.passed is False


def test_unavailable_mlip_calculator_is_not_evaluated_for_all(tmp_path):
    relaxer = MlipRelaxer("NotAPotential")
    refs = ElementalReferences(relaxer, cache_file=tmp_path / "r.json")
    recs, summary = screen_records(_records(), criteria=[TC, EFORM], predictors={"fake": FakeTcPredictor()},
                                   relaxer=relaxer, references=refs, training_index=TrainingIndex())
    assert all(r.verdicts["e_form_eV_per_atom < 0.5"] == "not_evaluated" for r in recs)
    (ne,) = summary["not_evaluated_criteria"]
    assert "NotAPotential" in ne["reason"]
    assert {r.id for r in recs if r.passed} == {"cu3al", "cu", "lonely"}  # not strict


def test_one_pass_rule():
    from sc_inverse.screening.criteria import parse_criteria
    from sc_inverse.screening.screen import passes

    tc, gap = parse_criteria([TC, GAP])
    ok = {tc.label: "pass", gap.label: "pass"}
    assert passes(ok, [tc, gap], {}, strict=False)
    assert not passes({**ok, tc.label: "fail"}, [tc, gap], {}, strict=False)
    missing = {**ok, gap.label: "not_evaluated"}
    assert not passes(missing, [tc, gap], {}, strict=False)  # this candidate's own value is missing
    unavailable = {gap.label: "model cannot be downloaded"}
    assert passes(missing, [tc, gap], unavailable, strict=False)  # nobody could be evaluated
    assert not passes(missing, [tc, gap], unavailable, strict=True)


def test_screen_config_parses_and_orders_criteria():
    from sc_inverse.errors import InputError
    from sc_inverse.screening.screen import ScreenConfig

    cfg = ScreenConfig(criteria=[EFORM, TC])
    assert [c.label for c in cfg.criteria] == ["tc_K > 5", "e_form_eV_per_atom < 0.5"]  # ML first
    assert [c.label for c in cfg.ml_criteria] == ["tc_K > 5"] and len(cfg.mlip_criteria) == 1
    assert [c.key for c in ScreenConfig().criteria] == ["tc_K", "gap_eV", "e_form_eV_per_atom",
                                                        "mlip_min_frequency_THz"]
    with pytest.raises(InputError, match="criteria"):
        ScreenConfig(criteria=[{"key": "tc_K", "comparison": "~", "threshold": 1}])
