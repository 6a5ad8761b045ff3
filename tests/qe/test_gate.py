"""The DFT stability gate (``sc_inverse.qe.gate``): inputs, the document built from recorded
real QE runs (``tests/test_data/qe/gate``, README there), the gated EPC job's branch, and real
QE runs (slow)."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
from jobflow import Flow, Response, job, run_locally
from pymatgen.core import Lattice, Structure
from qe_testutils import QE_DATA, QE_PSEUDO_DIR, have_qe, requires_qe

from factories import write_upf
from sc_inverse.errors import CalculationError, InputError, ParseError
from sc_inverse.qe.flows import ElectronPhononTcMaker
from sc_inverse.qe.gate import QeGatedElphMaker, QeStabilityGateMaker, gate_qgrid, reusable_phonons
from sc_inverse.qe.jobs import (
    QeElphMaker,
    QeScfMaker,
    copy_saved_phonons,
    resume_point,
    save_phonons,
)
from sc_inverse.qe.parsers import parse_cpu_time, parse_matdyn_modes
from sc_inverse.qe.schemas import GATE_SKIP_NOTE, PwTaskDoc, StabilityGateDoc
from sc_inverse.qe.sets import (
    TEST,
    MatdynQpointsInputGenerator,
    PhInputGenerator,
    Q2rInputGenerator,
    read_namelist,
)

GATE = QE_DATA / "gate"
#: bcc Zr as the recorded gate ran it (a = 3.57 Å; PBEsol Zr at 35/280 Ry, MP 0.02 Ry, k 8³)
ZR_PRESET = TEST.with_updates(pseudo_pattern="{el}.pbesol-*.UPF", ecutwfc=35.0, ecutrho=280.0,
                              smearing="mp", degauss=0.02, qpoints_grid=(2, 2, 2))


def bcc_zr() -> Structure:
    h = 3.57 / 2
    return Structure(Lattice([[-h, h, h], [h, -h, h], [h, h, -h]]), ["Zr"], [[0, 0, 0]])


def _gate_doc(case: str, preset=TEST, epc_unstable: bool = False) -> StabilityGateDoc:
    d = GATE / case
    scf = PwTaskDoc.from_directory(d, preset, "scf")
    return StabilityGateDoc.from_directory(d, preset, scf.structure, scf, epc_qpoints_grid=(4, 4, 4),
                                           epc_unstable=epc_unstable)


def _q_consistent(doc: StabilityGateDoc, q_frac, q_cart) -> None:
    """q_frac in the checked structure's reciprocal basis is the same vector as matdyn's q."""
    alat = np.linalg.norm(doc.structure.lattice.matrix[0])  # ibrav = 0: alat = |a1|
    cart = np.asarray(q_frac) @ doc.structure.lattice.reciprocal_lattice.matrix
    assert cart == pytest.approx(np.asarray(q_cart) * 2 * math.pi / alat, abs=1e-5)


def test_gate_inputs_are_phonons_only_and_epc_inputs_unchanged():
    epc = PhInputGenerator(preset=TEST).get_input_set((4, 4, 4)).text
    gate = PhInputGenerator(preset=TEST, electron_phonon=False).get_input_set((2, 2, 2)).text
    ph = read_namelist(gate, "inputph")
    assert "electron_phonon" not in ph and "fildvscf" not in ph and "el_ph_nsigma" not in ph
    assert ph["ldisp"] == ".true." and ph["nq1"] == "2" and gate.startswith("phonons")
    assert read_namelist(epc, "inputph")["electron_phonon"] == "'interpolated'"
    assert epc.startswith("electron-phonon") and "fildvscf" in epc
    assert read_namelist(Q2rInputGenerator().get_input_set().text, "input")["la2f"] == ".true."
    q2r = read_namelist(Q2rInputGenerator(la2f=False).get_input_set().text, "input")
    assert q2r["la2f"] == ".false." and "el_ph_nsigma" not in q2r
    assert "flvec = ' '" in MatdynQpointsInputGenerator().get_input_set([[0, 0, 0]]).text
    assert "flvec = 'qgrid.modes'" in MatdynQpointsInputGenerator(flvec="qgrid.modes").get_input_set(
        [[0, 0, 0]]).text


def test_gate_grid_is_gamma_plus_zone_boundary():
    assert gate_qgrid((4, 4, 4)) == (2, 2, 2)
    assert gate_qgrid((1, 3, 2)) == (1, 2, 2)
    assert gate_qgrid([2, 2, 1]) == (2, 2, 1)


def test_recorded_al_passes_the_gate():
    doc = _gate_doc("al_fcc")
    assert doc.stable is True and doc.epc_allowed and doc.epc_skipped_reason is None
    assert doc.qpoints_grid == [2, 2, 2] and doc.epc_qpoints_grid == [4, 4, 4]
    assert len(doc.qpoints) == 3 and doc.unstable_modes == []
    assert doc.min_frequency_cm1 == pytest.approx(148.06, abs=0.05)  # L point
    assert doc.reason.startswith("stable") and "gate's q grid" in doc.reason
    assert doc.calc_type == "stability-gate" and doc.scf.energy_eV == doc.energy_eV
    assert doc.cpu_time_s == pytest.approx(0.08 + 1.50, abs=0.5)
    for q in doc.qpoints:  # Γ, L and X of fcc: components 0 or ±½
        assert all(abs(2 * x - round(2 * x)) < 1e-6 for x in q.q_frac)
        _q_consistent(doc, q.q_frac, q.q_cart_2pi_alat)


def test_recorded_zr_is_stopped_at_the_gate_by_the_n_point_mode():
    """bcc Zr: the transverse N-point mode (q = ½ b_i, polarised along [1-10] relative to
    q ∥ [110]) is imaginary; the gate stops the EPC and records q and the pattern."""
    doc = _gate_doc("zr_bcc", ZR_PRESET)
    assert doc.stable is False and not doc.epc_allowed
    assert doc.epc_skipped_reason.startswith(GATE_SKIP_NOTE)
    assert doc.min_frequency_cm1 < -20.0 and doc.min_frequency_cm1 == pytest.approx(
        ZR_GATE_MIN_CM1, abs=1.0)
    n_modes = [m for m in doc.unstable_modes if sorted(abs(x) for x in m.q_frac) == [0, 0, 0.5]]
    assert n_modes and all(m.frequency_cm1 < -20 for m in doc.unstable_modes)
    mode = n_modes[0]
    _q_consistent(doc, mode.q_frac, mode.q_cart_2pi_alat)
    u = np.array(mode.displacements_re) + 1j * np.array(mode.displacements_im)
    assert u.shape == (1, 3)
    direction = np.real(u[0] * np.exp(-1j * np.angle(u[0][np.argmax(abs(u[0]))])))
    q = np.asarray(mode.q_cart_2pi_alat)
    assert abs(direction @ q) < 1e-6  # transverse
    assert sorted(abs(direction / np.linalg.norm(direction))) == pytest.approx(
        [0, 1 / math.sqrt(2), 1 / math.sqrt(2)], abs=1e-4)  # along <110>, ⟂ q ∥ <110>: T1 [1-10]
    assert doc.softest_q_frac == mode.q_frac or doc.min_frequency_cm1 <= mode.frequency_cm1
    forced = _gate_doc("zr_bcc", ZR_PRESET, epc_unstable=True)
    assert forced.stable is False and forced.epc_allowed and forced.epc_skipped_reason is None


#: lowest ASR-corrected mode of the recorded Zr gate run (tests/test_data/qe/gate/README.md)
ZR_GATE_MIN_CM1 = -96.8


def test_matdyn_modes_parser_and_cpu_time(tmp_path):
    modes = parse_matdyn_modes(GATE / "al_fcc" / "qgrid.modes")
    assert len(modes.qpoints_2pi_alat) == 3 and all(len(f) == 3 for f in modes.frequencies_cm1)
    assert modes.displacements[1][2].shape == (1, 3)
    assert np.linalg.norm(modes.displacements[1][2]) == pytest.approx(1.0, abs=1e-5)
    text = (GATE / "al_fcc" / "qgrid.modes").read_text()
    cut = tmp_path / "cut.modes"
    cut.write_text(text[: text.rindex("freq")])
    with pytest.raises(ParseError, match="truncated"):
        parse_matdyn_modes(cut)
    assert parse_cpu_time("     PHONON       :   1m 4.50s CPU   1m 9.00s WALL\n", "PHONON") == 64.5
    assert parse_cpu_time("no timing", "PWSCF") is None


def test_modes_must_match_the_ph_q_points(tmp_path):
    d = tmp_path / "al"
    shutil.copytree(GATE / "al_fcc", d)
    (d / "qgrid.modes").write_text((d / "qgrid.modes").read_text().replace(
        "0.3536     -0.3536      0.3536", "0.2000     -0.3536      0.3536"))
    scf = PwTaskDoc.from_directory(d, TEST, "scf")
    with pytest.raises(ParseError, match="differ from ph.x's dyn0"):
        StabilityGateDoc.from_directory(d, TEST, scf.structure, scf)


@pytest.fixture
def fake_lib(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    write_upf(lib / "Al.pz-vbc.UPF", "Al", functional="SLA PZ NOGX NOGC")
    return lib


def test_flow_wiring_with_and_without_the_gate(al_structure, fake_lib):
    gated = ElectronPhononTcMaker(preset="test", pseudo_dir=str(fake_lib),
                                  stability_gate=True).make(al_structure)
    gate, epc = gated.jobs
    assert [j.name for j in gated.jobs] == ["qe stability gate", "qe epc"]
    assert isinstance(gate.maker, QeStabilityGateMaker) and not gate.maker.epc_unstable
    assert epc.function_args[0].uuid == gate.uuid and gated.output.uuid == epc.uuid
    forced = ElectronPhononTcMaker(preset="test", pseudo_dir=str(fake_lib), stability_gate=True,
                                   epc_unstable=True).make(al_structure)
    assert forced.jobs[1].name == "qe epc (epc-unstable)" and forced.jobs[0].maker.epc_unstable
    assert forced.jobs[1].maker.epc_unstable
    plain = ElectronPhononTcMaker(preset="test", pseudo_dir=str(fake_lib),
                                  stability_gate=False).make(al_structure)
    assert [j.name for j in plain.jobs] == ["qe scf", "qe elph"]


def test_gated_job_ends_the_branch_or_creates_the_unchanged_epc_jobs(al_structure):
    maker = QeGatedElphMaker(scf_maker=QeScfMaker(preset=TEST))
    zr = _gate_doc("zr_bcc", ZR_PRESET)
    assert maker.make.original(maker, zr, bcc_zr()) is zr
    forced = QeGatedElphMaker(epc_unstable=True)  # a re-run reusing the first run's gate
    assert isinstance(forced.make.original(forced, zr, bcc_zr()), Response)
    resp = maker.make.original(maker, _gate_doc("al_fcc").model_dump(), al_structure,
                               kpoints_grid=(8, 8, 8))
    assert isinstance(resp, Response) and isinstance(resp.replace, Flow)
    scf, elph = resp.replace.jobs
    assert [scf.name, elph.name] == ["qe scf", "qe elph"]
    assert scf.function_args == (al_structure,) and scf.function_kwargs["kpoints_grid"] == (8, 8, 8)
    assert elph.function_args[0].uuid == scf.uuid and resp.replace.output.uuid == elph.uuid


def test_gated_out_branch_runs_downstream_jobs(tmp_path):
    """No stop_children: a job that reads the gated EPC output (the run's finalize, the
    builders) still runs and receives the gate's document."""
    zr = _gate_doc("zr_bcc", ZR_PRESET)

    @job
    def gate_stub():
        return zr

    @job
    def consumer(epc):
        return {"calc_type": epc.calc_type, "stable": epc.stable}

    g = gate_stub()
    epc = QeGatedElphMaker().make(g.output, bcc_zr())
    end = consumer(epc.output)
    out = run_locally(Flow([g, epc, end]), root_dir=tmp_path, log=False, ensure_success=True)
    assert out[end.uuid][1].output == {"calc_type": "stability-gate", "stable": False}


@requires_qe
@pytest.mark.qe
@pytest.mark.slow
@pytest.mark.skipif(not have_qe("pw.x"), reason="QE missing")
def test_real_qe_zr_stopped_at_gate_then_forced(tmp_path, monkeypatch):
    """bcc Zr end to end: the gate stops it (EPC not run); a re-run with epc_unstable reuses
    the gate and runs the EPC, whose own verdict agrees (unstable)."""
    from sc_inverse.pipeline.epc import epc_summary, run_epc
    from sc_inverse.qe.pslibrary import default_library_dir
    from sc_inverse.settings import get_settings

    # the tests' data dir is a fresh one: the library comes from settings.pseudo_dir
    # (SC_INVERSE_PSEUDO_DIR) unless it was built there
    lib = get_settings().pseudo_dir or default_library_dir("pbesol", "standard")
    if lib is None or not any(lib.glob("Zr.pbesol-*.UPF")):
        pytest.skip("PBEsol library with Zr not found (set SC_INVERSE_PSEUDO_DIR)")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    preset = ZR_PRESET.with_updates(pseudo_dir=str(lib), la2f_kpoints_grid=None)
    doc = run_epc(bcc_zr(), tmp_path, preset=preset, stability_gate=True)
    assert isinstance(doc, StabilityGateDoc) or doc["calc_type"] == "stability-gate"
    summary = epc_summary(doc)
    assert summary["epc_run"] is False and summary["dynamically_stable"] is False
    assert summary["min_frequency_cm1"] == pytest.approx(ZR_GATE_MIN_CM1, abs=2.0)
    forced = run_epc(bcc_zr(), tmp_path, preset=preset, stability_gate=True, epc_unstable=True)
    assert forced.calc_type == "elph" and forced.dynamically_stable is False
    assert forced.min_frequency_qgrid_cm1 == pytest.approx(ZR_GATE_MIN_CM1, abs=2.0)


@requires_qe
@pytest.mark.qe
@pytest.mark.slow
def test_real_qe_al_passes_gate_and_runs_epc(al_structure, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    from sc_inverse.pipeline.epc import run_epc

    doc = run_epc(al_structure, tmp_path, preset="test", pseudo_dir=str(QE_PSEUDO_DIR),
                  stability_gate=True)
    assert doc.calc_type == "elph" and doc.dynamically_stable is True
    row = next(r for r in doc.smearing_table if abs(r.sigma_Ry - 0.01) < 1e-9)
    assert row.lambda_ == pytest.approx(0.435, abs=0.03)


@requires_qe
@pytest.mark.qe
@pytest.mark.slow
def test_real_qe_gate_scf_carries_the_dft_gap(al_structure, tmp_path, monkeypatch):
    """The gate job alone on fcc Al (≈ 2 s CPU): stable, and its scf document has the DFT
    gap read before the outdir is deleted (metal: 0.0)."""
    from jobflow import JobStore
    from maggma.stores import MemoryStore

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    gate = QeStabilityGateMaker(preset="test", pseudo_dir=str(QE_PSEUDO_DIR)).make(al_structure)
    store = JobStore(MemoryStore())
    run_locally(gate, store=store, create_folders=True, root_dir=tmp_path, log=False,
                ensure_success=True)
    with store:
        doc = StabilityGateDoc.model_validate(store.get_output(gate.uuid))
    assert doc.stable is True and doc.epc_allowed and doc.qpoints_grid == [2, 2, 2]
    assert doc.scf.outdir is None and not list(tmp_path.rglob("out"))  # wavefunctions deleted
    assert list(tmp_path.rglob("qgrid.modes"))
    assert doc.scf.electronic is not None and doc.scf.electronic.band_gap_eV == 0.0
    assert doc.cpu_time_s > 0 and [t.step for t in doc.timings] == ["scf", "ph", "q2r",
                                                                     "matdyn_qgrid"]


# ---------------------------------------------------------------------------------------------
# reuse of the gate's phonons by the EPC (gate grid == EPC q grid)
# ---------------------------------------------------------------------------------------------
def test_reuse_inputs_keep_dvscf_in_the_gate_and_skip_phonons_in_the_epc():
    gate = read_namelist(PhInputGenerator(preset=TEST, electron_phonon=False, save_dvscf=True)
                         .get_input_set((2, 2, 2)).text, "inputph")
    assert gate["fildvscf"] == "'dvscf'" and gate["trans"] == ".true."
    assert "electron_phonon" not in gate and "el_ph_nsigma" not in gate
    text = PhInputGenerator(preset=TEST, trans=False).get_input_set((2, 2, 2)).text
    epc = read_namelist(text, "inputph")
    assert epc["trans"] == ".false." and epc["electron_phonon"] == "'interpolated'"
    assert epc["fildvscf"] == gate["fildvscf"] and epc["fildyn"] == gate["fildyn"]
    assert epc["ldisp"] == ".true." and epc["nq1"] == "2" and text.startswith("electron-phonon")
    with pytest.raises(InputError):
        PhInputGenerator(electron_phonon=False, trans=False).get_input_set((2, 2, 2))


def _fake_gate_phonons(directory):
    """A gate directory as ph.x (phonons + fildvscf, lqdir) leaves it: patterns, dvscf at Γ
    and q_2, wavefunctions that must not travel, and the recorded Al dyn0..3 (grid 2³)."""
    ph0 = directory / "out" / "_ph0"
    (ph0 / "qe.phsave").mkdir(parents=True)
    (ph0 / "qe.phsave" / "patterns.1.xml").write_text("<u/>")
    (ph0 / "qe.dvscf1").write_bytes(b"g")
    (ph0 / "qe.q_2").mkdir()
    (ph0 / "qe.q_2" / "qe.dvscf1").write_bytes(b"x")
    (ph0 / "qe.q_2" / "qe.dvscf_paw1").write_bytes(b"p")
    (ph0 / "qe.q_2" / "qe.wfc1").write_bytes(b"w" * 100)
    for i in range(4):
        shutil.copy2(GATE / "al_fcc" / f"dyn{i}", directory / f"dyn{i}")


def test_saved_phonons_travel_without_wavefunctions_and_only_to_the_same_grid(tmp_path):
    gate_dir, elph_dir = tmp_path / "gate", tmp_path / "elph"
    gate_dir.mkdir()
    elph_dir.mkdir()
    with pytest.raises(CalculationError):
        save_phonons(gate_dir)  # no ph.x run there
    _fake_gate_phonons(gate_dir)
    saved = save_phonons(gate_dir)
    shutil.rmtree(gate_dir / "out")  # the gate deletes its outdir
    assert sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file()) == [
        "qe.dvscf1", "qe.phsave/patterns.1.xml", "qe.q_2/qe.dvscf1", "qe.q_2/qe.dvscf_paw1"]
    with pytest.raises(CalculationError, match="q grid"):
        copy_saved_phonons(gate_dir, elph_dir, (4, 4, 4))
    copy_saved_phonons(gate_dir, elph_dir, (2, 2, 2))
    ph0 = elph_dir / "out" / "_ph0"
    assert (ph0 / "qe.q_2" / "qe.dvscf1").read_bytes() == b"x" and not (ph0 / "qe.q_2" / "qe.wfc1").exists()
    assert (ph0 / "qe.phsave" / "patterns.1.xml").is_file()
    assert [(elph_dir / f"dyn{i}").read_text() for i in range(4)] == [
        (GATE / "al_fcc" / f"dyn{i}").read_text() for i in range(4)]
    # the copied dyn files alone are no finished q-point: a ph.x in that directory starts at 1
    assert resume_point(elph_dir) is None
    with pytest.raises(CalculationError, match="no saved phonons"):
        copy_saved_phonons(tmp_path / "missing", elph_dir, (2, 2, 2))


def test_gated_epc_passes_the_gate_phonons_only_when_kept_and_wanted(al_structure, tmp_path):
    _fake_gate_phonons(tmp_path)
    save_phonons(tmp_path)
    doc = _gate_doc("al_fcc")
    assert doc.phonons_dir is None  # a gate that kept nothing
    kept = doc.model_copy(update={"phonons_dir": str(tmp_path)})

    def elph_kwargs(maker, gate):
        resp = maker.make.original(maker, gate, al_structure, kpoints_grid=(8, 8, 8))
        return resp.replace.jobs[1].function_kwargs

    reuse = QeGatedElphMaker(reuse_phonons=True)
    assert elph_kwargs(reuse, kept)["phonons_dir"] == str(tmp_path)
    assert elph_kwargs(reuse, doc)["phonons_dir"] is None
    assert elph_kwargs(QeGatedElphMaker(), kept)["phonons_dir"] is None  # off by default
    fanout = QeGatedElphMaker(elph_maker=QeElphMaker(fanout=True), reuse_phonons=True)
    assert elph_kwargs(fanout, kept)["phonons_dir"] is None  # the fan-out computes its own
    gone = doc.model_copy(update={"phonons_dir": str(tmp_path / "cleaned")})
    assert reusable_phonons(gone, True) is None


def test_flow_switch_for_phonon_reuse(al_structure, fake_lib):
    """Off by default (QE's two-step route moves λ at small σ enough to flip the σ rule on bcc
    Nb, docs/validation.md); the switch reaches both the gate and the gated EPC job."""
    off = ElectronPhononTcMaker(preset="test", pseudo_dir=str(fake_lib),
                                stability_gate=True).make(al_structure)
    assert not off.jobs[0].maker.reuse_phonons and not off.jobs[1].maker.reuse_phonons
    on = ElectronPhononTcMaker(preset="test", pseudo_dir=str(fake_lib), stability_gate=True,
                               reuse_gate_phonons=True).make(al_structure)
    assert on.jobs[0].maker.reuse_phonons and on.jobs[1].maker.reuse_phonons


@requires_qe
@pytest.mark.qe
@pytest.mark.slow
def test_real_qe_al_epc_from_the_gate_phonons_matches_its_own(al_structure, tmp_path,
                                                              monkeypatch):
    """QE's Al example at q 2³ (the gate's grid = the EPC's; ≈ 10 s CPU in all): the EPC that
    reads the gate's phonons (ph.x trans=.false.) gives the λ, ω_log of the EPC without gate to
    3e-3 (measured 7e-4 / 4e-4 at σ 0.010-0.015 Ry). The difference is QE's two-step route
    itself (the same numbers from trans=.false. in the one-step run's own directory), not the
    gate's scf."""
    from sc_inverse.pipeline.epc import run_epc

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    preset = TEST.with_updates(qpoints_grid=(2, 2, 2))
    kw = {"preset": preset, "pseudo_dir": str(QE_PSEUDO_DIR)}
    reused = run_epc(al_structure, tmp_path / "reuse", stability_gate=True,
                     reuse_gate_phonons=True, **kw)
    plain = run_epc(al_structure, tmp_path / "plain", stability_gate=False, **kw)
    assert reused.phonons_from is not None and plain.phonons_from is None
    ph_in = next((tmp_path / "reuse").rglob("qe-elph/ph.in")).read_text()
    assert read_namelist(ph_in, "inputph")["trans"] == ".false."
    assert "Reading dVscf from file" in next((tmp_path / "reuse").rglob("qe-elph/ph.out")).read_text()
    assert np.allclose([q.frequencies_cm1 for q in reused.qpoints],
                       [q.frequencies_cm1 for q in plain.qpoints], atol=0.01)
    for a, b in zip(reused.smearing_table, plain.smearing_table, strict=True):
        if b.lambda_ and b.lambda_ > 0.1:
            assert a.lambda_ == pytest.approx(b.lambda_, rel=3e-3)
            assert a.omega_log_K == pytest.approx(b.omega_log_K, rel=3e-3)


# ---------------------------------------------------------------------------------------------
# the screen's band-gap criterion judged at the gate: no phonons, no EPC for a non-metal
# ---------------------------------------------------------------------------------------------
def test_gate_gap_threshold_is_the_screens_criterion():
    from sc_inverse.qe.gate import DFT_MAX_GAP_EV
    from sc_inverse.screening.criteria import default_criteria

    (gap,) = [c for c in default_criteria() if c.key == "gap_eV"]
    assert (gap.comparison, gap.threshold) == ("<", DFT_MAX_GAP_EV)


def test_row_note_of_a_gate_stopped_for_its_gap_has_no_mode():
    from sc_inverse.pipeline.jobs import _gate_note
    from sc_inverse.qe.schemas import GAP_SKIP_NOTE

    why = f"{GAP_SKIP_NOTE}: DFT band gap 0.512 eV >= 0.05 eV at the gate's scf"
    assert _gate_note({"min_frequency_cm1": None, "epc_skipped_reason": why}) == why
    assert _gate_note({"min_frequency_cm1": -80.0, "softest_q_frac": [0.5, 0, 0]}).startswith(
        f"{GATE_SKIP_NOTE}: lowest mode -80.0")


@pytest.mark.qe
@pytest.mark.skipif(not have_qe("pw.x") or not (QE_PSEUDO_DIR / "Si.pz-vbc.UPF").is_file(),
                    reason="pw.x or Si.pz-vbc.UPF not installed")
def test_real_qe_gate_stops_an_insulator_after_its_scf(tmp_path, monkeypatch):
    """Diamond Si (test preset, real pw.x ≈ 1 s): the gate's scf finds the gap, computes no
    phonons, and the gated EPC job returns the gate document (no scf(la2F), no ph.x)."""
    from jobflow import JobStore
    from maggma.stores import MemoryStore

    from sc_inverse.qe.schemas import GAP_SKIP_NOTE

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    si = Structure(Lattice.cubic(5.43), ["Si"] * 8, [
        [0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0],
        [.25, .25, .25], [.25, .75, .75], [.75, .25, .75], [.75, .75, .25]]
    ).get_primitive_structure()
    gate = QeStabilityGateMaker(preset="test", pseudo_dir=str(QE_PSEUDO_DIR)).make(
        si, kpoints_grid=(4, 4, 4))
    epc = QeGatedElphMaker().make(gate.output, si, kpoints_grid=(4, 4, 4))
    store = JobStore(MemoryStore())
    run_locally(Flow([gate, epc]), store=store, create_folders=True, root_dir=tmp_path,
                log=False, ensure_success=True)
    with store:
        doc = StabilityGateDoc.model_validate(store.get_output(gate.uuid))
        final = store.get_output(epc.uuid, load=True)
    assert 0.3 < doc.scf.electronic.band_gap_eV < 1.0  # LDA Si
    assert doc.stable is None and not doc.epc_allowed and doc.qpoints == []
    assert doc.epc_skipped_reason.startswith(GAP_SKIP_NOTE) and "phonons not computed" in doc.reason
    assert [t.step for t in doc.timings] == ["scf"] and doc.cpu_time_s > 0
    assert not list(tmp_path.rglob("ph.in")) and not list(tmp_path.rglob("out"))
    assert final["calc_type"] == "stability-gate" and final["epc_skipped_reason"] == doc.epc_skipped_reason
