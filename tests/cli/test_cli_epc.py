"""``sc-inverse epc``: structure loading and clear errors before any QE job runs."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from qe_testutils import AL_EXAMPLE

from sc_inverse.cli import cli
from sc_inverse.errors import InputError, MissingPseudopotentialError
from sc_inverse.qe.cli import load_structure, summary
from sc_inverse.qe.schemas import ElphTaskDoc, QeInputSummary, SmearingRow


def test_load_al_example():
    s, sid = load_structure(AL_EXAMPLE)
    assert sid == "Al" and s.composition.reduced_formula == "Al" and len(s) == 1
    assert s.lattice.a == pytest.approx(7.5 * 0.529177210903 / 2**0.5, rel=1e-6)
    assert s.lattice.alpha == pytest.approx(60.0)


def test_load_poscar_and_bad_files(al_structure, tmp_path):
    poscar = tmp_path / "POSCAR"
    al_structure.to(filename=str(poscar), fmt="poscar")
    assert load_structure(poscar)[0].composition.reduced_formula == "Al"
    bad = tmp_path / "broken.pwi"
    bad.write_text("&system\n ibrav=0, nat=2\n/\nATOMIC_POSITIONS crystal\n Al 0 0\n")
    with pytest.raises(InputError, match="broken.pwi"):
        load_structure(bad)
    with pytest.raises(InputError, match="no such file"):
        load_structure(tmp_path / "missing.cif")


def _invoke(args):
    return CliRunner().invoke(cli, ["epc", *args])


def test_cli_malformed_structure_runs_nothing(tmp_path):
    bad = tmp_path / "broken.cif"
    bad.write_text("data_x\n_cell_length_a 3\nloop_\n_atom_site_label\n")
    res = _invoke([str(bad), "--preset", "test", "--workdir", str(tmp_path / "wd")])
    assert isinstance(res.exception, InputError) and "broken.cif" in str(res.exception)
    assert not (tmp_path / "wd").exists()


def test_cli_missing_pseudopotential_runs_nothing(tmp_path):
    empty = tmp_path / "pseudo"
    empty.mkdir()
    res = _invoke([str(AL_EXAMPLE), "--preset", "test", "--pseudo-dir", str(empty),
                   "--workdir", str(tmp_path / "wd"), "--out", str(tmp_path / "r.json")])
    assert isinstance(res.exception, MissingPseudopotentialError)
    assert res.exception.elements == ["Al"] and str(empty) in str(res.exception)
    assert not (tmp_path / "wd").exists() and not (tmp_path / "r.json").exists()


def test_cli_help_lists_options():
    res = _invoke(["--help"])
    assert res.exit_code == 0
    for opt in ("--preset", "--pseudo-dir", "--out", "--fanout"):
        assert opt in res.output


def test_summary_keys():
    doc = ElphTaskDoc(calc_type="elph", dir_name="/x", input=QeInputSummary(preset="test"),
                      lambda_=0.4, omega_log_K=350.0, tc_K=2.0, dynamically_stable=True,
                      smearing_table=[SmearingRow(sigma_Ry=0.01, lambda_=0.4, omega_log_K=350.0,
                                                  tc_K=2.0)])
    s = summary(doc)
    assert s["lambda"] == 0.4 and s["smearing_table"][0]["lambda"] == 0.4
    assert {"omega_log_K", "tc_K", "dynamically_stable"} <= set(s)
