from jobflow import Flow
from pymatgen.core import Lattice, Structure

from sc_inverse.flows import InverseDesignMaker, dft_row, scaled_test_preset
from sc_inverse.qe.sets import get_preset
from sc_inverse.records import CandidateRecord, SymmetryInfo


def test_scaled_test_preset_keeps_al_grids_and_coarsens_q():
    al = Structure(Lattice([[0, 1.9844, 1.9844], [1.9844, 0, 1.9844], [1.9844, 1.9844, 0]]), ["Al"], [[0, 0, 0]])
    p = scaled_test_preset(al)
    assert p.kpoints_grid == (8, 8, 8) and p.la2f_kpoints_grid == (16, 16, 16)
    assert p.qpoints_grid == (2, 2, 2)
    big = Structure(Lattice.orthorhombic(4.0, 6.0, 12.0), ["Mg"], [[0, 0, 0]])
    assert scaled_test_preset(big).kpoints_grid == (6, 4, 2)
    assert scaled_test_preset(big).qpoints_grid == (2, 1, 1)
    odd = Structure(Lattice.orthorhombic(3.2, 3.7, 3.7), ["Mg"], [[0, 0, 0]])
    assert scaled_test_preset(odd).kpoints_grid == (7, 6, 6)
    assert scaled_test_preset(odd).qpoints_grid == (1, 2, 2)  # q must divide k for ph.x
    assert get_preset("test").qpoints_grid == (4, 4, 4)  # the Al acceptance preset is untouched
    assert scaled_test_preset(al, "paper") is get_preset("paper")


def test_flow_wiring(tmp_path):
    flow = InverseDesignMaker(n_candidates=3, top_k=1).make(tmp_path / "run")
    assert isinstance(flow, Flow)
    assert [j.name for j in flow.jobs] == ["generate candidates", "collect_candidates",
                                           "screen candidates", "dft_stage"]


def test_dft_row_merges_epc_hull_and_symmetry():
    s = Structure(Lattice.cubic(3), ["Nb", "N"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    rec = CandidateRecord.from_structure(s, id="c1", predictions={"tc_K": 7.0},
                                         symmetry=SymmetryInfo(spacegroup_before="P1", spacegroup_after="Pm-3m"))
    row = dft_row(rec, "c1", {"lambda_": 0.8, "tc_K": 10.0, "omega_log_K": 300.0, "dynamically_stable": True,
                              "formula_pretty": "NbN"}, {"e_form_eV_per_atom": -1.0, "e_above_hull_eV_per_atom": 0.0})
    assert row["tc_K"] == 10.0 and row["ml_tc_K"] == 7.0 and row["spacegroup_after"] == "Pm-3m"
    assert row["e_above_hull_eV_per_atom"] == 0.0
    assert "failed" in dft_row(rec, "c1", None, None)["note"]
