from pymatgen.core import Lattice, Structure

from sc_inverse.metadata import iter_jobs
from sc_inverse.pipeline.jobs import (
    candidate_preset,
    dft_row,
    dft_stage,
    reference_flows,
    scaled_test_preset,
)
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


def test_dft_row_merges_epc_hull_and_symmetry():
    s = Structure(Lattice.cubic(3), ["Nb", "N"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    rec = CandidateRecord.from_structure(s, id="c1", predictions={"tc_K": 7.0},
                                         symmetry=SymmetryInfo(spacegroup_before="P1", spacegroup_after="Pm-3m"))
    row = dft_row(rec, "c1", {"lambda_": 0.8, "tc_K": 10.0, "omega_log_K": 300.0, "dynamically_stable": True,
                              "formula_pretty": "NbN"}, {"e_form_eV_per_atom": -1.0, "e_above_hull_eV_per_atom": 0.0})
    assert row["tc_K"] == 10.0 and row["ml_tc_K"] == 7.0 and row["spacegroup_after"] == "Pm-3m"
    assert row["e_above_hull_eV_per_atom"] == 0.0
    assert "failed" in dft_row(rec, "c1", None, None)["note"]


def test_dft_stage_fans_out_feasible_survivors_and_tags_qe_jobs(tmp_path):
    pseudo = tmp_path / "pseudo"
    pseudo.mkdir()
    (pseudo / "Al.pz-vbc.UPF").write_text(
        '<UPF version="2.0.1">\n<PP_HEADER element="Al" pseudo_type="NC" functional="SLA PZ NOGX NOGC"'
        ' z_valence="3.0"/>\n</UPF>\n')
    al = Structure(Lattice([[0, 2.0, 2.0], [2.0, 0, 2.0], [2.0, 2.0, 0]]), ["Al"], [[0, 0, 0]])
    nbn = Structure(Lattice.cubic(3.0), ["Nb", "N"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    recs = [CandidateRecord.from_structure(nbn, id="nbn", passed=True, rank=1),
            CandidateRecord.from_structure(al, id="al", passed=True, rank=2),
            CandidateRecord.from_structure(al, id="al-fail", passed=False)]
    run = tmp_path / "run"
    resp = dft_stage.original({"records": [r.model_dump() for r in recs], "summary": {}}, str(run), 1,
                              "test", pseudo_dir=str(pseudo), qe_category="qe")
    jobs = list(iter_jobs(resp.replace))
    names = [j.name for j in jobs]
    assert "qe stability gate" in names and "qe epc" in names and "convex hull" in names
    assert names[-1] == "finalize_run"
    qe_jobs = [j for j in jobs if j.name.startswith("qe ")]
    assert qe_jobs and all(j.config.manager_config.get("_category") == "qe" for j in qe_jobs)
    assert jobs[-1].config.manager_config.get("_category") is None  # finalize runs anywhere
    fin_args = jobs[-1].function_args
    assert fin_args[1] == ["al"]  # NbN had the better rank but no pseudopotential
    assert fin_args[4] == [{"id": "nbn", "formula": "NbN", "note": "skipped: no pseudopotential for N, Nb",
                            "predictions": {}}]
    assert (run / "screened.json").is_file()
    # without the hull: no references, no hull jobs, and the finalize job gets None hull outputs
    resp = dft_stage.original({"records": [r.model_dump() for r in recs], "summary": {}}, str(run), 1,
                              "test", pseudo_dir=str(pseudo), hull=False)
    names = [j.name for j in iter_jobs(resp.replace)]
    assert "convex hull" not in names and not any(n.startswith("qe ref") for n in names)
    assert list(iter_jobs(resp.replace))[-1].function_args[3] == [None]


def test_candidates_share_references_only_at_equal_cutoffs(tmp_path):
    from factories import write_upf

    for el, wfc, rho in (("Al", 28.5, 120.5), ("V", 47.52, 641.3), ("Nb", 41.99, 363.16)):
        write_upf(tmp_path / f"{el}.pbesol-x.UPF", el, wfc, rho)
    cells = {"alv": ["Al", "V"], "v": ["V", "V"], "alnb": ["Al", "Nb"]}
    recs = [CandidateRecord.from_structure(
        Structure(Lattice.cubic(3.0), els, [[0, 0, 0], [0.5, 0.5, 0.5]]), id=i, passed=True)
        for i, els in cells.items()]
    presets = {r.id: candidate_preset(r.get_structure(), "paper", str(tmp_path), None) for r in recs}
    assert {i: (p.ecutwfc, p.ecutrho) for i, p in presets.items()} == {
        "alv": (48.0, 642.0), "v": (48.0, 642.0), "alnb": (45.0, 364.0)}
    flows = reference_flows(recs, presets, "paper", str(tmp_path), None)
    assert flows["alv"] is flows["v"] and flows["alnb"] is not flows["alv"]
    elements = {i: sorted(j.metadata["element"] for j in f.jobs if j.name.startswith("qe ref scf"))
                for i, f in flows.items()}
    assert elements == {"alv": ["Al", "V"], "v": ["Al", "V"], "alnb": ["Al", "Nb"]}
    for i, f in flows.items():  # each reference runs at its candidates' cutoffs
        p = next(j for j in f.jobs if j.name.startswith("qe ref scf")).function.__self__.preset
        assert (p.ecutwfc, p.ecutrho) == (presets[i].ecutwfc, presets[i].ecutrho)
