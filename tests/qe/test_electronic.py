"""Band gap and N(E_F) from real pw.x 6.7 XML files (``tests/test_data/qe/electronic``)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from qe_testutils import QE_DATA, QE_PSEUDO_DIR, have_qe

from sc_inverse.errors import ParseError
from sc_inverse.qe.electronic import (
    ElectronicSummary,
    electronic_from_outdir,
    electronic_summary,
    gaussian_dos,
)
from sc_inverse.qe.parsers import parse_pw_xml, pw_xml_path
from sc_inverse.qe.schemas import PwTaskDoc
from sc_inverse.qe.sets import TEST

DATA = QE_DATA / "electronic"


def _bands(case: str):
    return parse_pw_xml(DATA / case / "out" / "qe.xml")


def test_parser_reads_shapes_units_and_weights():
    al = _bands("al_fcc")  # 8³ grid, 29 irreducible k, 6 bands, MV 0.05 Ry
    assert al.eigenvalues_eV.shape == (1, 29, 6) and al.kpoint_weights.sum() == pytest.approx(2.0)
    assert al.smearing == "mv" and al.degauss_eV == pytest.approx(0.05 * 13.605693, rel=1e-6)
    assert al.fermi_energy_eV == pytest.approx(8.1777, abs=1e-3)  # scf.out: 8.1777 ev
    assert al.nelec == 3.0 and al.spin_degeneracy == 2
    lsda = _bands("al_fcc_lsda")  # nbnd_up + nbnd_dw values per k point, split into channels
    assert lsda.eigenvalues_eV.shape == (2, 8, 6) and lsda.kpoint_weights.sum() == pytest.approx(1.0)
    assert lsda.spin_degeneracy == 1
    si = _bands("si_fixed")
    assert si.occupations_kind == "fixed" and si.degauss_eV is None
    assert si.highest_occupied_eV == pytest.approx(6.3442, abs=1e-3)  # scf.out's two levels
    assert si.lowest_unoccupied_eV == pytest.approx(6.9653, abs=1e-3)


def test_fcc_al_is_a_metal_with_dos_x_value_at_fermi():
    e = electronic_summary(_bands("al_fcc"))
    assert e.is_metal and e.band_gap_eV == 0.0 and e.filled_bands == [pytest.approx(1.5)]
    assert e.valence_band_max_eV is None and e.passes_gap(0.05)
    # QE's dos.x on the same outdir (Gaussian, degauss 0.05 Ry; dos.in, slice of al.dos)
    ref = np.loadtxt(DATA / "al_fcc" / "al.dos")
    assert e.dos_at_fermi_states_per_eV == pytest.approx(
        np.interp(e.fermi_energy_eV, ref[:, 0], ref[:, 1]), rel=2e-3)
    # one atom: ~0.4 states/eV (free electrons at Al's density: 3·3/(2·11.7 eV) = 0.38)
    assert 0.35 < e.dos_at_fermi_states_per_eV < 0.45
    assert e.dos_broadening_eV == e.smearing_eV


def test_spin_polarised_run_counts_both_channels_once():
    lsda = _bands("al_fcc_lsda")
    e = electronic_summary(lsda)
    assert e.is_metal and e.spin_polarized and len(e.filled_bands) == 2
    # the same 4³ Al without spin polarisation: weights 2x, one channel -> the same N(E_F)
    one = type(lsda)(**{**lsda.__dict__, "eigenvalues_eV": lsda.eigenvalues_eV[:1],
                        "occupations": lsda.occupations[:1], "kpoint_weights": 2 * lsda.kpoint_weights,
                        "lsda": False})
    assert gaussian_dos(one, e.fermi_energy_eV, 0.68) == pytest.approx(
        gaussian_dos(lsda, e.fermi_energy_eV, 0.68), rel=1e-3)


def test_silicon_fixed_occupations_gap_from_extra_bands():
    e = electronic_summary(_bands("si_fixed"))
    assert e.is_metal is False and not e.passes_gap(0.05)
    assert e.band_gap_eV == pytest.approx(6.9653 - 6.3442, abs=1e-3)  # LDA Si on a 4³ grid
    assert e.fermi_energy_eV == pytest.approx((6.3442 + 6.9653) / 2, abs=1e-3)  # mid-gap
    assert e.smearing_eV is None and e.dos_broadening_eV == pytest.approx(0.136, abs=1e-3)


def test_silicon_with_broad_smearing_is_not_called_a_metal():
    # MV 0.05 Ry (the presets' smearing) puts E_F *below* the valence-band maximum
    b = _bands("si_mv005")
    e = electronic_summary(b)
    assert b.fermi_energy_eV < e.valence_band_max_eV
    assert e.is_metal is False and e.band_gap_eV == pytest.approx(0.63, abs=0.01)


def test_odd_filling_is_a_metal_and_missing_empty_bands_undetermined():
    si = _bands("si_fixed")
    no_empty = type(si)(**{**si.__dict__, "eigenvalues_eV": si.eigenvalues_eV[:, :, :4],
                           "occupations": si.occupations[:, :, :4]})
    e = electronic_summary(no_empty)
    assert e.band_gap_eV is None and e.is_metal is None and "no empty band" in e.reason
    assert e.passes_gap(0.05) is None
    half = si.occupations.copy()
    half[:, :, 3] = 0.5  # 3.5 electrons per channel: a partly filled band
    e = electronic_summary(type(si)(**{**si.__dict__, "occupations": half}))
    assert e.is_metal and e.band_gap_eV == 0.0


def test_xml_location_and_missing_file(tmp_path):
    out = DATA / "al_fcc" / "out"
    assert pw_xml_path(out, "qe") == out / "qe.xml"
    save = tmp_path / "qe.save"
    save.mkdir()
    shutil.copy(out / "qe.xml", save / "data-file-schema.xml")
    assert pw_xml_path(tmp_path, "qe") == save / "data-file-schema.xml"
    assert electronic_from_outdir(tmp_path, "qe").is_metal
    assert electronic_from_outdir(tmp_path / "nowhere", "qe") is None
    (tmp_path / "bad.xml").write_text("<qes:espresso")
    with pytest.raises(ParseError, match="bad.xml"):
        parse_pw_xml(tmp_path / "bad.xml")


def test_scf_doc_carries_electronic_summary_and_survives_missing_xml(tmp_path, caplog):
    d = tmp_path / "scf"
    shutil.copytree(DATA / "si_mv005", d)
    doc = PwTaskDoc.from_directory(d, TEST, "scf")
    assert doc.electronic.band_gap_eV == pytest.approx(0.63, abs=0.01)
    again = PwTaskDoc.model_validate(doc.model_dump())
    assert isinstance(again.electronic, ElectronicSummary) and again.electronic == doc.electronic
    shutil.rmtree(d / "out")
    assert PwTaskDoc.from_directory(d, TEST, "scf").electronic is None
    assert "pw.x XML file not found" in caplog.text


@pytest.mark.slow
@pytest.mark.qe
@pytest.mark.skipif(not have_qe("pw.x") or not (QE_PSEUDO_DIR / "Si.pz-vbc.UPF").is_file(),
                    reason="pw.x or Si.pz-vbc.UPF not installed")
def test_real_pw_scf_of_diamond_si(tmp_path):
    """A fresh pw.x run (~1 s): LDA diamond Si at 12 Ry, 4³ grid, MV 0.01 Ry, 8 bands."""
    text = (DATA / "si_mv005" / "scf.in").read_text().replace("degauss = 0.05", "degauss = 0.01")
    (tmp_path / "scf.in").write_text(text)
    with open(tmp_path / "scf.out", "w") as out:
        subprocess.run(["pw.x", "-in", "scf.in"], cwd=tmp_path, stdout=out, check=True,
                       env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}, timeout=300)
    e = PwTaskDoc.from_directory(tmp_path, TEST, "scf").electronic
    assert e.is_metal is False and 0.55 < e.band_gap_eV < 0.7
    assert e.valence_band_max_eV < e.fermi_energy_eV < e.conduction_band_min_eV
