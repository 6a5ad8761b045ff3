import pytest
from pymatgen.core import Lattice, Structure

from sc_inverse.pipeline.funnel import (
    dft_gap_criterion,
    funnel_counts,
    select_for_dft,
    stage_timings,
)
from sc_inverse.records import CandidateRecord


def _rec(i, species, passed=True, rank=None, flags=()):
    s = Structure(Lattice.cubic(3.0 + 0.1 * i), species, [[0, 0, 0], [0.5, 0.5, 0.5]][: len(species)])
    return CandidateRecord.from_structure(s, id=f"c{i}", passed=passed, rank=rank, flags=list(flags))


def test_select_skips_missing_pseudos_and_fills_slot_with_next_survivor():
    recs = [_rec(0, ["Nb", "N"], rank=1), _rec(1, ["Al"], rank=3), _rec(2, ["Mg", "B"], rank=2),
            _rec(3, ["Al"], passed=False), _rec(4, ["Mg"], rank=4)]
    have = {"Al", "Mg", "B"}
    chosen, skipped = select_for_dft(recs, 2, lambda r: sorted(
        {e.symbol for e in r.get_structure().composition.elements} - have))
    assert [r.id for r in chosen] == ["c2", "c1"]  # by rank, Nb-N skipped, c3 did not pass
    assert skipped == [{"id": "c0", "formula": "NbN", "note": "skipped: no pseudopotential for N, Nb",
                        "predictions": {}}]


def test_funnel_counts_follow_the_paper_stages():
    gen = [_rec(0, ["Nb", "N"]), _rec(1, ["Al"], flags=["atoms_too_close"]), _rec(2, ["Mg", "B"])]
    screened = [gen[0], gen[2]]
    rows = [
        {"id": "c0", "formula": "NbN", "tc_K": 9.0, "dynamically_stable": True},
        {"id": "c2", "formula": "MgB2", "tc_K": 20.0, "dynamically_stable": True},
        {"id": "c5", "formula": "VN2", "tc_K": 3.0, "dynamically_stable": False},
        {"id": "c6", "formula": "X", "note": "skipped: no pseudopotential for X"},
    ]
    c = funnel_counts(gen, screened, rows, training_formulas={"MgB2"})
    assert c == {"generated": 3, "structurally valid": 2, "passed ML screen": 2, "sent to DFT": 3,
                 "DFT completed": 3, "DFT T_c > 5 K": 2, "dynamically stable & novel": 1}


def _screen_summary(available: bool, label: str = "gap_eV < 0.05") -> dict:
    return {"criteria": [
        {"criterion": "tc_K > 5", "key": "tc_K", "available": True},
        {"criterion": label, "key": "gap_eV", "available": available,
         "reason_unavailable": None if available else "optb88vdw_bandgap_radius: offline"},
    ]}


def _gap_rows():
    return [
        {"id": "c0", "formula": "NbN", "tc_K": 9.0, "dynamically_stable": True, "gap_dft_eV": 0.0},
        {"id": "c1", "formula": "Si", "tc_K": 6.0, "dynamically_stable": True, "gap_dft_eV": 0.63},
        {"id": "c2", "formula": "VN", "tc_K": 7.0, "dynamically_stable": True},  # no gap field
        {"id": "c3", "formula": "TiN", "note": "DFT failed", "gap_dft_eV": 0.0},  # scf ran, EPC not
        {"id": "c6", "formula": "X", "note": "skipped: no pseudopotential for X"},
    ]


def test_gap_from_dft_stands_in_for_an_unavailable_ml_gap_model():
    gen = [_rec(i, ["Al"]) for i in range(4)]
    rows = _gap_rows()
    gap = dft_gap_criterion(rows, _screen_summary(available=False))
    assert gap["applied"] and gap["evaluated_from"] == "the DFT scf"
    assert gap["ml_reason_unavailable"] == "optb88vdw_bandgap_radius: offline"
    assert (gap["n_pass"], gap["n_fail"], gap["n_not_evaluated"]) == (2, 1, 1)
    assert [r.get("gap_verdict") for r in rows] == ["pass", "fail", "not_evaluated", "pass", None]
    c = funnel_counts(gen, gen, rows, set(), gap["threshold_eV"])
    assert list(c)[4:] == ["DFT completed", "DFT gap < 0.05 eV (scf)", "DFT T_c > 5 K",
                           "dynamically stable & novel"]
    # Si (0.63 eV) fails, VN has no gap: a missing value never passes
    assert c["DFT completed"] == 3 and c["DFT gap < 0.05 eV (scf)"] == 1 and c["DFT T_c > 5 K"] == 1


@pytest.mark.parametrize(("summary", "applied"), [
    (_screen_summary(available=True), False),  # the screen filtered on the ML gap already
    ({"criteria": [{"criterion": "tc_K > 5", "key": "tc_K", "available": True}]}, False),
    ({}, False),
    (_screen_summary(available=False, label="metallic"), True),
])
def test_gap_from_dft_is_applied_only_for_a_screen_gap_criterion_not_evaluated(summary, applied):
    rows = _gap_rows()
    gap = dft_gap_criterion(rows, summary)
    assert gap["applied"] is applied and gap["threshold_eV"] == 0.05
    assert rows[1]["gap_verdict"] == "fail"  # recorded either way


def test_gap_threshold_read_from_the_criterion_and_rows_without_gaps_not_applied():
    rows = _gap_rows()
    assert dft_gap_criterion(rows, _screen_summary(False, "gap_eV <= 1"))["n_pass"] == 3
    old = [{k: v for k, v in r.items() if k != "gap_dft_eV"} for r in _gap_rows()]
    gap = dft_gap_criterion(old, _screen_summary(available=False))  # rows from before the field
    assert not gap["applied"] and gap["n_not_evaluated"] == 4


def test_stage_timings_leave_out_stages_with_unknown_bounds():
    t = stage_timings({"start": 10.0, "collected": 40.0, "screened": 100.0}, now=160.0)
    assert t == {"generate": 30.0, "screen (ML + MLIP)": 60.0, "DFT (QE) + hull": 60.0, "total": 150.0}
    assert stage_timings({"start": 10.0, "collected": None, "screened": 100.0}, now=160.0) == {
        "DFT (QE) + hull": 60.0, "total": 150.0}
    assert stage_timings({}, now=1.0) == {}
