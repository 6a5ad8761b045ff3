import json
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

from sc_inverse.errors import InputError
from sc_inverse.records import CandidateRecord, load_records, load_structure, save_records
from sc_inverse.units import BOHR_TO_A


@pytest.fixture
def nacl():
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_json_records_with_structure_and_poscar(tmp_path, nacl):
    data = [
        {"id": "a", "structure": nacl.as_dict(), "note": 1},
        {"jid": "JVASP-1", "poscar": nacl.to(fmt="poscar")},
    ]
    f = tmp_path / "c.json"
    f.write_text(json.dumps(data))
    recs = load_records(f)
    assert [r.id for r in recs] == ["a", "JVASP-1"]
    assert recs[0].note == 1
    assert recs[1].get_structure().composition.reduced_formula == "NaCl"
    out = save_records(recs, tmp_path / "o.json")
    assert [r.id for r in load_records(out)] == ["a", "JVASP-1"]


def test_cif_file_folder_and_csv(tmp_path, nacl):
    nacl.to(filename=str(tmp_path / "x.cif"))
    assert load_records(tmp_path / "x.cif")[0].formula == "NaCl"
    assert len(load_records(tmp_path)) == 1
    import csv

    with (tmp_path / "t.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "cif"])
        w.writerow(["m1", nacl.to(fmt="cif")])
    assert load_records(tmp_path / "t.csv")[0].id == "m1"


@pytest.mark.parametrize(
    "payload, msg",
    [
        ([{"structure": {}}], "no 'id'"),
        ([{"id": "x"}], "none of the fields"),
        ([{"id": "x", "poscar": "garbage"}], "'poscar' cannot be parsed"),
        ({"a": 1}, "expected a JSON list"),
        ([{"id": "x", "poscar": "P\n1\n1 0 0\n0 1 0\n0 0 1\nAl\n1\ndirect\n0 0 0\n"}] * 2, "duplicate"),
    ],
)
def test_bad_records_name_the_problem(tmp_path, payload, msg):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(payload))
    with pytest.raises(InputError, match=msg):
        load_records(f)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_records(tmp_path / "nope.json")
    (tmp_path / "b.json").write_text("{")
    with pytest.raises(InputError, match="invalid JSON"):
        load_records(tmp_path / "b.json")


def test_pw_input_is_read_by_the_common_loader(tmp_path):
    head = "&control\n calculation='scf'\n/\n&system\n ibrav={ibrav}, nat=1, ntyp=1, ecutwfc=15{cd}\n/\n&electrons\n/\n"
    tail = "ATOMIC_SPECIES\n Al 26.98 Al.pz-vbc.UPF\nATOMIC_POSITIONS crystal\n Al 0.0 0.0 0.0\nK_POINTS automatic\n 8 8 8 0 0 0\n"
    f = tmp_path / "al.pwi"
    f.write_text(head.format(ibrav=0, cd="") + tail
                 + "CELL_PARAMETERS angstrom\n 0 1.9844 1.9844\n 1.9844 0 1.9844\n 1.9844 1.9844 0\n")
    (rec,) = load_records(f)
    assert rec.formula == "Al" and abs(rec.get_structure().volume - 2 * 1.9844**3) < 0.01
    f.write_text(head.format(ibrav=2, cd=", celldm(1)=7.5") + tail)
    with pytest.raises(InputError, match="al.pwi: not a readable pw.x input"):
        load_records(f)


def test_record_keeps_plain_json_when_fed_decoded_objects(nacl):
    from sc_inverse.records import CandidateRecord

    rec = CandidateRecord(id="x", structure=nacl, provenance={"unrelaxed_structure": nacl})
    dumped = rec.model_dump(mode="json")
    assert dumped["structure"]["@class"] == "Structure"
    assert dumped["provenance"]["unrelaxed_structure"]["@class"] == "Structure"


def test_stage_fields_are_declared_and_old_files_still_load(tmp_path, nacl):
    """A screened record written before the fields were declared loads into the typed fields;
    a user's own columns are kept (and written back) as extras."""
    from sc_inverse.records import CandidateRecord, RelaxationInfo

    old = {"id": "a", "structure": nacl.as_dict(), "passed": True, "rank": 1, "selected": True,
           "errors": {"gap_eV": "model unavailable"}, "duplicate_of": None, "matches_training": "JVASP-9",
           "relaxation": {"energy_eV": -7.0, "energy_per_atom_eV": -3.5, "initial_energy_per_atom_eV": -3.0,
                          "steps": 12, "converged": True, "volume_change_frac": 0.01, "seconds": 0.5,
                          "error": None, "calculator": "CHGNet"},
           "tc_K": 9.2, "split": "train"}
    f = tmp_path / "old.json"
    f.write_text(json.dumps([old]))
    (rec,) = load_records(f)
    assert rec.selected is True and rec.errors == {"gap_eV": "model unavailable"}
    assert rec.matches_training == "JVASP-9" and isinstance(rec.relaxation, RelaxationInfo)
    assert rec.relaxation.steps == 12 and rec.relaxation.calculator == "CHGNet"
    assert rec.model_extra == {"tc_K": 9.2, "split": "train"}  # only the user's columns are extras
    (again,) = load_records(save_records([rec], tmp_path / "new.json"))
    assert again == rec
    fresh = CandidateRecord.from_structure(nacl, id="b")
    assert fresh.selected is None and fresh.errors == {} and fresh.relaxation is None


AL_EXAMPLE = Path(__file__).parents[1] / "examples" / "al_fcc" / "Al.pwi"


def test_load_structure_al_example():
    s, sid = load_structure(AL_EXAMPLE)
    assert sid == "Al" and s.composition.reduced_formula == "Al" and len(s) == 1
    assert s.lattice.a == pytest.approx(7.5 * BOHR_TO_A / 2**0.5, rel=1e-6)
    assert s.lattice.alpha == pytest.approx(60.0)


def test_load_structure_poscar_and_bad_files(tmp_path, nacl):
    poscar = tmp_path / "POSCAR"
    load_structure(AL_EXAMPLE)[0].to(filename=str(poscar), fmt="poscar")
    assert load_structure(poscar)[0].composition.reduced_formula == "Al"
    bad = tmp_path / "broken.pwi"
    bad.write_text("&system\n ibrav=0, nat=2\n/\nATOMIC_POSITIONS crystal\n Al 0 0\n")
    with pytest.raises(InputError, match="broken.pwi"):
        load_structure(bad)
    with pytest.raises(InputError, match="no such file"):
        load_structure(tmp_path / "missing.cif")
    two = tmp_path / "two.json"
    save_records([CandidateRecord.from_structure(nacl, id="a"),
                  CandidateRecord.from_structure(nacl, id="b")], two)
    with pytest.raises(InputError, match="holds 2 structures; expected exactly one"):
        load_structure(two)


def test_atoms_too_close_sees_periodic_images_and_degenerate_cells():
    from sc_inverse.records import atoms_too_close, structure_problem

    fine = Structure(Lattice.cubic(4.2), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert not atoms_too_close(fine) and structure_problem(fine) is None
    across_boundary = Structure(Lattice.cubic(4.0), ["Nb", "Nb"], [[0.01, 0, 0], [0.95, 0, 0]])
    own_image = Structure(Lattice.from_parameters(4, 4, 0.4, 90, 90, 90), ["Nb"], [[0, 0, 0]])
    flat = Structure(Lattice([[4, 0, 0], [0, 4, 0], [4, 4, 1e-6]]), ["Nb"], [[0, 0, 0]])
    skewed = Structure(Lattice([[4, 0, 0], [3.9, 0.3, 0], [0, 0, 4]]), ["Nb"], [[0, 0, 0]])
    for s in (across_boundary, own_image, flat, skewed):
        assert atoms_too_close(s)
        assert structure_problem(s).startswith("atoms_too_close")


def test_unknown_element_is_refused_by_every_loader(tmp_path):
    poscar = tmp_path / "POSCAR"
    poscar.write_text("Xx\n1.0\n4 0 0\n0 4 0\n0 0 4\nXx\n1\ndirect\n0 0 0\n")
    with pytest.raises(InputError, match="'Xx' is not a chemical element"):
        load_records(poscar)
    batch = tmp_path / "b.json"
    batch.write_text(json.dumps([{"id": "bad", "poscar": poscar.read_text()},
                                 {"id": "ok", "poscar": "P\n1\n4 0 0\n0 4 0\n0 0 4\nAl\n1\ndirect\n0 0 0\n"}]))
    with pytest.raises(InputError, match=r"b.json\[0\]"):
        load_records(batch)
    bad, ok = load_records(batch, keep_unreadable=True)
    assert bad.id == "bad" and "not a chemical element" in bad.errors["structure"] and not bad.structure
    assert ok.formula == "Al" and not ok.errors
    (again_bad, _) = load_records(save_records([bad, ok], tmp_path / "saved.json"))
    assert again_bad.errors == bad.errors  # a saved unreadable record loads back as such
