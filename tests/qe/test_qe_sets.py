"""Input sets, presets, namelist editing, k/q grids and the pseudopotential lookup."""

from __future__ import annotations

import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.pwscf import PWInput

from sc_inverse.errors import CalculationError, InputError, MissingPseudopotentialError
from sc_inverse.qe import kpoints as K
from sc_inverse.qe.pseudos import find_pseudopotentials
from sc_inverse.qe.sets import (
    FAST,
    PAPER,
    TEST,
    MatdynInputGenerator,
    PhInputGenerator,
    PwInputGenerator,
    Q2rInputGenerator,
    clean_structure,
    get_preset,
    parse_fortran_value,
    read_namelist,
    update_namelist,
)
from sc_inverse.settings import get_settings


@pytest.fixture
def pseudo_lib(tmp_path):
    lib = tmp_path / "gbrv"
    lib.mkdir()
    for name in ("al_pbesol_v1.uspp.F.UPF", "n_pbesol_v1.2.uspp.F.UPF", "V_PBESOL_V1.4.USPP.F.UPF",
                 "Al.pz-vbc.UPF"):
        (lib / name).write_text("<UPF/>")
    return lib


def test_pw_scf_input_roundtrip(al_structure, pseudo_lib):
    pseudos = find_pseudopotentials(al_structure, pseudo_lib, TEST.pseudo_pattern)
    text = PwInputGenerator(preset=TEST, la2f=True).get_input_set(
        al_structure, pseudos, (16, 16, 16)).text
    ctl, sysnl, el = (read_namelist(text, n) for n in ("control", "system", "electrons"))
    assert parse_fortran_value(ctl["calculation"]) == "scf"
    assert parse_fortran_value(ctl["pseudo_dir"]) == str(pseudo_lib)
    assert parse_fortran_value(sysnl["ecutwfc"]) == 15.0 and parse_fortran_value(sysnl["la2f"]) is True
    assert parse_fortran_value(sysnl["smearing"]) == "mv" and parse_fortran_value(el["conv_thr"]) == 1e-8
    assert "16 16 16 0 0 0" in text and "Al.pz-vbc.UPF" in text
    back = PWInput.from_str(text).structure
    assert back.lattice.volume == pytest.approx(al_structure.lattice.volume, rel=1e-8)


def test_paper_vc_relax_settings(al_structure, pseudo_lib):
    pseudos = find_pseudopotentials(al_structure, pseudo_lib, "{el}_pbesol_v1*.uspp.F.UPF")
    text = PwInputGenerator(preset=PAPER, calculation="vc-relax", max_seconds=3600).get_input_set(
        al_structure, pseudos, (9, 9, 9)).text
    sysnl, el, cell = (read_namelist(text, n) for n in ("system", "electrons", "cell"))
    ctl = {k: parse_fortran_value(v) for k, v in read_namelist(text, "control").items()}
    assert (ctl["forc_conv_thr"], ctl["etot_conv_thr"]) == (1e-3, 1e-4)
    assert parse_fortran_value(cell["press_conv_thr"]) == 0.5
    assert parse_fortran_value(cell["cell_dynamics"]) == "bfgs"
    assert parse_fortran_value(read_namelist(text, "ions")["ion_dynamics"]) == "bfgs"
    assert parse_fortran_value(sysnl["ecutwfc"]) == 45.0 and parse_fortran_value(sysnl["ecutrho"]) == 250.0
    assert parse_fortran_value(sysnl["smearing"]) == "mp" and parse_fortran_value(sysnl["degauss"]) == 0.01
    assert parse_fortran_value(sysnl["qcutz"]) == 800.0
    assert parse_fortran_value(el["mixing_mode"]) == "local-TF" and parse_fortran_value(el["mixing_beta"]) == 0.3
    assert parse_fortran_value(el["conv_thr"]) == 1e-9
    assert parse_fortran_value(cell["cell_dofree"]) == "all"
    assert parse_fortran_value(read_namelist(text, "control")["max_seconds"]) == 3600.0


def test_ph_q2r_matdyn_inputs():
    ph = PhInputGenerator(preset=TEST).get_input_set((4, 4, 4), start_q=3, last_q=3).text
    nl = {k: parse_fortran_value(v) for k, v in read_namelist(ph, "inputph").items()}
    assert nl["electron_phonon"] == "interpolated" and nl["ldisp"] is True
    assert nl["el_ph_sigma"] == 0.005 and nl["el_ph_nsigma"] == 10 and nl["fildvscf"] == "dvscf"
    assert (nl["nq1"], nl["start_q"], nl["last_q"]) == (4, 3, 3) and "recover" not in nl
    q2r = read_namelist(Q2rInputGenerator().get_input_set().text, "input")
    assert parse_fortran_value(q2r["la2f"]) is True and parse_fortran_value(q2r["el_ph_nsigma"]) == 10
    q2r = read_namelist(Q2rInputGenerator(el_ph_nsigma=6).get_input_set().text, "input")
    assert parse_fortran_value(q2r["el_ph_nsigma"]) == 6  # q2r.x wants every smearing's file
    md = read_namelist(MatdynInputGenerator(preset=TEST).get_input_set((10, 10, 10)).text, "input")
    assert parse_fortran_value(md["dos"]) is True and parse_fortran_value(md["nk3"]) == 10
    md = read_namelist(MatdynInputGenerator(preset=FAST).get_input_set((9, 9, 9)).text, "input")
    assert parse_fortran_value(md["el_ph_nsigma"]) == FAST.el_ph_nsigma


def test_update_namelist_keeps_everything_else():
    text = "title\n&inputph\n  a = 1,\n  b = 'x', c = 2.0d0\n/\nREST\n"
    new = update_namelist(text, "inputph", {"b": None, "d": True, "a": 3})
    nl = read_namelist(new, "inputph")
    assert nl == {"a": "3", "c": "2.0d0", "d": ".true."}
    assert new.startswith("title\n") and new.endswith("/\nREST\n")
    with pytest.raises(InputError, match="&system"):
        update_namelist(text, "system", {"x": 1})


def test_presets_and_structure_checks():
    assert get_preset("test") is TEST and get_preset(PAPER) is PAPER
    assert get_preset("fast").name == "fast"
    with pytest.raises(InputError, match="unknown QE preset"):
        get_preset("slow")
    dis = Structure(Lattice.cubic(4), [{"Al": 0.5, "Cu": 0.5}], [[0, 0, 0]])
    with pytest.raises(InputError, match="disordered"):
        clean_structure(dis)
    close = Structure(Lattice.cubic(4), ["Al", "Al"], [[0, 0, 0], [0.01, 0, 0]])
    with pytest.raises(InputError, match="closer than"):
        clean_structure(close)


def test_pseudopotentials_case_insensitive_and_all_missing_reported(pseudo_lib):
    found = find_pseudopotentials(["Al", "N", "V"], pseudo_lib, "{el}_pbesol_v1*.uspp.F.UPF")
    assert {k: v.name for k, v in found.items()} == {
        "Al": "al_pbesol_v1.uspp.F.UPF", "N": "n_pbesol_v1.2.uspp.F.UPF",
        "V": "V_PBESOL_V1.4.USPP.F.UPF"}
    s = Structure(Lattice.cubic(4), ["Nb", "N", "Ta"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0]])
    with pytest.raises(MissingPseudopotentialError) as err:
        find_pseudopotentials(s, pseudo_lib, "{el}_pbesol_v1*.uspp.F.UPF")
    assert err.value.elements == ["Nb", "Ta"] and "Nb, Ta" in str(err.value)
    with pytest.raises(MissingPseudopotentialError, match="directory not found"):
        find_pseudopotentials(["Al"], pseudo_lib / "nope", "{el}*.UPF")
    with pytest.raises(InputError, match="must contain"):
        find_pseudopotentials(["Al"], pseudo_lib, "Al.UPF")


def test_settings_supply_pseudo_defaults(pseudo_lib, monkeypatch):
    """A user's GBRV directory through the settings, for the presets without a library of their
    own; the test preset keeps Debian's LDA directory."""
    monkeypatch.setenv("SC_INVERSE_PSEUDO_DIR", str(pseudo_lib))
    monkeypatch.setenv("SC_INVERSE_PSEUDO_PATTERN", "{el}_pbesol_v1*.uspp.F.UPF")
    get_settings.cache_clear()
    assert find_pseudopotentials(["V"])["V"].name == "V_PBESOL_V1.4.USPP.F.UPF"
    assert find_pseudopotentials(["V"], preset="fast")["V"].parent == pseudo_lib
    with pytest.raises(MissingPseudopotentialError, match="espresso"):
        find_pseudopotentials(["V"], preset="test")


def test_kpoint_rules(al_structure):
    assert K.mesh_from_length(al_structure, 20) == (9, 9, 9)
    assert K.bump_prime_mesh((7, 2, 1, 9)) == (8, 3, 1, 9)
    assert K.qgrid_from_kgrid((8, 9, 6)) == (2, 3, 2) and K.qgrid_from_kgrid((1, 1, 4)) == (1, 1, 2)
    with pytest.raises(InputError):
        K.as_mesh((4, 4), "q")


def test_kpoint_convergence_stops_at_first_converged_length(al_structure):
    calls = []

    def e_of(mesh):  # converges like 1/n^2 towards -100 eV
        return -100.0 + 5.0 / mesh[0] ** 2

    def energy(mesh):
        calls.append(mesh)
        return e_of(mesh)

    conv = K.converge_kpoint_length(al_structure, energy, start_length=5, step=5,
                                    tol_eV=0.0136, n_confirm=1)
    assert conv.mesh == calls[-2] and len(set(calls)) == len(calls)
    assert abs(e_of(conv.mesh) - e_of(calls[-1])) < 0.0136 < abs(e_of(calls[-3]) - e_of(calls[-2]))
    assert [h["grid"] for h in conv.history] == [list(m) for m in calls]
    with pytest.raises(CalculationError, match="not converged"):
        K.converge_kpoint_length(al_structure, lambda m: float(m[0]), max_length=30)
