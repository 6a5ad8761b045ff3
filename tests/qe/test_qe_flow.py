"""Makers and flow: wiring, the analysis on recorded ph.x data, fan-out merge, real QE runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest
from jobflow import Flow, JobStore, OutputReference, run_locally
from maggma.stores import MemoryStore
from pymatgen.core import Lattice, Structure
from qe_testutils import AL_EXAMPLE, QE_PSEUDO_DIR, ROOT, requires_qe

from factories import write_upf
from sc_inverse.errors import MissingPseudopotentialError, ParseError
from sc_inverse.pipeline.epc import run_epc
from sc_inverse.qe.flows import ElectronPhononTcMaker
from sc_inverse.qe.jobs import (
    QeElphMaker,
    QeElphMergeMaker,
    QeRelaxMaker,
    QeScfMaker,
    analyse_elph,
)
from sc_inverse.qe.parsers import parse_lambda_dat
from sc_inverse.qe.schemas import ElphTaskDoc, QPointPhonons, QPointTaskDoc
from sc_inverse.qe.sets import PAPER, TEST
from sc_inverse.units import RY_TO_EV


@pytest.fixture
def fake_lib(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    write_upf(lib / "Al.pz-vbc.UPF", "Al", functional="SLA PZ NOGX NOGC")
    return lib


def _store():
    return JobStore(MemoryStore(), additional_stores={"data": MemoryStore()})


def test_flow_wiring(al_structure, fake_lib):
    """Without the stability gate (its wiring: tests/qe/test_gate.py) the flow is scf → elph."""
    flow = ElectronPhononTcMaker(preset="test", pseudo_dir=str(fake_lib),
                                 stability_gate=False).make(al_structure)
    assert isinstance(flow, Flow) and [j.name for j in flow.jobs] == ["qe scf", "qe elph"]
    scf, elph = flow.jobs
    refs = [a for a in elph.function_args if isinstance(a, OutputReference)]
    assert refs and all(r.uuid == scf.uuid for r in refs)
    assert flow.output.uuid == elph.uuid
    relaxed = ElectronPhononTcMaker(preset="test", pseudo_dir=str(fake_lib), relax=True,
                                    fanout=True, stability_gate=False).make(al_structure)
    relax, scf2, elph2 = relaxed.jobs
    assert scf2.function_args[0].uuid == relax.uuid  # the relaxed structure goes to the scf
    assert elph2.maker.fanout and relax.name == "qe vc-relax"


def test_missing_pseudopotentials_fail_before_any_job(fake_lib):
    s = Structure(Lattice.cubic(4.2), ["Nb", "Al", "Sn"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0]])
    with pytest.raises(MissingPseudopotentialError) as err:
        ElectronPhononTcMaker(preset="test", pseudo_dir=str(fake_lib)).make(s)
    assert err.value.elements == ["Nb", "Sn"]


@requires_qe
@pytest.mark.qe
def test_analyse_recorded_elph(al_elph_dir, al_structure):
    doc = analyse_elph(al_elph_dir, TEST, (8, 8, 8), structure=al_structure, energy_eV=-56.958,
                       label="elph")
    assert isinstance(doc, ElphTaskDoc)
    row = next(r for r in doc.smearing_table if abs(r.sigma_Ry - 0.01) < 1e-9)
    assert row.lambda_ == pytest.approx(0.435, abs=0.03)
    assert row.omega_log_K == pytest.approx(353, abs=20)
    assert row.lambda_lambdax == pytest.approx(row.lambda_, abs=2e-3)
    assert doc.selected_sigma_Ry == pytest.approx(0.01) and doc.lambda_ == row.lambda_
    assert 1.5 < doc.tc_K < 3.5 and doc.tc_mcmillan_K > 0 and doc.debye_temperature_K > 300
    assert doc.dynamically_stable and doc.min_frequency_cm1 > doc.imaginary_threshold_cm1
    assert len(doc.smearing_table) == 10 and doc.n_q_irreducible == 8
    assert sum(q.weight for q in doc.qpoints) == pytest.approx(1.0)
    assert doc.a2f.a2f and len(doc.a2f.matdyn_a2f) == 10 and doc.a2f.phonon_dos
    assert [t.step for t in doc.timings] == ["q2r", "matdyn", "matdyn_qgrid", "lambda"]  # run_qe
    assert doc.energy_per_atom_eV == pytest.approx(-56.958)
    assert doc.qe_version == "6.7MaX" and doc.input.qpoints_grid == [4, 4, 4]


@requires_qe
@pytest.mark.qe
def test_truncated_epc_file_fails_before_q2r(al_elph_dir, al_structure):
    f = al_elph_dir / "elph_dir" / "elph.inp_lambda.3"
    f.write_text(f.read_text()[:300])
    with pytest.raises(ParseError, match="elph.inp_lambda.3"):
        analyse_elph(al_elph_dir, TEST, (8, 8, 8), structure=al_structure)
    assert not (al_elph_dir / "q2r.out").exists()


@requires_qe
@pytest.mark.qe
def test_fanout_merge_of_recorded_qpoints(al_elph_dir, tmp_path, qe_data):
    """The merge job gathers per-q job folders (as the fan-out leaves them) into one analysis."""
    init = tmp_path / "init"
    init.mkdir()
    shutil.copy(al_elph_dir / "dyn0", init / "dyn0")
    docs = []
    for i in range(1, 9):
        qdir = tmp_path / f"q{i}"
        (qdir / "elph_dir").mkdir(parents=True)
        shutil.copy(al_elph_dir / f"dyn{i}", qdir / f"dyn{i}")
        for f in (al_elph_dir / "elph_dir").glob(f"*.{i}"):
            shutil.copy(f, qdir / "elph_dir" / f.name)
        shutil.copy(al_elph_dir / "ph.in", qdir / "ph.in")
        docs.append(QPointTaskDoc(calc_type="ph-q", dir_name=str(qdir), input={"preset": "test"},
                                  q_index=i, n_q_irreducible=8,
                                  qpoint=QPointPhonons.from_directory(qdir, i)).model_dump())
    job = QeElphMergeMaker(preset=TEST).make(docs[::-1], str(init), [8, 8, 8])
    store = _store()
    run_locally(job, store=store, create_folders=True, root_dir=tmp_path / "run", log=False,
                raise_immediately=True)
    with store:
        doc = store.get_output(job.uuid, load=True)
    assert doc["fanout"] is True and doc["n_q_irreducible"] == 8
    assert doc["input"]["parameters"]["inputph"]["nq1"] == "4"  # q1's ph.in was gathered
    assert doc["lambda_"] == pytest.approx(0.435, abs=2e-3)
    assert doc["a2f"]["a2f"]  # loaded back from the additional 'data' store


@requires_qe
@pytest.mark.qe
@pytest.mark.slow
@pytest.mark.ci
def test_epc_cli_on_al_example(tmp_path):
    """The README main command: full scf(la2F) → ph.x → q2r → matdyn → T_c chain on fcc Al."""
    out = tmp_path / "r.json"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "sc_inverse.cli", "epc", str(AL_EXAMPLE), "--preset", "test",
         "--pseudo-dir", str(QE_PSEUDO_DIR), "--out", str(out), "--workdir", str(tmp_path / "wd")],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    for key in ("lambda", "omega_log_K", "tc_K", "dynamically_stable", "smearing_table"):
        assert key in r
    row = next(x for x in r["smearing_table"] if abs(x["sigma_Ry"] - 0.01) < 1e-9)
    assert row["lambda"] == pytest.approx(0.435, abs=0.03)
    assert row["omega_log_K"] == pytest.approx(353, abs=20)
    assert r["tc_K"] > 0 and r["dynamically_stable"] is True
    assert "T_c(Allen-Dynes" in proc.stdout
    assert wall < 180


@requires_qe
@pytest.mark.qe
@pytest.mark.slow
def test_fanout_flow_matches_monolithic(al_structure, tmp_path, qe_data, monkeypatch):
    """Real fan-out (one ph.x job per irreducible q) reproduces the monolithic λ table."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    doc = run_epc(al_structure, tmp_path / "wd", preset="test", pseudo_dir=str(QE_PSEUDO_DIR),
                  fanout=True)
    assert doc.fanout and len(doc.timings) == 8 + 4  # 8 ph.x runs, q2r, 2 matdyn, lambda
    ref = parse_lambda_dat(qe_data / "al_elph" / "lambda.dat")  # monolithic run, lambda.x
    for row, r in zip(doc.smearing_table, ref, strict=True):
        assert row.lambda_ == pytest.approx(r["lambda"], abs=3e-3)


def test_makers_are_plain_dataclasses():
    assert QeScfMaker(preset="test").name == "qe scf"
    assert QeElphMaker(fanout=True).fanout


@requires_qe
@pytest.mark.qe
@pytest.mark.slow
def test_paper_relax_with_automatic_kpoints(al_structure, tmp_path, monkeypatch):
    """The paper preset's path (k-length convergence to 1 mRy, prime bump, vc-relax with
    qcutz/local-TF) on real pw.x; LDA Al.pz-vbc stands in for the GBRV library."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    preset = PAPER.with_updates(pseudo_pattern="{el}.pz-vbc.UPF", ecutwfc=20.0, ecutrho=80.0,
                                relax_system={"q2sigma": 1.0, "ecfixed": 19.5, "qcutz": 200.0})
    job = QeRelaxMaker(preset=preset, pseudo_dir=str(QE_PSEUDO_DIR)).make(al_structure)
    store = _store()
    run_locally(job, store=store, create_folders=True, root_dir=tmp_path, log=False,
                raise_immediately=True)
    with store:
        doc = store.get_output(job.uuid)
    hist = doc["kpoint_convergence"]
    assert len(hist) >= 2
    assert abs(hist[-1]["energy_eV"] - hist[-2]["energy_eV"]) < 1e-3 * RY_TO_EV
    grid = doc["input"]["kpoints_grid"]
    assert all(n == 1 or any(n % d == 0 for d in range(2, n)) for n in grid)  # no prime dims
    final = Structure.from_dict(doc["structure"])
    assert final.volume != pytest.approx(al_structure.volume, rel=1e-4)
    assert doc["input"]["parameters"]["electrons"]["mixing_mode"] == "'local-TF'"


@requires_qe
@pytest.mark.qe
def test_stability_flag_follows_threshold(al_elph_dir, al_structure):
    """Al's softest judged mode (acoustic at Γ excluded) is the mesh point next to Γ, 47 cm⁻¹:
    stable at -20, 'unstable' at +50."""
    strict = TEST.with_updates(imaginary_threshold_cm1=50.0)
    doc = analyse_elph(al_elph_dir, strict, (8, 8, 8), structure=al_structure)
    assert doc.dynamically_stable is False and doc.imaginary_threshold_cm1 == 50.0
    assert 40.0 < doc.min_frequency_cm1 < 50.0 and doc.softest_mode_source == "mesh"
    assert doc.stability_reason.startswith("unstable")
