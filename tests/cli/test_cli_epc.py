"""``sc-inverse epc``: clear errors before any QE job runs."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from sc_inverse.cli import cli
from sc_inverse.errors import InputError, MissingPseudopotentialError

AL_EXAMPLE = Path(__file__).parents[2] / "examples" / "al_fcc" / "Al.pwi"


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
