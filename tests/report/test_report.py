import numpy as np
import pytest
from PIL import Image
from pymatgen.core import Lattice, Structure

from sc_inverse.records import CandidateRecord, save_records
from sc_inverse.report import figures
from sc_inverse.report.summary import build_report
from sc_inverse.runs import RunDir


def _structs():
    return [
        Structure(Lattice.cubic(3.0), ["Nb", "N"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(Lattice.cubic(4.0), ["Mg", "B", "B"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.0, 0.5, 0.5]]),
        Structure(Lattice.cubic(4.05), ["Al"], [[0, 0, 0]]),
    ]


def test_element_hit_rates_counts_compounds_and_skips_unevaluated():
    s = _structs()
    rates = figures.element_hit_rates(s, [10.0, 1.0, None], threshold=3.0)
    assert rates["Nb"] == (1, 1)
    assert rates["B"] == (0, 1)  # one compound, counted once although it has two B
    assert "Al" not in rates


def test_packing_fraction_of_fcc_al_is_physical():
    al = Structure(Lattice.cubic(4.05), ["Al"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    pf = figures.packing_fraction(al)
    # fcc touching spheres give 0.74; pymatgen's Al radius (1.25 Å) is below the touching 1.43 Å
    assert pf == pytest.approx(0.7405 * (1.25 / (4.05 / 8**0.5)) ** 3, rel=0.02)


def test_build_report_writes_labelled_pngs_and_table(tmp_path):
    run = RunDir(tmp_path / "run")
    recs = [
        CandidateRecord.from_structure(s, id=f"c{i}", origin="generated", predictions={"tc_K": tc})
        for i, (s, tc) in enumerate(zip(_structs(), [6.0, 2.0, 4.0], strict=True))
    ]
    save_records(recs, run.screened)
    run.write_json(run.dft, [
        {"id": "c0", "formula": "NbN", "lambda_": 0.9, "omega_log_K": 300.0, "tc_K": 12.3,
         "dynamically_stable": True, "e_form_eV_per_atom": -1.2, "e_above_hull_eV_per_atom": 0.05,
         "spacegroup_before": "P1", "spacegroup_after": "Pm-3m"},
        {"id": "c1", "formula": "MgB2", "note": "skipped: no pseudopotential for Mg"},
    ])
    run.write_json(run.funnel, {"counts": {"generated": 3, "valid": 3, "screened": 1, "DFT": 1},
                                "timings_s": {"generate": 1.0},
                                "dft_criteria": [{"criterion": "gap_eV < 0.05", "applied": True,
                                                  "ml_reason_unavailable": "offline", "n_pass": 1,
                                                  "n_fail": 0, "n_not_evaluated": 0}]})
    summary = build_report(run.root, tmp_path / "rep")
    text = summary.read_text()
    assert "| c0 | NbN | 12.30 |" in text
    assert "skipped: no pseudopotential for Mg" in text
    assert "| generated | 3 |" in text
    assert "- `gap_eV < 0.05`: evaluated from the DFT scf (the ML model was not available: offline)" in text
    pngs = sorted((tmp_path / "rep").glob("*.png"))
    assert len(pngs) == 5
    for p in pngs:
        with Image.open(p) as im:
            assert im.size[0] > 300 and im.size[1] > 200
            assert len(np.unique(np.asarray(im.convert("L")))) > 10  # not a blank canvas


def test_missing_run_files_name_the_folder(tmp_path):
    from sc_inverse.errors import InputError

    with pytest.raises(InputError, match="no such file"):
        build_report(tmp_path / "empty", tmp_path / "rep")
