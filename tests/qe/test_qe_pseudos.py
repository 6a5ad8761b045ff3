"""Which pseudopotentials a run uses, whether they are sound, and the cutoffs they call for;
the presets that use them (fast, paper) and the relaxation's symmetry bookkeeping."""

from __future__ import annotations

import json

import pytest
from pymatgen.core import Lattice, Structure

from factories import write_upf
from sc_inverse.errors import InputError, MissingPseudopotentialError, ParseError
from sc_inverse.qe.jobs import la2f_grid, resolve_kgrid, standardize_relaxed
from sc_inverse.qe.pseudos import (
    check_pseudopotentials,
    find_pseudopotentials,
    functional_name,
    pseudo_location,
    resolve_cutoffs,
    resolve_pseudopotentials,
)
from sc_inverse.qe.pslibrary import check_upf
from sc_inverse.qe.sets import (
    FAST,
    PAPER,
    TEST,
    PwInputGenerator,
    parse_fortran_value,
    read_namelist,
)
from sc_inverse.settings import get_settings

#: suggested cutoffs (Ry) of the fake library: Al below the paper floor, Nb above it in ecutrho
CUTOFFS = {"Al": (28.5, 120.5), "Nb": (41.99, 363.16), "V": (47.52, 641.3)}


@pytest.fixture
def library(tmp_path):
    """A built-library look-alike: UPF files + manifest (Nb's build 'failed'; a stale Nb file
    and a second Al file match the pattern too)."""
    lib = tmp_path / "pbesol"
    lib.mkdir()
    rows = []
    for el, (wfc, rho) in CUTOFFS.items():
        name = f"{el}.pbesol-spn-rrkjus_psl.1.0.0.UPF"
        write_upf(lib / name, el, wfc, rho)
        rows.append({"element": el, "file": name, "status": "ok", "ecutwfc_Ry": wfc,
                     "ecutrho_Ry": rho, "reason": None})
    write_upf(lib / "Al.pbesol-a-older.UPF", "Al")  # sorts first: a plain glob would take it
    rows.append({"element": "Ta", "file": "Ta.pbesol-spn-rrkjus_psl.1.0.0.UPF", "status": "failed",
                 "reason": "ld1.x error"})
    write_upf(lib / "Ta.pbesol-spn-rrkjus_psl.1.0.0.UPF", "Ta")  # left over from an older build
    write_upf(lib / "Sc.pbesol-extra.UPF", "Sc")  # not in the manifest: found by the pattern
    (lib / "manifest.json").write_text(json.dumps({"functional": "pbesol", "tier": "standard",
                                                   "elements": rows}))
    return lib


def test_location_order(tmp_path, monkeypatch, library):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SC_INVERSE_PSEUDO_DIR", raising=False)
    get_settings.cache_clear()
    built = tmp_path / "xdg" / "sc-inverse" / "pseudos"
    assert pseudo_location("paper") == (built / "pbesol", "{el}.pbesol-*.UPF")
    assert pseudo_location("fast") == (built / "pbesol-low", "{el}.pbesol-*.UPF")
    assert pseudo_location("test")[0].as_posix() == "/usr/share/espresso/pseudo"
    assert pseudo_location("fast", library, "{el}*.UPF") == (library, "{el}*.UPF")
    assert pseudo_location("test", library)[0] == library  # explicit wins everywhere
    monkeypatch.setenv("SC_INVERSE_PSEUDO_DIR", str(library))
    get_settings.cache_clear()
    assert pseudo_location("fast")[0] == library and pseudo_location("paper")[0] == library
    with pytest.raises(InputError, match="must contain"):
        pseudo_location("fast", library, "Al.UPF")


def test_manifest_names_the_file_and_failed_builds_are_missing(library):
    found = find_pseudopotentials(["Al", "Sc"], library, preset="paper")
    assert found["Al"].name == "Al.pbesol-spn-rrkjus_psl.1.0.0.UPF"  # the manifest's, not the glob's
    assert found["Sc"].name == "Sc.pbesol-extra.UPF"
    # a user pattern that excludes the manifest's file falls back to the glob
    assert find_pseudopotentials(["Al"], library, "{el}.pbesol-a-*")["Al"].name == "Al.pbesol-a-older.UPF"
    s = Structure(Lattice.cubic(4), ["Nb", "Ta", "Os", "Al"],
                  [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0]])
    with pytest.raises(MissingPseudopotentialError) as err:
        find_pseudopotentials(s, library, preset="paper")
    assert err.value.elements == ["Os", "Ta"] and "Os, Ta" in str(err.value)


def test_corrupt_or_inconsistent_files_are_named(library):
    (library / "Al.pbesol-spn-rrkjus_psl.1.0.0.UPF").write_text("")
    text = (library / "V.pbesol-spn-rrkjus_psl.1.0.0.UPF").read_text()
    (library / "V.pbesol-spn-rrkjus_psl.1.0.0.UPF").write_text(text[:-20])
    with pytest.raises(ParseError) as err:
        resolve_pseudopotentials(["Al", "V", "Nb"], "paper", library)
    msg = str(err.value)
    assert "Al.pbesol-spn-rrkjus_psl.1.0.0.UPF: empty" in msg and "V.pbesol-spn" in msg
    assert "truncated" in msg and "Nb." not in msg
    mixed = {"Nb": library / "Nb.pbesol-spn-rrkjus_psl.1.0.0.UPF",
             "Sc": write_upf(library / "Sc.pbe.UPF", "Sc", functional="SLA  PW   PBX  PBC")}
    with pytest.raises(InputError, match=r"different functionals.*Nb: PBESOL.*Sc: PBE"):
        check_pseudopotentials(mixed)
    with pytest.raises(InputError, match="is for Sc, not Y"):
        check_pseudopotentials({"Y": library / "Sc.pbe.UPF"})


def test_functional_spellings():
    assert functional_name("SLA  PW   PSX  PSC") == functional_name("PBESOL") == "PBESOL"
    assert functional_name("SLA PW PBE PBE") == functional_name("PBE") == "PBE"
    assert functional_name("SLA PZ NOGX NOGC PZ") == functional_name("LDA") == "PZ"
    assert functional_name("sla pw tpss tpss") == "SLA PW TPSS TPSS"


def test_cutoff_rule(library):
    headers = {el: check_upf(library / f"{el}.pbesol-spn-rrkjus_psl.1.0.0.UPF") for el in CUTOFFS}
    al = resolve_cutoffs(PAPER, {"Al": headers["Al"]})
    assert (al.ecutwfc, al.ecutrho) == (45.0, 250.0)  # the JARVIS floor
    nb = resolve_cutoffs(PAPER, {"Al": headers["Al"], "Nb": headers["Nb"]})
    assert (nb.ecutwfc, nb.ecutrho) == (45.0, 364.0)  # Nb's 363.16 Ry, rounded up
    assert nb.relax_system["ecfixed"] == 44.5 and not nb.cutoffs_from_library
    assert "Nb 41.99/363.16" in nb.cutoff_rule and nb.cutoff_rule.endswith("= 45/364 Ry")
    v = resolve_cutoffs(PAPER, headers)
    assert (v.ecutwfc, v.ecutrho, v.relax_system["ecfixed"]) == (48.0, 642.0, 47.5)
    assert resolve_cutoffs(v, {"Al": headers["Al"]}) == v  # resolved once: fixed for good
    fast = resolve_cutoffs(FAST, {"Al": headers["Al"]})
    assert (fast.ecutwfc, fast.ecutrho) == (30.0, 240.0)
    assert resolve_cutoffs(FAST.with_updates(ecutrho=None), {"Al": headers["Al"]}).ecutrho == 121.0
    assert resolve_cutoffs(TEST, headers) is TEST  # fixed cutoffs stay


def test_fast_preset_grids(al_structure):
    kgrid, history, length = resolve_kgrid(al_structure, FAST, {}, None, None)
    assert history is None and length == FAST.kpoint_length_A
    assert all(n > 1 and any(n % d == 0 for d in range(2, n)) for n in kgrid)  # q can divide it
    assert la2f_grid(FAST, kgrid) == tuple(FAST.la2f_kpoints_factor * n for n in kgrid)
    assert la2f_grid(TEST, (8, 8, 8)) == (16, 16, 16) and la2f_grid(PAPER, (9, 9, 9)) == (9, 9, 9)
    assert resolve_kgrid(al_structure, FAST, {}, (4, 4, 4), None)[0] == (4, 4, 4)
    assert resolve_kgrid(al_structure, FAST, {}, None, None, 30.0)[2] == 30.0


def test_fast_relax_input_states_its_thresholds(al_structure, library):
    pseudos, preset = resolve_pseudopotentials(["Al"], "fast", library)
    text = PwInputGenerator(preset=preset, calculation="vc-relax").get_input_set(
        al_structure, pseudos, (6, 6, 6)).text
    ctl, sysnl, cell = (read_namelist(text, n) for n in ("control", "system", "cell"))
    assert parse_fortran_value(ctl["forc_conv_thr"]) == FAST.forc_conv_thr_Ry_per_bohr
    assert parse_fortran_value(cell["press_conv_thr"]) == FAST.press_conv_thr_kbar
    assert parse_fortran_value(cell["cell_dofree"]) == "all"
    assert parse_fortran_value(sysnl["ecutwfc"]) == 30.0 and "qcutz" not in sysnl


def test_relaxed_cell_is_standardised():
    conv = Structure(Lattice.cubic(3.30), ["Nb", "Nb"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    relaxed = Structure(Lattice.cubic(3.28), ["Nb", "Nb"], [[0, 0, 0], [0.5, 0.5, 0.5001]])
    prim, info = standardize_relaxed(conv, relaxed)
    assert len(prim) == 1 and prim.volume == pytest.approx(relaxed.volume / 2, rel=1e-3)
    assert info.spacegroup_input == info.spacegroup_relaxed == "Im-3m (229)"
    assert info.standardized and (info.nsites_relaxed, info.nsites_standardized) == (2, 1)
    tetragonal = Structure(Lattice.tetragonal(3.28, 3.40), ["Nb", "Nb"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    _, info = standardize_relaxed(conv, tetragonal)
    assert info.spacegroup_relaxed == "I4/mmm (139)"  # a lowered symmetry is recorded, not hidden


def test_fast_flow_relaxes_then_computes_on_the_standardised_cell(library):
    from sc_inverse.qe.flows import ElectronPhononTcMaker

    nb = Structure(Lattice.cubic(3.30), ["Nb", "Nb"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    relax, gate, epc = ElectronPhononTcMaker(preset="fast", pseudo_dir=str(library),
                                             stability_gate=True).make(nb).jobs
    assert relax.name == "qe vc-relax" and relax.function.__self__.standardize
    gated = epc.function.__self__  # creates scf → elph at run time when the gate allows
    for p in (relax.function.__self__.preset, gate.function.__self__.preset,
              gated.scf_maker.preset, gated.elph_maker.preset):  # cutoffs fixed once, for all
        assert (p.name, p.ecutwfc, p.ecutrho) == ("fast", 42.0, 364.0)
    for j, cell in ((gate, gate.function_args[0]), (epc, epc.function_args[1])):
        length = j.function_kwargs["kpoint_length_A"]
        assert cell.uuid == relax.uuid and cell.attributes[-1][1] == "structure_standardized"
        assert length.uuid == relax.uuid and length.attributes[-1][1] == "kpoint_length_A"
    (library / "Nb.pbesol-spn-rrkjus_psl.1.0.0.UPF").write_text("")
    with pytest.raises(ParseError, match="Nb.pbesol-spn-rrkjus_psl.1.0.0.UPF: empty"):
        ElectronPhononTcMaker(preset="fast", pseudo_dir=str(library)).make(nb)


def test_sssp_style_mixed_names_with_one_pattern(tmp_path):
    for name in ("N.pbe-n-radius_5.UPF", "nb_pbe_v1.uspp.F.UPF", "Na.pbe-spn-kjpaw_psl.1.0.0.UPF"):
        (tmp_path / name).write_text("x")
    found = find_pseudopotentials(["N", "Nb", "Na"], tmp_path, "{el}[._-]*.upf")
    assert {el: p.name for el, p in found.items()} == {
        "N": "N.pbe-n-radius_5.UPF", "Nb": "nb_pbe_v1.uspp.F.UPF", "Na": "Na.pbe-spn-kjpaw_psl.1.0.0.UPF"}
