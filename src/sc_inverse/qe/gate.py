"""The DFT stability gate: a phonons-only check before the electron-phonon run.

A dynamically unstable candidate's EPC result is thrown away, and ph.x with electron-phonon
coupling (plus the dense la2F scf it needs) is the most expensive step of the flow. The gate
runs, on the cell the EPC would use:

* pw.x scf on the normal k grid, no la2F (its document also serves the convex hull and the DFT
  band gap, so a gated-out candidate still gets both);
* ph.x phonons only (``electron_phonon`` off, no dvscf) with ``ldisp`` on the grid
  min(2, n_i) of the EPC q grid: Γ plus the zone-boundary points of that grid, reduced by
  symmetry by ph.x - the cheapest q set that sees the zone-boundary instabilities a coarse EPC
  grid sees (bcc Zr's N point, ½ of a 2³ grid);
* q2r.x (force constants only) and matdyn.x on ph.x's irreducible q points with the acoustic
  sum rule, writing frequencies and displacement patterns.

When the gate's grid *is* the EPC q grid (a 2³ EPC grid, usual at ``fast``/``paper``) the
gate's ph.x also writes the potential variations (``fildvscf``) and keeps them with the
displacement patterns (``gate_ph0``) and its dynamical matrices; the EPC's ph.x then runs with
``trans=.false.`` on them and computes only the electron-phonon matrix elements, so a candidate
that passes the gate pays for its phonons once (``reuse_phonons``; off by default: QE's
two-step route moves λ at small σ by up to 0.5 %, enough to flip the σ rule on bcc Nb at
``fast`` - docs/validation.md).

The verdict is :func:`~sc_inverse.qe.stability.assess_stability` with the preset's threshold on
those q points only: a mesh Fourier-interpolated from a ≤ 2³ grid is interpolation noise
(real force constants reach further than one cell), so it is not judged. An instability
between the gate's q points is left to the EPC run's own verdict, which still judges its finer
grid and mesh.

:class:`QeStabilityGateMaker` is the gate job; :class:`QeGatedElphMaker` is the job after it,
which replaces itself by scf(la2F) → elph when the gate allows, and otherwise ends the branch
with the gate's document as its output (no ``stop_children``: the hull, the run's finalize
job and the builders downstream must still run, locally and under FireWorks).
"""

from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from jobflow import CURRENT_JOB, Flow, Maker, Response, job
from pymatgen.core import Structure

from sc_inverse.qe.attempts import resumable, resuming_from
from sc_inverse.qe.jobs import (
    QeElphMaker,
    QeScfMaker,
    _corrections,
    _ph_handlers,
    _PwMaker,
    _timings,
    keep_earlier_output,
    resume_point,
    run_pw,
    save_phonons,
)
from sc_inverse.qe.kpoints import as_mesh, qgrid_from_kgrid
from sc_inverse.qe.parsers import parse_dyn0
from sc_inverse.qe.run import QeRunResult, run_qe
from sc_inverse.qe.schemas import PwTaskDoc, QeCorrection, StabilityGateDoc
from sc_inverse.qe.sets import (
    FILDYN,
    FLFRC,
    OUTDIR,
    PREFIX,
    QGRID_MODES,
    SAVED_PH0,
    MatdynQpointsInputGenerator,
    Mesh,
    PhInputGenerator,
    Q2rInputGenerator,
    QePreset,
)

logger = logging.getLogger(__name__)

#: the screen's E_gap < 0.05 eV criterion (screening/criteria.py), judged on the gate's scf
DFT_MAX_GAP_EV = 0.05

#: namespace of the uuids of the jobs the gated EPC job creates (derived from its own uuid, so a
#: re-run of the same flow finds its scf/elph outputs again)
GATED_UUID_NAMESPACE = uuid.UUID("3c9a7e52-0f0b-4d55-a0a4-7d1f5b2c9e10")


def gate_qgrid(epc_qgrid) -> Mesh:
    """The gate's ph.x grid: min(2, n_i) per direction of the EPC q grid (Γ + zone boundary)."""
    return tuple(min(2, int(n)) for n in as_mesh(epc_qgrid, "qpoints_grid"))  # type: ignore[return-value]


def gate_resume(directory: Path) -> tuple[list[QeRunResult], int | None]:
    """Where the gate's ph.x continues when this attempt took over a killed one's files: the
    first irreducible q-point without a finished dynamical matrix (None: start afresh), and a
    ``resume`` record whose action is empty when every q-point finished (ph.x is not run)."""
    earlier = resuming_from()
    start = resume_point(directory, elph=False) if earlier is not None else None
    if start is None:
        return [], None
    n_q = len(parse_dyn0(directory / f"{FILDYN}0")[1])
    kept = keep_earlier_output(directory, "ph")
    logger.info("gate ph.x: q-points 1-%d of %d finished in the earlier attempt", start - 1, n_q)
    note = QeCorrection(handler="resume", step="ph", errors=[
        f"q-points 1-{start - 1} of {n_q} finished in the earlier attempt in {earlier} "
        f"(its log kept as {kept.name})"],
        actions=[{"_set": {"inputph.start_q": start}}] if start <= n_q else [])
    return [QeRunResult(kept, [note])], start


def run_gate_phonons(preset: QePreset, qgrid: Mesh, directory: Path, max_seconds=None,
                     walltime_s=None, settings=None, save_dvscf: bool = False,
                     ) -> list[QeRunResult]:
    """ph.x (phonons only; ``save_dvscf``: writing the potential variations too) on ``qgrid``,
    q2r.x (force constants) and matdyn.x on ph.x's irreducible q points (ASR, frequencies +
    displacement patterns) in ``directory``."""
    runs, start = gate_resume(directory)
    if start is None or runs[0].corrections[0].actions:
        ph = PhInputGenerator(preset=preset, fildyn=FILDYN, electron_phonon=False,
                              save_dvscf=save_dvscf).get_input_set(
            qgrid, outdir=OUTDIR, prefix=PREFIX, max_seconds=max_seconds, start_q=start)
        runs.append(run_qe("ph", ph, directory, _ph_handlers(walltime_s), settings=settings))
    q2r = Q2rInputGenerator(fildyn=FILDYN, flfrc=FLFRC, la2f=False).get_input_set()
    runs.append(run_qe("q2r", q2r, directory, settings=settings))
    _, irreducible = parse_dyn0(directory / f"{FILDYN}0")
    qlist = MatdynQpointsInputGenerator(flfrc=FLFRC, flvec=QGRID_MODES).get_input_set(irreducible)
    runs.append(run_qe("matdyn", qlist, directory, settings=settings, step="matdyn_qgrid"))
    return runs


@dataclass
class QeStabilityGateMaker(_PwMaker):
    """scf (normal k grid, no la2F) → ph.x phonons at Γ + the zone boundary of the EPC q grid
    → q2r.x → matdyn.x (ASR) → :class:`~sc_inverse.qe.schemas.StabilityGateDoc`.

    ``qpoints_grid``: the EPC q grid (None: the preset's, else the smallest divisor of k, as
    :class:`~sc_inverse.qe.jobs.QeElphMaker` chooses it). ``epc_unstable``: allow the EPC run
    even when the gate finds the structure unstable. The outdir (wavefunctions) is deleted after
    the run: the EPC needs its own la2F scf. ``reuse_phonons``: when the gate's grid is the EPC
    q grid, keep the phonons (dvscf, patterns, dyn) for the EPC (``StabilityGateDoc.phonons_dir``).
    ``max_gap_eV``: the screen's band-gap criterion judged on the gate's scf - a candidate
    whose DFT gap is at least this is not a metal and has no phonon-mediated superconductivity
    to compute: no phonons, no EPC (``StabilityGateDoc.not_a_metal``). None: not judged.
    """

    name: str = "qe stability gate"
    qpoints_grid: tuple[int, int, int] | None = None
    epc_unstable: bool = False
    cleanup: bool = True
    reuse_phonons: bool = False
    max_gap_eV: float | None = DFT_MAX_GAP_EV

    @job(output_schema=StabilityGateDoc)
    @resumable
    def make(self, structure: Structure, kpoints_grid=None,
             kpoint_length_A: float | None = None) -> StabilityGateDoc:
        preset, directory, pseudos, kgrid, history, length = self._setup(
            structure, kpoints_grid, kpoint_length_A)
        epc_qgrid = as_mesh(self.qpoints_grid or preset.qpoints_grid or qgrid_from_kgrid(kgrid),
                            "qpoints_grid")
        scf_run = run_pw(structure, preset, "scf", pseudos, kgrid, directory, "scf",
                         max_seconds=self.max_seconds, walltime_s=self.walltime_s,
                         user_params=self.user_params)
        scf = PwTaskDoc.from_directory(
            directory, preset, "scf", task_label=f"{self.name} scf", structure_input=structure,
            timings=_timings([scf_run]), corrections=_corrections([scf_run]),
            kpoint_convergence=history, kpoint_length_A=length,
        )
        qgrid = gate_qgrid(epc_qgrid)
        gap = scf.electronic.band_gap_eV if scf.electronic is not None else None
        if self.max_gap_eV is not None and gap is not None and gap >= self.max_gap_eV:
            if self.cleanup:
                shutil.rmtree(directory / OUTDIR, ignore_errors=True)
                scf.outdir = None
            doc = StabilityGateDoc.not_a_metal(
                directory, preset, structure, scf, gap, self.max_gap_eV, epc_qgrid, qgrid,
                epc_unstable=self.epc_unstable, task_label=self.name,
                timings=_timings([scf_run]), corrections=_corrections([scf_run]))
            logger.info("%s: %s", structure.composition.reduced_formula, doc.reason)
            return doc
        reuse = self.reuse_phonons and qgrid == tuple(epc_qgrid)
        ph_runs = run_gate_phonons(preset, qgrid, directory, self.max_seconds, self.walltime_s,
                                   save_dvscf=reuse)
        if reuse:
            save_phonons(directory)
        if self.cleanup:
            shutil.rmtree(directory / OUTDIR, ignore_errors=True)
            scf.outdir = None
        runs = [scf_run, *ph_runs]
        doc = StabilityGateDoc.from_directory(
            directory, preset, structure, scf, epc_qpoints_grid=epc_qgrid,
            epc_unstable=self.epc_unstable, task_label=self.name, timings=_timings(runs),
            corrections=_corrections(runs),
        )
        doc.phonons_dir = str(directory) if reuse else None
        logger.info("%s: %s", structure.composition.reduced_formula, doc.reason)
        return doc


def reusable_phonons(gate: StabilityGateDoc, reuse: bool) -> str | None:
    """The gate's saved phonons the EPC may read, or None (reuse off, none kept, or the gate's
    directory gone - a stored gate document from another machine or a cleaned run)."""
    if not reuse or gate.phonons_dir is None:
        return None
    if not (Path(gate.phonons_dir) / SAVED_PH0).is_dir():
        logger.warning("%s: the gate's phonons are gone from %s; the EPC computes its own",
                       gate.formula_pretty, gate.phonons_dir)
        return None
    return gate.phonons_dir


def _seed_uuid(job_, key: str) -> None:
    """Give ``job_`` a uuid derived from ``key`` (before anything references its output)."""
    job_.set_uuid(str(uuid.uuid5(GATED_UUID_NAMESPACE, key)))


@dataclass
class QeGatedElphMaker(Maker):
    """After the gate: scf(la2F) → elph when the gate allows the EPC, else nothing.

    Allowed: the job replaces itself by the scf and elph jobs (their uuids derived from this
    job's, so a re-run of a stored flow finds them), and its output becomes the elph
    :class:`~sc_inverse.qe.schemas.ElphTaskDoc`. Not allowed: its output is the gate's
    :class:`~sc_inverse.qe.schemas.StabilityGateDoc` (``epc_allowed`` False,
    ``epc_skipped_reason``), which the builders and the run's rows read as "dynamically unstable,
    no T_c". The scf and elph jobs are exactly those of the ungated flow (same inputs).

    ``epc_unstable``: run the EPC whatever the gate says. Decided here, not only by the gate
    job, because a re-run with ``--epc-unstable`` reuses the stored gate document of the first
    run (whose ``epc_allowed`` is False).

    ``reuse_phonons``: when the gate kept its phonons (``phonons_dir``: its grid is the EPC's),
    the elph job reads them (ph.x ``trans=.false.``) instead of computing them again; not with
    a fan-out elph maker, and only while the gate's directory still exists.

    ``rescue_maker`` (:class:`~sc_inverse.qe.rescue.QeSoftModeRescueMaker`): asked first; for a
    gated-out candidate with rescue rounds left it replaces this job by the rescue child's
    sub-flow (docs/rescue.md), on a rescue child it judges the child.
    """

    name: str = "qe epc"
    scf_maker: QeScfMaker = field(default_factory=QeScfMaker)
    elph_maker: QeElphMaker = field(default_factory=QeElphMaker)
    epc_unstable: bool = False
    reuse_phonons: bool = False
    rescue_maker: Maker | None = None  # qe.rescue.QeSoftModeRescueMaker; None: no rescue

    @job
    def make(self, gate, structure: Structure, kpoints_grid=None,
             kpoint_length_A: float | None = None):
        gate = StabilityGateDoc.model_validate(gate) if isinstance(gate, dict) else gate
        if self.rescue_maker is not None:  # soft-mode rescue (qe/rescue.py) decides first
            rescued = self.rescue_maker.respond(self, gate, structure, kpoints_grid, kpoint_length_A)
            if rescued is not None:
                return rescued
        if not (gate.epc_allowed or self.epc_unstable):
            logger.info("%s: %s", gate.formula_pretty, gate.epc_skipped_reason)
            return gate
        parent = CURRENT_JOB.job.uuid if CURRENT_JOB.job is not None else str(uuid.uuid4())
        scf = self.scf_maker.make(structure, kpoints_grid=kpoints_grid,
                                  kpoint_length_A=kpoint_length_A)
        _seed_uuid(scf, f"{parent}/scf")
        elph = self.elph_maker.make(
            scf.output.outdir, scf.output.prefix, kpoints_grid=scf.output.input.kpoints_grid,
            structure=scf.output.structure, energy_eV=scf.output.energy_eV,
            phonons_dir=reusable_phonons(gate, self.reuse_phonons and not self.elph_maker.fanout),
        )
        _seed_uuid(elph, f"{parent}/elph")
        return Response(replace=Flow([scf, elph], output=elph.output, name=self.name))
