"""``sc-inverse pseudos build|list``: the library through the command line."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from factories import write_upf
from sc_inverse.cli import cli
from sc_inverse.settings import get_settings


def _library(tmp_path):
    lib = tmp_path / "pbesol"
    lib.mkdir()
    write_upf(lib / "Nb.pbesol-spn-rrkjus_psl.0.3.0.UPF", "Nb", 41.99, 363.16)
    rows = [{"element": "Nb", "file": "Nb.pbesol-spn-rrkjus_psl.0.3.0.UPF", "status": "ok",
             "ecutwfc_Ry": 41.99, "ecutrho_Ry": 363.16, "reason": None},
            {"element": "Cs", "file": "Cs.pbesol-spn-rrkjus_psl.1.0.0.UPF", "status": "failed",
             "reason": "ghost state"}]
    (lib / "manifest.json").write_text(json.dumps({"functional": "pbesol", "tier": "standard",
                                                   "elements": rows}))
    return lib


def test_list_shows_cutoffs_and_status(tmp_path, monkeypatch):
    lib = _library(tmp_path)
    res = CliRunner().invoke(cli, ["pseudos", "list", "--dir", str(lib)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    nb = next(line for line in res.output.splitlines() if line.startswith("Nb"))
    assert "Nb.pbesol-spn-rrkjus_psl.0.3.0.UPF" in nb and "42.0" in nb and "363.2" in nb
    assert "failed  (ghost state)" in res.output and "1 elements usable" in res.output
    # default directory: settings.pseudo_dir (SC_INVERSE_PSEUDO_DIR)
    monkeypatch.setenv("SC_INVERSE_PSEUDO_DIR", str(lib))
    get_settings.cache_clear()
    res = CliRunner().invoke(cli, ["pseudos", "list"], catch_exceptions=False)
    assert res.exit_code == 0 and "Nb.pbesol" in res.output


def test_list_of_a_missing_library_says_so(tmp_path):
    res = CliRunner().invoke(cli, ["pseudos", "list", "--dir", str(tmp_path / "none")])
    assert res.exit_code != 0 and "does not exist" in str(res.exception)


@pytest.mark.qe
@pytest.mark.skipif(shutil.which("ld1.x") is None, reason="ld1.x (Quantum ESPRESSO) not installed")
def test_build_one_element_with_real_ld1(tmp_path):
    dest = tmp_path / "lib"
    res = CliRunner().invoke(cli, ["pseudos", "build", "--dest", str(dest), "--elements", "H",
                                   "--quiet"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert (dest / "H.pbesol-rrkjus_psl.1.0.0.UPF").is_file()
    assert "1/1 elements ready" in res.output
    res = CliRunner().invoke(cli, ["pseudos", "list", "--dir", str(dest)], catch_exceptions=False)
    assert res.output.splitlines()[1].startswith("H ") and " ok" in res.output
    res = CliRunner().invoke(cli, ["pseudos", "build", "--dest", str(dest), "--elements", "H,Xx"])
    assert res.exit_code != 0 and "'Xx'" in str(res.exception)
