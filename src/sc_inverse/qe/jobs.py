"""jobflow Makers of the QE electron-phonon workflow (atomate2 style).

* :class:`QeRelaxMaker` - pw.x vc-relax (runs the automatic k-point convergence first when the
  preset asks for it) → :class:`~sc_inverse.qe.schemas.PwTaskDoc`;
* :class:`QeScfMaker` - pw.x scf with ``la2F`` (a denser la2F scf first when the preset has one)
  → PwTaskDoc whose ``outdir``/``prefix`` feed ph.x;
* :class:`QeElphMaker` - ph.x (EPC) + q2r.x + matdyn.x + lambda.x + Eliashberg analysis →
  :class:`~sc_inverse.qe.schemas.ElphTaskDoc`; ``fanout=True`` runs every irreducible q-point as
  its own job (``start_q = last_q``) and merges them.

Each job runs its executables through :func:`sc_inverse.qe.run.run_qe` (custodian handlers,
timing) and then builds its document with the document's ``from_directory``. Every job runs in
the current directory (jobflow/FireWorks give each job its own); executables and MPI prefix
come from :func:`sc_inverse.settings.get_settings`.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobflow import Flow, Maker, Response, job
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer, SymmetryUndeterminedError

from sc_inverse.errors import CalculationError, InputError, ParseError
from sc_inverse.qe.attempts import resumable, resuming_from
from sc_inverse.qe.handlers import (
    PhRecoverHandler,
    PwDiagonalizationHandler,
    PwScfConvergenceHandler,
    QeWalltimeHandler,
    completed_qpoints,
)
from sc_inverse.qe.kpoints import (
    as_mesh,
    bump_prime_mesh,
    converge_kpoint_length,
    mesh_from_length,
    qgrid_from_kgrid,
)
from sc_inverse.qe.parsers import parse_dyn0, parse_pw_output, parse_wall_time
from sc_inverse.qe.pseudos import resolve_pseudopotentials
from sc_inverse.qe.run import QeRunResult, run_problems, run_qe
from sc_inverse.qe.schemas import (
    ELPH_DATA_FIELDS,
    ElphTaskDoc,
    PhElphData,
    PwTaskDoc,
    QeCorrection,
    QPointPhonons,
    QPointTaskDoc,
    RelaxSymmetry,
    RunTiming,
)
from sc_inverse.qe.sets import (
    FILDYN,
    FLFRC,
    OUTDIR,
    PREFIX,
    SAVED_PH0,
    LambdaInputGenerator,
    MatdynInputGenerator,
    MatdynQpointsInputGenerator,
    PhInputGenerator,
    PwInputGenerator,
    Q2rInputGenerator,
    QePreset,
    get_preset,
)

logger = logging.getLogger(__name__)


def _timings(runs: Sequence[QeRunResult]) -> list[RunTiming]:
    return [r.timing for r in runs if r.timing is not None]


def _corrections(runs: Sequence[QeRunResult]) -> list[QeCorrection]:
    return [c for r in runs for c in r.corrections]


# ---------------------------------------------------------------------------------------------
# pw.x
# ---------------------------------------------------------------------------------------------
def _pw_handlers(input_file: str, output_file: str, walltime_s, prefix: str) -> list:
    handlers = [
        PwDiagonalizationHandler(input_file, output_file),
        PwScfConvergenceHandler(input_file, output_file),
    ]
    if walltime_s:
        handlers.append(QeWalltimeHandler(walltime_s, prefix))
    return handlers


def run_pw(
    structure: Structure,
    preset: QePreset,
    calculation: str,
    pseudos: dict[str, Path],
    kgrid,
    directory: Path,
    name: str,
    la2f: bool = False,
    max_seconds=None,
    walltime_s=None,
    user_params=None,
    settings=None,
) -> QeRunResult:
    """pw.x ``calculation`` in ``directory`` as ``name.in`` → ``name.out`` (timing step ``name``);
    ``settings=None``: :func:`~sc_inverse.settings.get_settings` when it runs."""
    gen = PwInputGenerator(preset=preset, calculation=calculation, la2f=la2f,
                           max_seconds=max_seconds, user_params=user_params or {})
    iset = gen.get_input_set(structure, pseudos, kgrid, outdir=OUTDIR, prefix=PREFIX)
    iset.inputs = {f"{name}.in": iset.text}
    iset.filename = f"{name}.in"
    earlier = finished_pw_run(iset.text, directory, name)
    if earlier is not None:
        return earlier
    handlers = _pw_handlers(f"{name}.in", f"{name}.out", walltime_s, PREFIX)
    return run_qe("pw", iset, directory, handlers, settings=settings, step=name)


def finished_pw_run(input_text: str, directory: Path, name: str) -> QeRunResult | None:
    """The pw.x run ``name`` an earlier attempt of this job finished in ``directory`` (see
    :mod:`sc_inverse.qe.attempts`): same input, JOB DONE and its outdir save present, so it is
    not repeated. None when not resuming or the run must run."""
    earlier = resuming_from()
    inp, out = directory / f"{name}.in", directory / f"{name}.out"
    if earlier is None or not inp.is_file() or not out.is_file():
        return None
    if not (directory / OUTDIR / f"{PREFIX}.save" / "data-file-schema.xml").is_file():
        return None
    text = out.read_text(errors="replace")
    if inp.read_text() != input_text or run_problems(text):
        return None
    logger.info("pw.x %s: finished in the earlier attempt (%s), not repeated", name, earlier)
    note = QeCorrection(handler="resume", step=name,
                        errors=[f"{name}.out finished in an earlier attempt in {earlier}"])
    wall = parse_wall_time(text, "PWSCF") or 0.0
    return QeRunResult(out, [note], RunTiming(step=name, command="(earlier attempt)",
                                              wall_time_s=wall))


def keep_earlier_output(directory: Path, name: str) -> Path:
    """Rename ``name.out`` to the first free ``name.attemptN.out`` (a re-run must not overwrite
    the log of the attempt it continues)."""
    k = 1
    while (directory / f"{name}.attempt{k}.out").exists():
        k += 1
    kept = directory / f"{name}.attempt{k}.out"
    if (directory / f"{name}.out").is_file():
        (directory / f"{name}.out").rename(kept)
    return kept


def relax_restart(directory: Path, name: str) -> tuple[Structure, QeCorrection] | None:
    """Where a killed earlier attempt's relax ``name`` got to: its last geometry after at
    least one ionic step (the earlier output is kept as ``name.attemptN.out``), with the
    correction that records it. None when not resuming or there is nothing to continue."""
    earlier = resuming_from()
    out = directory / f"{name}.out"
    if earlier is None or not out.is_file():
        return None
    try:
        parsed = parse_pw_output(out, require_done=False)
    except ParseError:
        return None
    if parsed.job_done or parsed.n_ionic_steps < 1 or parsed.final_structure is None:
        return None
    kept = keep_earlier_output(directory, name)
    note = QeCorrection(handler="resume", step=name, errors=[
        f"{name}: restarted from ionic step {parsed.n_ionic_steps} of an earlier attempt in "
        f"{earlier} (kept as {kept.name})"])
    logger.info("%s: restarting from ionic step %d of the earlier attempt", name,
                parsed.n_ionic_steps)
    return parsed.final_structure, note


def _converge_kgrid(structure, preset, pseudos, directory: Path):
    """JARVIS automatic k-point length (scf energy to 1 mRy), prime dims bumped:
    (mesh, history, converged length in Å)."""
    counter = {"n": 0}

    def energy(mesh):
        counter["n"] += 1
        sub = directory / f"kconv_{counter['n']:02d}"
        res = run_pw(structure, preset, "scf", pseudos, mesh, sub, "scf")
        shutil.rmtree(sub / OUTDIR, ignore_errors=True)
        return parse_pw_output(res.output).energy_eV

    conv = converge_kpoint_length(
        structure, energy, start_length=preset.kpoint_length_start,
        step=preset.kpoint_length_step, tol_eV=preset.kpoint_tol_eV,
        n_confirm=preset.kpoint_n_confirm,
    )
    return bump_prime_mesh(conv.mesh), conv.history, conv.length


def resolve_kgrid(structure, preset, pseudos, kpoints_grid, directory: Path,
                  kpoint_length_A: float | None = None):
    """k grid: explicit grid > preset grid > explicit k-point length (e.g. the one the relax
    converged) > the preset's fixed length (``fast``) > automatic convergence (``paper``).

    Returns (mesh, convergence history or None, k-point length in Å or None); a mesh made from
    a length has its prime dimensions bumped so that a q grid divides it.
    """
    if kpoints_grid is not None:
        return as_mesh(kpoints_grid, "kpoints_grid"), None, None
    if preset.kpoints_grid is not None:
        return as_mesh(preset.kpoints_grid, "preset.kpoints_grid"), None, None
    length = kpoint_length_A or preset.kpoint_length_A
    if length:
        return bump_prime_mesh(mesh_from_length(structure, length)), None, float(length)
    return _converge_kgrid(structure, preset, pseudos, directory)


def la2f_grid(preset: QePreset, kgrid) -> tuple[int, int, int]:
    """Grid of the la2F data: the preset's fixed dense grid, ``la2f_kpoints_factor`` × k, or k."""
    if preset.la2f_kpoints_grid:
        return as_mesh(preset.la2f_kpoints_grid)
    factor = preset.la2f_kpoints_factor or 1
    return tuple(factor * int(n) for n in kgrid)  # type: ignore[return-value]


#: spglib tolerance (Å) of the symmetry re-detected after a vc-relax. pw.x keeps the symmetry
#: of its input to ~1e-6, so the tolerance can be tight; angles are judged by the same distance
#: tolerance (pymatgen's default of 5° reads a body-centred tetragonal cell with c/a = 1.04 as bcc).
RELAX_SYMPREC_A = 0.01


def _spacegroup(structure: Structure, symprec: float) -> tuple[str | None, SpacegroupAnalyzer | None]:
    """('Im-3m (229)', analyzer) or (None, None) when spglib finds no symmetry."""
    try:
        sga = SpacegroupAnalyzer(structure, symprec=symprec, angle_tolerance=-1)
        return f"{sga.get_space_group_symbol()} ({sga.get_space_group_number()})", sga
    except (SymmetryUndeterminedError, ValueError, TypeError):
        return None, None


def standardize_relaxed(initial: Structure, relaxed: Structure,
                        symprec: float = RELAX_SYMPREC_A) -> tuple[Structure, RelaxSymmetry]:
    """Standardised primitive cell of ``relaxed`` (spglib via pymatgen) and the space groups
    before and after the relaxation; the relaxed cell itself when spglib fails."""
    before, _ = _spacegroup(initial, symprec)
    after, sga = _spacegroup(relaxed, symprec)
    note = None
    standard = relaxed
    if sga is not None:
        try:
            standard = sga.get_primitive_standard_structure()
        except (SymmetryUndeterminedError, ValueError, TypeError) as exc:
            note = f"standardisation failed ({exc}); the relaxed cell is used as it is"
    else:
        note = "spglib found no symmetry; the relaxed cell is used as it is"
    if before and after and before != after:
        logger.warning("%s: space group %s before the relaxation, %s after",
                       relaxed.composition.reduced_formula, before, after)
    info = RelaxSymmetry(spacegroup_input=before, spacegroup_relaxed=after, symprec_A=symprec,
                         standardized=note is None, nsites_relaxed=len(relaxed),
                         nsites_standardized=len(standard), note=note)
    return standard, info


def run_scf(structure: Structure, preset: QePreset, pseudos: dict[str, Path], kgrid,
            directory: Path, max_seconds=None, walltime_s=None, user_params=None,
            settings=None) -> list[QeRunResult]:
    """The scf(s) ph.x needs, in ``directory/out``: (la2F scf on the dense grid →) scf on k.

    The dense run is ``scf_la2f``, the phonon-grid run ``scf`` (both pw.x runs' results).
    """
    dense = la2f_grid(preset, kgrid)
    single = dense == tuple(kgrid)
    common = {"max_seconds": max_seconds, "walltime_s": walltime_s, "user_params": user_params,
              "settings": settings}
    runs = []
    if not single:
        runs.append(run_pw(structure, preset, "scf", pseudos, dense, directory, "scf_la2f",
                           la2f=True, **common))
    runs.append(run_pw(structure, preset, "scf", pseudos, kgrid, directory, "scf", la2f=single,
                       **common))
    return runs


@dataclass
class _PwMaker(Maker):
    """Settings shared by the pw.x Makers, and their common set-up."""

    name: str = "qe pw"
    preset: str | QePreset | None = None  # None: settings.qe_preset
    pseudo_dir: str | None = None
    pseudo_pattern: str | None = None
    max_seconds: float | None = None
    walltime_s: float | None = None
    user_params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _setup(self, structure: Structure, kpoints_grid, kpoint_length_A=None):
        """(preset with the cutoffs of these elements, run directory, pseudopotentials, k grid,
        k-convergence history, k-point length)."""
        directory = Path.cwd()
        pseudos, preset = resolve_pseudopotentials(structure, get_preset(self.preset),
                                                   self.pseudo_dir, self.pseudo_pattern)
        kgrid, history, length = resolve_kgrid(structure, preset, pseudos, kpoints_grid,
                                               directory, kpoint_length_A)
        return preset, directory, pseudos, kgrid, history, length


@dataclass
class QeRelaxMaker(_PwMaker):
    """pw.x vc-relax (cell + ions, BFGS, symmetry kept) with the preset's relax settings.

    ``standardize`` (vc-relax only): spglib re-detects the symmetry of the relaxed cell and
    ``structure_standardized`` - what the next jobs compute on - is its standardised primitive
    cell; ``symmetry`` records the space groups before and after.
    """

    name: str = "qe vc-relax"
    calculation: str = "vc-relax"
    standardize: bool = True

    @job(output_schema=PwTaskDoc)
    @resumable
    def make(self, structure: Structure, kpoints_grid=None) -> PwTaskDoc:
        preset, directory, pseudos, kgrid, history, length = self._setup(structure, kpoints_grid)
        restart = relax_restart(directory, "relax")
        start, resumed = (restart[0], [restart[1]]) if restart else (structure, [])
        res = run_pw(start, preset, self.calculation, pseudos, kgrid, directory, "relax",
                     max_seconds=self.max_seconds, walltime_s=self.walltime_s,
                     user_params=self.user_params)
        doc = PwTaskDoc.from_directory(
            directory, preset, "relax", task_label=self.name, structure_input=structure,
            timings=_timings([res]), corrections=[*resumed, *_corrections([res])],
            kpoint_convergence=history,
            kpoint_length_A=length,
        )
        if doc.relax_converged is False:
            raise CalculationError(f"{res.output}: {self.calculation} did not converge (bfgs)")
        doc.structure_standardized = doc.structure
        if self.standardize and self.calculation == "vc-relax" and doc.structure is not None:
            doc.structure_standardized, doc.symmetry = standardize_relaxed(structure,
                                                                           doc.structure)
        return doc


@dataclass
class QeScfMaker(_PwMaker):
    """pw.x scf whose ``outdir`` feeds ph.x; writes the la2F data α²F needs.

    When the preset has a denser la2F grid (QE's Al example, ``fast``) that scf runs first
    with ``la2F=.true.`` and the phonon-grid scf second, in the same outdir (pw.x keeps
    ``prefix.a2Fsave``); otherwise one scf on the k grid writes both (JARVIS).
    ``kpoint_length_A``: make the k grid from this length (the relax's) for this cell.
    """

    name: str = "qe scf"

    @job(output_schema=PwTaskDoc)
    @resumable
    def make(self, structure: Structure, kpoints_grid=None,
             kpoint_length_A: float | None = None) -> PwTaskDoc:
        preset, directory, pseudos, kgrid, history, length = self._setup(
            structure, kpoints_grid, kpoint_length_A)
        runs = run_scf(structure, preset, pseudos, kgrid, directory, max_seconds=self.max_seconds,
                       walltime_s=self.walltime_s, user_params=self.user_params)
        return PwTaskDoc.from_directory(
            directory, preset, "scf", task_label=self.name, structure_input=structure,
            timings=_timings(runs), corrections=_corrections(runs), kpoint_convergence=history,
            kpoint_length_A=length,
        )


# ---------------------------------------------------------------------------------------------
# ph.x
# ---------------------------------------------------------------------------------------------
def copy_outdir(src_outdir: str | Path, prefix: str, directory: Path) -> Path:
    """Copy the scf ``prefix.save`` and ``prefix.a2Fsave`` into ``directory/out``."""
    src = Path(src_outdir)
    if not (src / f"{prefix}.save").is_dir():
        raise CalculationError(f"{src}: no {prefix}.save from the scf job (was it cleaned?)")
    if not (src / f"{prefix}.a2Fsave").is_file():
        raise CalculationError(f"{src}: no {prefix}.a2Fsave; the scf must run with la2F=.true.")
    dst = directory / OUTDIR
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src / f"{prefix}.save", dst / f"{prefix}.save", dirs_exist_ok=True)
    shutil.copy2(src / f"{prefix}.a2Fsave", dst / f"{prefix}.a2Fsave")
    return dst


def _ph_handlers(walltime_s) -> list:
    handlers: list = [PhRecoverHandler("ph.in", "ph.out")]
    if walltime_s:
        handlers.append(QeWalltimeHandler(walltime_s, PREFIX))
    return handlers


def run_ph(preset: QePreset, qgrid, directory: Path, start_q=None, last_q=None,
           max_seconds=None, walltime_s=None, settings=None, trans: bool = True) -> QeRunResult:
    """ph.x EPC on the q grid (or irreducible q-points ``start_q..last_q``) in ``directory``;
    ``trans=False``: from the phonons :func:`copy_saved_phonons` put there."""
    gen = PhInputGenerator(preset=preset, fildyn=FILDYN, trans=trans)
    iset = gen.get_input_set(qgrid, outdir=OUTDIR, prefix=PREFIX, start_q=start_q,
                             last_q=last_q, max_seconds=max_seconds)
    return run_qe("ph", iset, directory, _ph_handlers(walltime_s), settings=settings)


def resume_point(directory: Path, elph: bool = True) -> int | None:
    """The irreducible q-point a ph.x run left unfinished in ``directory`` should restart at:
    None when no q-point finished there (a fresh run), ``n_q + 1`` when all did. The same
    restart rule as :class:`~sc_inverse.qe.handlers.PhRecoverHandler` (first q without its
    dyn + elph files; finished q-points are independent and kept)."""
    done = completed_qpoints(directory, FILDYN, elph=elph)
    dyn0 = directory / f"{FILDYN}0"
    if not done or not dyn0.is_file():
        return None
    start = 1
    while start in done:
        start += 1
    return min(start, len(parse_dyn0(dyn0)[1]) + 1) if start > 1 else None


def run_ph_resuming(preset: QePreset, qgrid, directory: Path, max_seconds=None,
                    walltime_s=None, trans: bool = True,
                    ) -> tuple[list[QeRunResult], list[QeCorrection]]:
    """ph.x in ``directory``, continuing a run that an earlier process left there (killed):
    from its first unfinished q-point, or not at all when every q-point finished. Returns the
    ph.x runs and a ``resume`` correction that records where it restarted."""
    start = resume_point(directory)
    if start is None:
        return [run_ph(preset, qgrid, directory, max_seconds=max_seconds,
                       walltime_s=walltime_s, trans=trans)], []
    n_q = len(parse_dyn0(directory / f"{FILDYN}0")[1])
    note = QeCorrection(handler="resume", step="ph", errors=[
        f"q-points 1-{start - 1} of {n_q} finished in an earlier run in {directory}"],
        actions=[{"_set": {"inputph.start_q": start}}] if start <= n_q else [])
    logger.info("ph.x: resuming in %s at q-point %d of %d", directory, start, n_q)
    if start > n_q:
        return [], [note]
    return [run_ph(preset, qgrid, directory, start_q=start, max_seconds=max_seconds,
                   walltime_s=walltime_s, trans=trans)], [note]


def save_phonons(directory: Path, prefix: str = PREFIX) -> Path:
    """Keep what a later ``trans=.false.`` ph.x needs of the phonon run in ``directory``: the
    displacement patterns (``out/_ph0/prefix.phsave``) and the potential variations
    (``prefix.dvscf*``, also ``_paw``, at ``_ph0`` for Γ and ``_ph0/prefix.q_N`` for the other q),
    copied to ``directory/gate_ph0`` (no wavefunctions). The dynamical matrices stay in
    ``directory`` (``dyn0..N``)."""
    src = directory / OUTDIR / "_ph0"
    if not (src / f"{prefix}.phsave").is_dir():
        raise CalculationError(f"{src}: no {prefix}.phsave (did ph.x run here?)")
    dst = directory / SAVED_PH0
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src / f"{prefix}.phsave", dst / f"{prefix}.phsave")
    found = sorted(src.rglob(f"{prefix}.dvscf*"))
    if not found:
        raise CalculationError(f"{src}: no {prefix}.dvscf* (was fildvscf set?)")
    for f in found:
        target = dst / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)
    return dst


def copy_saved_phonons(phonons_dir: str | Path, directory: Path, qgrid) -> None:
    """Put the phonons :func:`save_phonons` kept in ``phonons_dir`` into ``directory`` (after
    :func:`copy_outdir`): ``gate_ph0`` → ``out/_ph0`` and ``dyn0..N``. Fails when they are
    missing or were computed on another q grid."""
    src = Path(phonons_dir)
    if not (src / SAVED_PH0).is_dir() or not (src / f"{FILDYN}0").is_file():
        raise CalculationError(f"{src}: no saved phonons ({SAVED_PH0}/, {FILDYN}0)")
    grid, irreducible = parse_dyn0(src / f"{FILDYN}0")
    if tuple(grid) != tuple(qgrid):
        raise CalculationError(f"{src}: saved phonons on the q grid {tuple(grid)}, the EPC "
                               f"needs {tuple(qgrid)}")
    shutil.copytree(src / SAVED_PH0, directory / OUTDIR / "_ph0", dirs_exist_ok=True)
    for i in range(len(irreducible) + 1):
        shutil.copy2(src / f"{FILDYN}{i}", directory / f"{FILDYN}{i}")


def run_qpoint(preset: QePreset, qpoints_grid, scf_outdir, prefix: str, q_index: int,
               directory: Path, max_seconds=None, walltime_s=None,
               settings=None) -> QeRunResult:
    """ph.x for irreducible q-point ``q_index`` alone, in ``directory`` (own outdir copy)."""
    directory.mkdir(parents=True, exist_ok=True)
    copy_outdir(scf_outdir, prefix, directory)
    res = run_ph(preset, as_mesh(qpoints_grid), directory, start_q=q_index, last_q=q_index,
                 max_seconds=max_seconds, walltime_s=walltime_s, settings=settings)
    shutil.rmtree(directory / OUTDIR, ignore_errors=True)  # wavefunctions/dvscf not needed
    return res


def gather_qpoints(qdirs: dict[int, Path], init_dir: Path, directory: Path) -> None:
    """Copy ``dyn0``, the first q-point's ``ph.in`` and each q-point's ``dynN`` +
    ``elph_dir/*.N`` into ``directory`` (which then reads like a monolithic ph.x run)."""
    shutil.copy2(Path(init_dir) / f"{FILDYN}0", directory / f"{FILDYN}0")
    first = Path(qdirs[min(qdirs)])
    if (first / "ph.in").is_file():
        shutil.copy2(first / "ph.in", directory / "ph.in")
    (directory / "elph_dir").mkdir(exist_ok=True)
    for i, src in sorted(qdirs.items()):
        src = Path(src)
        shutil.copy2(src / f"{FILDYN}{i}", directory / f"{FILDYN}{i}")
        for f in (src / "elph_dir").iterdir():
            if f.name.endswith(f".{i}") and f.name.startswith(("elph.inp_lambda", "a2Fq2r")):
                shutil.copy2(f, directory / "elph_dir" / f.name)


# ---------------------------------------------------------------------------------------------
# q2r.x / matdyn.x / lambda.x and the Eliashberg document
# ---------------------------------------------------------------------------------------------
def run_lambda_x(directory: Path, qpoints: list[QPointPhonons], mu_star: float,
                 settings=None) -> QeRunResult:
    """QE's lambda.x on the per-q files in ``directory`` (independent λ/ω_log check);
    writes ``lambda.dat``."""
    iset = LambdaInputGenerator(mu_star=mu_star).get_input_set(
        [q.q_cart_2pi_alat for q in qpoints], [q.n_star for q in qpoints],
        [f"elph_dir/elph.inp_lambda.{q.index}" for q in qpoints],
        max(max(q.frequencies_cm1) for q in qpoints),
    )
    return run_qe("lambda", iset, directory, settings=settings)


def run_elph_postprocessing(directory: Path, preset: QePreset, kgrid, ph_data: PhElphData,
                            settings=None) -> list[QeRunResult]:
    """q2r.x (force constants + EPC linewidths), matdyn.x (phonon DOS and interpolated α²F on
    the preset's matdyn grid, else the k grid), matdyn.x again on ph.x's irreducible q points
    (ASR-corrected q-grid frequencies for the stability verdict) and lambda.x, in ``directory``."""
    q2r = Q2rInputGenerator(fildyn=FILDYN, flfrc=FLFRC,
                            el_ph_nsigma=preset.el_ph_nsigma).get_input_set()
    runs = [run_qe("q2r", q2r, directory, settings=settings)]
    nk = preset.matdyn_nk or tuple(kgrid)
    matdyn = MatdynInputGenerator(preset=preset, flfrc=FLFRC).get_input_set(nk)
    runs.append(run_qe("matdyn", matdyn, directory, settings=settings))
    _, irreducible = parse_dyn0(directory / f"{FILDYN}0")  # full precision (elph files: 6 digits)
    qlist = MatdynQpointsInputGenerator(flfrc=FLFRC).get_input_set(irreducible)
    runs.append(run_qe("matdyn", qlist, directory, settings=settings, step="matdyn_qgrid"))
    runs.append(run_lambda_x(directory, ph_data.qpoints, preset.mu_star, settings))
    return runs


def analyse_elph(
    directory: Path,
    preset: QePreset,
    kgrid,
    *,
    structure: Structure | None = None,
    energy_eV: float | None = None,
    label: str = "",
    timings: Sequence[RunTiming] = (),
    corrections: Sequence[QeCorrection] = (),
    fanout: bool = False,
    qe_version: str | None = None,
    settings=None,
) -> ElphTaskDoc:
    """Read ph.x's files in ``directory`` (fails there when one is missing or truncated), run
    the post-processing executables and build the :class:`ElphTaskDoc` from the directory.

    ``timings``/``corrections`` are those of the ph.x run(s); the post-processing runs' are
    appended.
    """
    ph_data = PhElphData.from_directory(directory, FILDYN)
    runs = run_elph_postprocessing(directory, preset, kgrid, ph_data, settings)
    return ElphTaskDoc.from_directory(
        directory, preset, kgrid, structure=structure, energy_eV=energy_eV, task_label=label,
        timings=[*timings, *_timings(runs)], corrections=[*corrections, *_corrections(runs)],
        fanout=fanout, qe_version=qe_version, ph_data=ph_data,
    )


# ---------------------------------------------------------------------------------------------
# ph.x Makers
# ---------------------------------------------------------------------------------------------
@dataclass
class QeElphMaker(Maker):
    """ph.x EPC (interpolated) + q2r.x + matdyn.x + lambda.x + λ/ω_log/T_c.

    ``fanout=True``: this job runs the first irreducible q-point (Γ), whose ``dyn0`` lists all
    of them, then is replaced by one job per remaining q-point (``start_q = last_q = i``, each
    with its own copy of the scf outdir) and a merge job that gathers the dyn and elph_dir files
    and runs q2r/matdyn/lambda.x/analysis - λ matches the monolithic run because every q-point's
    ph.x calculation is the same.
    """

    name: str = "qe elph"
    preset: str | QePreset | None = None  # None: settings.qe_preset
    fanout: bool = False
    max_seconds: float | None = None
    walltime_s: float | None = None
    cleanup: bool = True  # delete the copied outdir (wavefunctions, dvscf) after success

    @job(data=list(ELPH_DATA_FIELDS))  # no output_schema: with fanout the output is the merge's
    @resumable
    def make(self, scf_outdir: str, prefix: str = PREFIX, kpoints_grid=None, qpoints_grid=None,
             structure: Structure | None = None, energy_eV: float | None = None,
             phonons_dir: str | None = None):
        """``phonons_dir``: a directory with phonons on this q grid saved by
        :func:`save_phonons` (the stability gate's); ph.x then runs with ``trans=.false.`` on
        them and computes only the electron-phonon matrix elements (not with ``fanout``)."""
        preset = get_preset(self.preset)
        if kpoints_grid is None:
            raise InputError("QeElphMaker needs the k grid of the scf (kpoints_grid)")
        kgrid = as_mesh(kpoints_grid, "kpoints_grid")
        qgrid = as_mesh(qpoints_grid or preset.qpoints_grid or qgrid_from_kgrid(kgrid), "qpoints_grid")
        if any(k % q for k, q in zip(kgrid, qgrid, strict=True)):
            raise InputError(f"q grid {qgrid} must divide the k grid {kgrid}")
        directory = Path.cwd()
        copy_outdir(scf_outdir, prefix, directory)
        if self.fanout:
            return self._fan_out(preset, scf_outdir, prefix, kgrid, qgrid, directory, structure,
                                 energy_eV)
        if phonons_dir is not None:
            copy_saved_phonons(phonons_dir, directory, qgrid)
        runs, resumed = run_ph_resuming(preset, qgrid, directory, self.max_seconds,
                                        self.walltime_s, trans=phonons_dir is None)
        doc = analyse_elph(directory, preset, kgrid, structure=structure, energy_eV=energy_eV,
                           label=self.name, timings=_timings(runs),
                           corrections=[*resumed, *_corrections(runs)], fanout=False)
        doc.phonons_from = phonons_dir
        if self.cleanup:
            shutil.rmtree(directory / OUTDIR, ignore_errors=True)
            doc.outdir = None
        return doc

    def _fan_out(self, preset: QePreset, scf_outdir: str, prefix: str, kgrid, qgrid,
                 directory: Path, structure: Structure | None, energy_eV: float | None) -> Response:
        """Run q-point 1 (Γ; no nscf, cheap) here - its dyn0 lists all irreducible q-points -
        and replace this job by one job per other q-point and a merge job."""
        res = run_ph(preset, qgrid, directory, start_q=1, last_q=1,
                     max_seconds=self.max_seconds, walltime_s=self.walltime_s)
        _, irreducible = parse_dyn0(directory / f"{FILDYN}0")
        n_q = len(irreducible)
        first = QPointTaskDoc.from_directory(
            directory, preset, 1, n_q, task_label=f"{self.name} q1/{n_q}",
            timings=_timings([res]), corrections=_corrections([res]),
        )
        if self.cleanup:
            shutil.rmtree(directory / OUTDIR, ignore_errors=True)
        qmaker = QeQPointMaker(preset=preset, max_seconds=self.max_seconds,
                               walltime_s=self.walltime_s)
        qjobs = []
        for i in range(2, n_q + 1):
            j = qmaker.make(scf_outdir, prefix, qgrid, i, n_q)
            j.name = f"{self.name} q{i}/{n_q}"
            qjobs.append(j)
        merge = QeElphMergeMaker(name=f"{self.name} merge", preset=preset).make(
            [first.model_dump(), *[j.output for j in qjobs]], str(directory), kgrid,
            structure, energy_eV,
        )
        return Response(replace=Flow([*qjobs, merge], output=merge.output, name=f"{self.name} fan-out"))


@dataclass
class QeQPointMaker(Maker):
    """ph.x for one irreducible q-point (fan-out member)."""

    name: str = "qe ph q"
    preset: str | QePreset | None = None  # None: settings.qe_preset
    max_seconds: float | None = None
    walltime_s: float | None = None

    @job(output_schema=QPointTaskDoc)
    @resumable
    def make(self, scf_outdir: str, prefix: str, qpoints_grid, q_index: int, n_q: int) -> QPointTaskDoc:
        preset = get_preset(self.preset)
        directory = Path.cwd()
        res = run_qpoint(preset, qpoints_grid, scf_outdir, prefix, q_index, directory,
                         self.max_seconds, self.walltime_s)
        return QPointTaskDoc.from_directory(
            directory, preset, q_index, n_q, task_label=f"{self.name} {q_index}",
            timings=_timings([res]), corrections=_corrections([res]),
        )


@dataclass
class QeElphMergeMaker(Maker):
    """Gather the q jobs' dyn/elph files, then q2r.x + matdyn.x + lambda.x + Eliashberg
    (fan-out end)."""

    name: str = "qe elph merge"
    preset: str | QePreset | None = None  # None: settings.qe_preset

    @job(output_schema=ElphTaskDoc, data=list(ELPH_DATA_FIELDS))
    def make(self, q_docs: list, init_dir: str, kpoints_grid, structure: Structure | None = None,
             energy_eV: float | None = None) -> ElphTaskDoc:
        preset = get_preset(self.preset)
        directory = Path.cwd()
        docs = sorted((QPointTaskDoc.model_validate(d) if isinstance(d, dict) else d
                       for d in q_docs), key=lambda d: d.q_index)
        gather_qpoints({d.q_index: Path(d.dir_name) for d in docs}, Path(init_dir), directory)
        return analyse_elph(
            directory, preset, as_mesh(kpoints_grid), structure=structure, energy_eV=energy_eV,
            label=self.name, timings=[t for d in docs for t in d.timings],
            corrections=[c for d in docs for c in d.corrections], fanout=True,
            qe_version=docs[0].qe_version,
        )
