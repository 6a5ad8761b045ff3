"""Task documents built from recorded run directories (no QE needed): ``from_directory``."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest
from qe_testutils import QE_DATA

from sc_inverse.errors import CalculationError, ParseError
from sc_inverse.qe import schemas
from sc_inverse.qe.schemas import (
    ElphTaskDoc,
    PhElphData,
    PwTaskDoc,
    QPointTaskDoc,
    RunTiming,
)
from sc_inverse.qe.sets import PAPER, TEST


def _pw_dir(tmp_path, recorded: str, name: str):
    d = tmp_path / name
    d.mkdir()
    shutil.copy(QE_DATA / "pw" / f"{recorded}.in", d / f"{name}.in")
    shutil.copy(QE_DATA / "pw" / f"{recorded}.out", d / f"{name}.out")
    return d


def test_scf_doc_from_directory(tmp_path):
    d = _pw_dir(tmp_path, "al_scf", "scf")
    t = RunTiming(step="scf", wall_time_s=2.0)
    doc = PwTaskDoc.from_directory(d, TEST, "scf", task_label="qe scf", timings=[t, t])
    assert doc.calc_type == "scf" and doc.task_label == "qe scf" and doc.input.preset == "test"
    assert doc.energy_eV == pytest.approx(-57.0, abs=0.1) and doc.formula_pretty == "Al"
    assert doc.input.kpoints_grid == [8, 8, 8] and doc.input.kpoints_shift == [0, 0, 0]
    assert doc.input.pseudopotentials == {"Al": "Al.pz-vbc.UPF"}
    assert doc.input.pseudo_dir == "/usr/share/espresso/pseudo"
    assert doc.input.parameters["system"]["ecutwfc"] == "15.0"
    assert doc.input.la2f_kpoints_grid is None  # recorded input has no la2F and no dense run
    assert doc.outdir == str(d / "out") and doc.prefix == "qe" and doc.wall_time_s == 4.0
    assert doc.relax_converged is None and doc.scf_converged


def test_la2f_grid_is_the_dense_runs(tmp_path):
    d = _pw_dir(tmp_path, "al_scf", "scf")
    dense = (QE_DATA / "pw" / "al_scf.in").read_text().replace("8 8 8 0 0 0", "16 16 16 0 0 0")
    (d / "scf_la2f.in").write_text(dense)
    assert PwTaskDoc.from_directory(d, TEST).input.la2f_kpoints_grid == [16, 16, 16]


def test_vc_relax_doc_from_directory(tmp_path):
    d = _pw_dir(tmp_path, "al_vcrelax", "relax")
    doc = PwTaskDoc.from_directory(d, PAPER, "relax")
    assert doc.calc_type == "vc-relax" and doc.relax_converged is True
    assert doc.n_ionic_steps > 1 and len(doc.energies_ionic_eV) == doc.n_ionic_steps
    assert doc.input.preset == "paper"


def test_pw_doc_names_a_missing_input(tmp_path):
    d = _pw_dir(tmp_path, "al_scf", "scf")
    (d / "scf.in").unlink()
    with pytest.raises(ParseError, match="scf.in"):
        PwTaskDoc.from_directory(d, TEST)


def test_qpoint_doc_from_directory():
    doc = QPointTaskDoc.from_directory(QE_DATA / "al_elph", TEST, 3, 8)
    assert doc.qe_version == "6.7MaX" and doc.input.qpoints_grid == [4, 4, 4]
    assert doc.qpoint.index == 3 and doc.qpoint.weight == doc.qpoint.n_star == 4
    assert len(doc.qpoint.lambdas) == 10 and len(doc.qpoint.frequencies_cm1) == 3


def test_elph_doc_from_recorded_directory_parses_each_file_once(monkeypatch):
    """The recorded directory holds ph.x, matdyn and lambda.x outputs: no executable runs."""
    seen: Counter = Counter()
    for name in dir(schemas):
        real = getattr(schemas, name)
        if name.startswith("parse_") and real.__module__ == "sc_inverse.qe.parsers":

            def counted(path, *a, _real=real, **k):
                seen[str(path)] += 1
                return _real(path, *a, **k)

            monkeypatch.setattr(schemas, name, counted)
    doc = ElphTaskDoc.from_directory(QE_DATA / "al_elph", TEST, (8, 8, 8), energy_eV=-56.958)
    assert seen and max(seen.values()) == 1, seen.most_common(3)
    # dyn0, dynN, elph N, ph.out, dos, lambda, lambda.dat, a2F, qgrid.freq + qe.freq (stability)
    assert len(seen) == 1 + 8 + 8 + 1 + 1 + 1 + 1 + 10 + 2
    assert doc.lambda_ == pytest.approx(0.435, abs=2e-3) and doc.selected_sigma_Ry == 0.01
    row = doc.smearing_table[1]
    assert row.lambda_lambdax == pytest.approx(row.lambda_, abs=2e-3)  # recorded lambda.dat
    assert row.lambda_qe is not None and doc.lambda_matdyn == row.lambda_qe
    assert doc.qe_version == "6.7MaX" and doc.prefix == "qe" and doc.input.kpoints_grid == [8, 8, 8]
    assert doc.energy_per_atom_eV is None  # no structure given


def test_stars_must_cover_the_grid(al_elph_dir):
    lines = (al_elph_dir / "dyn0").read_text().splitlines()
    lines[1] = "   7"  # drop the last irreducible q-point
    (al_elph_dir / "dyn0").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(CalculationError, match="cover 58 points"):
        PhElphData.from_directory(al_elph_dir)
