from pymatgen.core import Lattice, Structure

from sc_inverse.pipeline.funnel import funnel_counts, select_for_dft, stage_timings
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


def test_stage_timings_leave_out_stages_with_unknown_bounds():
    t = stage_timings({"start": 10.0, "collected": 40.0, "screened": 100.0}, now=160.0)
    assert t == {"generate": 30.0, "screen (ML + MLIP)": 60.0, "DFT (QE) + hull": 60.0, "total": 150.0}
    assert stage_timings({"start": 10.0, "collected": None, "screened": 100.0}, now=160.0) == {
        "DFT (QE) + hull": 60.0, "total": 150.0}
    assert stage_timings({}, now=1.0) == {}
