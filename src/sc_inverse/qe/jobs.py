"""jobflow Makers of the QE electron-phonon workflow (atomate2 style).

* :class:`QeRelaxMaker` - pw.x vc-relax (runs the automatic k-point convergence first when the
  preset asks for it) → :class:`~sc_inverse.qe.schemas.PwTaskDoc`;
* :class:`QeScfMaker` - pw.x scf with ``la2F`` (a denser la2F scf first when the preset has one)
  → PwTaskDoc whose ``outdir``/``prefix`` feed ph.x;
* :class:`QeElphMaker` - ph.x (EPC) + q2r.x + matdyn.x + Eliashberg analysis →
  :class:`~sc_inverse.qe.schemas.ElphTaskDoc`; ``fanout=True`` runs every irreducible q-point as
  its own job (``start_q = last_q``) and merges them.

Every job runs in the current directory (jobflow/FireWorks give each job its own); executables
and MPI prefix come from :func:`sc_inverse.settings.get_settings`.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from jobflow import Flow, Maker, Response, job
from pymatgen.core import Structure

from sc_inverse.errors import CalculationError, InputError
from sc_inverse.qe.eliashberg import debye_temperature_K, eliashberg_table, lambda_x_input
from sc_inverse.qe.handlers import (
    PhRecoverHandler,
    PwDiagonalizationHandler,
    PwScfConvergenceHandler,
    QeWalltimeHandler,
)
from sc_inverse.qe.kpoints import (
    as_mesh,
    bump_prime_mesh,
    converge_kpoint_length,
    qgrid_from_kgrid,
)
from sc_inverse.qe.parsers import (
    RY_TO_CM1,
    parse_a2f_dos,
    parse_dyn0,
    parse_dyn_file,
    parse_elph_lambda_file,
    parse_lambda_dat,
    parse_matdyn_lambda,
    parse_ph_output,
    parse_phonon_dos,
    parse_pw_output,
)
from sc_inverse.qe.pseudos import find_pseudopotentials
from sc_inverse.qe.run import qe_command, run_qe
from sc_inverse.qe.schemas import (
    ELPH_DATA_FIELDS,
    A2FData,
    ElphTaskDoc,
    PwTaskDoc,
    QeCorrection,
    QeInputSummary,
    QPointPhonons,
    QPointTaskDoc,
    RunTiming,
    SmearingRow,
)
from sc_inverse.qe.sets import (
    MatdynInputGenerator,
    PhInputGenerator,
    PwInputGenerator,
    Q2rInputGenerator,
    QePreset,
    get_preset,
    read_namelist,
)

logger = logging.getLogger(__name__)

PREFIX = "qe"
OUTDIR = "out"
FILDYN = "dyn"


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _pseudos(structure: Structure, preset: QePreset, pseudo_dir, pattern) -> dict[str, Path]:
    return find_pseudopotentials(structure, pseudo_dir, pattern or preset.pseudo_pattern)


def _pw_handlers(input_file: str, output_file: str, walltime_s, prefix: str) -> list:
    handlers = [
        PwDiagonalizationHandler(input_file, output_file),
        PwScfConvergenceHandler(input_file, output_file),
    ]
    if walltime_s:
        handlers.append(QeWalltimeHandler(walltime_s, prefix))
    return handlers


def _input_summary(preset, parameters_text: str, namelists, **kw) -> QeInputSummary:
    params = {}
    for nl in namelists:
        try:
            params[nl] = read_namelist(parameters_text, nl)
        except InputError:
            continue
    return QeInputSummary(preset=preset.name, parameters=params, **kw)


def _run_pw(
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
):
    gen = PwInputGenerator(preset=preset, calculation=calculation, la2f=la2f,
                           max_seconds=max_seconds, user_params=user_params or {})
    iset = gen.get_input_set(structure, pseudos, kgrid, outdir=OUTDIR, prefix=PREFIX)
    iset.inputs = {f"{name}.in": iset.text}
    iset.filename = f"{name}.in"
    result = run_qe("pw", iset, directory, _pw_handlers(f"{name}.in", f"{name}.out", walltime_s, PREFIX))
    result.timing.step = name
    return iset.text, result, parse_pw_output(result.output)


def _converge_kgrid(structure, preset, pseudos, directory: Path) -> tuple[tuple, list[dict]]:
    """JARVIS automatic k-point length (scf energy to 1 mRy), prime dims bumped."""
    counter = {"n": 0}

    def energy(mesh):
        counter["n"] += 1
        sub = directory / f"kconv_{counter['n']:02d}"
        _, _, out = _run_pw(structure, preset, "scf", pseudos, mesh, sub, "scf")
        shutil.rmtree(sub / OUTDIR, ignore_errors=True)
        return out.energy_eV

    conv = converge_kpoint_length(
        structure, energy, start_length=preset.kpoint_length_start,
        step=preset.kpoint_length_step, tol_eV=preset.kpoint_tol_eV,
        n_confirm=preset.kpoint_n_confirm,
    )
    return bump_prime_mesh(conv.mesh), conv.history


def resolve_kgrid(structure, preset, pseudos, kpoints_grid, directory: Path):
    """k grid: explicit > preset > automatic convergence (paper)."""
    if kpoints_grid is not None:
        return as_mesh(kpoints_grid, "kpoints_grid"), None
    if preset.kpoints_grid is not None:
        return as_mesh(preset.kpoints_grid, "preset.kpoints_grid"), None
    return _converge_kgrid(structure, preset, pseudos, directory)


def _pw_doc(out, text, preset, pseudos, kgrid, directory, label, calc_type, timings,
            corrections, structure_in, **summary) -> PwTaskDoc:
    final = out.final_structure
    return PwTaskDoc(
        task_label=label,
        calc_type=calc_type,
        dir_name=str(directory),
        qe_version=out.version,
        formula_pretty=final.composition.reduced_formula,
        elements=sorted(el.symbol for el in final.composition.elements),
        nsites=len(final),
        structure=final,
        structure_input=structure_in,
        input=_input_summary(
            preset, text, ("control", "system", "electrons", "ions", "cell"),
            kpoints_grid=list(kgrid), kpoints_shift=[0, 0, 0],
            pseudopotentials={k: Path(v).name for k, v in pseudos.items()},
            pseudo_dir=str(Path(next(iter(pseudos.values()))).parent), **summary,
        ),
        energy_eV=out.energy_eV,
        energy_per_atom_eV=out.energy_eV / len(final),
        energies_ionic_eV=[e * 13.605693122994 for e in out.energies_Ry],
        fermi_energy_eV=out.fermi_energy_eV,
        forces_eV_per_A=out.forces_eV_per_A,
        stress_kbar=out.stress_kbar,
        pressure_kbar=out.pressure_kbar,
        scf_converged=out.scf_converged,
        n_scf_iterations=out.n_scf_iterations,
        n_ionic_steps=out.n_ionic_steps,
        total_magnetization=out.total_magnetization,
        corrections=corrections,
        timings=timings,
        wall_time_s=sum(t.wall_time_s for t in timings),
        outdir=str(directory / OUTDIR),
        prefix=PREFIX,
    )


# ---------------------------------------------------------------------------------------------
# pw.x Makers
# ---------------------------------------------------------------------------------------------
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

    def _setup(self, structure: Structure, kpoints_grid):
        """(preset, run directory, pseudopotentials, k grid, k-convergence history)."""
        preset = get_preset(self.preset)
        directory = Path.cwd()
        pseudos = _pseudos(structure, preset, self.pseudo_dir, self.pseudo_pattern)
        kgrid, history = resolve_kgrid(structure, preset, pseudos, kpoints_grid, directory)
        return preset, directory, pseudos, kgrid, history


@dataclass
class QeRelaxMaker(_PwMaker):
    """pw.x vc-relax (cell + ions) with the preset's relax settings."""

    name: str = "qe vc-relax"
    calculation: str = "vc-relax"

    @job(output_schema=PwTaskDoc)
    def make(self, structure: Structure, kpoints_grid=None) -> PwTaskDoc:
        preset, directory, pseudos, kgrid, history = self._setup(structure, kpoints_grid)
        text, res, out = _run_pw(structure, preset, self.calculation, pseudos, kgrid, directory,
                                 "relax", max_seconds=self.max_seconds,
                                 walltime_s=self.walltime_s, user_params=self.user_params)
        if out.relax_converged is False:
            raise CalculationError(f"{res.output}: {self.calculation} did not converge (bfgs)")
        doc = _pw_doc(out, text, preset, pseudos, kgrid, directory, self.name, self.calculation,
                      [res.timing], res.corrections, structure)
        doc.kpoint_convergence = history
        return doc


@dataclass
class QeScfMaker(_PwMaker):
    """pw.x scf whose ``outdir`` feeds ph.x; writes the la2F data α²F needs.

    When the preset has a denser ``la2f_kpoints_grid`` (QE's Al example) that scf runs first
    with ``la2F=.true.`` and the phonon-grid scf second, in the same outdir (pw.x keeps
    ``prefix.a2Fsave``); otherwise one scf on the k grid writes both (JARVIS).
    """

    name: str = "qe scf"

    @job(output_schema=PwTaskDoc)
    def make(self, structure: Structure, kpoints_grid=None) -> PwTaskDoc:
        preset, directory, pseudos, kgrid, history = self._setup(structure, kpoints_grid)
        text, out, timings, corrections, dense = run_scf(
            structure, preset, pseudos, kgrid, directory, max_seconds=self.max_seconds,
            walltime_s=self.walltime_s, user_params=self.user_params,
        )
        doc = _pw_doc(out, text, preset, pseudos, kgrid, directory, self.name, "scf", timings,
                      corrections, structure, la2f_kpoints_grid=list(dense))
        doc.kpoint_convergence = history
        return doc


def run_scf(structure: Structure, preset: QePreset, pseudos: dict[str, Path], kgrid,
            directory: Path, max_seconds=None, walltime_s=None, user_params=None):
    """The scf(s) ph.x needs, in ``directory/out``: (la2F scf on the dense grid →) scf on k.

    Returns (input text, parsed output, timings, corrections, la2F grid).
    """
    timings, corrections = [], []
    dense = as_mesh(preset.la2f_kpoints_grid) if preset.la2f_kpoints_grid else tuple(kgrid)
    single = dense == tuple(kgrid)
    if not single:
        _, res, _ = _run_pw(structure, preset, "scf", pseudos, dense, directory, "scf_la2f",
                            la2f=True, max_seconds=max_seconds, walltime_s=walltime_s,
                            user_params=user_params)
        timings.append(res.timing)
        corrections += res.corrections
    text, res, out = _run_pw(structure, preset, "scf", pseudos, kgrid, directory, "scf",
                             la2f=single, max_seconds=max_seconds, walltime_s=walltime_s,
                             user_params=user_params)
    timings.append(res.timing)
    corrections += res.corrections
    return text, out, timings, corrections, dense


# ---------------------------------------------------------------------------------------------
# ph.x / q2r.x / matdyn.x
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
           only_init=False, max_seconds=None, walltime_s=None):
    gen = PhInputGenerator(preset=preset, fildyn=FILDYN)
    iset = gen.get_input_set(qgrid, outdir=OUTDIR, prefix=PREFIX, start_q=start_q,
                             last_q=last_q, only_init=only_init, max_seconds=max_seconds)
    res = run_qe("ph", iset, directory, _ph_handlers(walltime_s))
    res.timing.step = "ph-init" if only_init else "ph"
    return iset.text, res


def _qpoint_phonons(directory: Path, index: int, weight_total: int | None = None) -> QPointPhonons:
    dyn = parse_dyn_file(directory / f"{FILDYN}{index}")
    elph = parse_elph_lambda_file(directory / "elph_dir" / f"elph.inp_lambda.{index}")
    return QPointPhonons(
        index=index,
        q_cart_2pi_alat=elph.q,
        weight=dyn.n_star / weight_total if weight_total else float(dyn.n_star),
        n_star=dyn.n_star,
        frequencies_cm1=elph.frequencies_cm1,
        lambdas=elph.lambdas,
        gammas_GHz=elph.gammas_GHz,
    )


def run_lambda_x(directory: Path, qpoints: list[QPointPhonons], mu_star: float) -> list[dict]:
    """Run QE's lambda.x on the per-q files in ``directory`` (independent λ/ω_log check)."""
    import subprocess

    text = lambda_x_input(
        [q.q_cart_2pi_alat for q in qpoints], [q.n_star for q in qpoints],
        [f"elph_dir/elph.inp_lambda.{q.index}" for q in qpoints],
        max(max(q.frequencies_cm1) for q in qpoints), mu_star,
    )
    (directory / "lambda.in").write_text(text)
    with open(directory / "lambda.in") as fin, open(directory / "lambda.out", "w") as fout:
        proc = subprocess.run(qe_command("lambda"), stdin=fin, stdout=fout,
                              stderr=subprocess.STDOUT, cwd=directory, check=False)
    if proc.returncode != 0:
        raise CalculationError(f"lambda.x failed in {directory} (see lambda.out)")
    return parse_lambda_dat(directory / "lambda.dat")


def analyse_elph(
    directory: Path,
    preset: QePreset,
    kgrid,
    qgrid,
    structure: Structure | None,
    energy_eV: float | None,
    label: str,
    timings: list[RunTiming],
    corrections: list[QeCorrection],
    ph_input_text: str,
    fanout: bool,
    qe_version: str | None = None,
) -> ElphTaskDoc:
    """q2r.x + matdyn.x in ``directory`` (which holds dyn* and elph_dir/) and the Eliashberg table."""
    grid, irr = parse_dyn0(directory / f"{FILDYN}0")
    nq = len(irr)
    raw = [_qpoint_phonons(directory, i) for i in range(1, nq + 1)]
    n_total = sum(q.n_star for q in raw)
    if n_total != int(np.prod(grid)):
        raise CalculationError(
            f"{directory}: q stars cover {n_total} points, the {grid} grid has {int(np.prod(grid))}"
        )
    for q in raw:
        q.weight = q.n_star / n_total
    sigmas = parse_elph_lambda_file(directory / "elph_dir" / "elph.inp_lambda.1").sigmas_Ry
    dos_ef = parse_elph_lambda_file(directory / "elph_dir" / "elph.inp_lambda.1").dos_ef

    q2r = Q2rInputGenerator(fildyn=FILDYN, flfrc=f"{PREFIX}.fc").get_input_set()
    res_q2r = run_qe("q2r", q2r, directory)
    res_q2r.timing.step = "q2r"
    nk = preset.matdyn_nk or tuple(kgrid)
    matdyn = MatdynInputGenerator(preset=preset, flfrc=f"{PREFIX}.fc").get_input_set(nk)
    res_md = run_qe("matdyn", matdyn, directory)
    res_md.timing.step = "matdyn"
    timings = [*timings, res_q2r.timing, res_md.timing]

    dos_w, dos = parse_phonon_dos(directory / "phonon.dos")
    theta_D = debye_temperature_K(dos_w, dos)
    table = eliashberg_table(
        [q.frequencies_cm1 for q in raw], [q.lambdas for q in raw], [q.weight for q in raw],
        sigmas, dos_ef, mu_star=preset.mu_star, theta_D_K=theta_D,
    )
    md_rows = {round(r.sigma_Ry, 6): r for r in parse_matdyn_lambda(directory / "lambda")}
    lx_rows = {round(r["sigma_Ry"], 6): r for r in run_lambda_x(directory, raw, preset.mu_star)}
    rows = []
    for r in table.rows:
        md = md_rows.get(round(r["sigma_Ry"], 6))
        lx = lx_rows.get(round(r["sigma_Ry"], 6))
        rows.append(SmearingRow(
            sigma_Ry=r["sigma_Ry"], lambda_=r["lambda_"], omega_log_K=r["omega_log_K"],
            omega_2_K=r["omega_2_K"], tc_K=r["tc_K"],
            tc_allen_dynes_f1f2_K=r["tc_allen_dynes_f1f2_K"], tc_mcmillan_K=r["tc_mcmillan_K"],
            dos_ef_states_per_Ry=r["dos_ef_states_per_Ry"],
            lambda_qe=md.lambda_ if md else None, omega_log_qe_K=md.omega_log_K if md else None,
            lambda_lambdax=lx["lambda"] if lx else None,
            omega_log_lambdax_K=lx["omega_log_K"] if lx else None,
        ))
    sel = rows[table.selected]
    matdyn_a2f, md_freq = [], None
    for i in range(1, len(sigmas) + 1):
        a2f = parse_a2f_dos(directory / f"a2F.dos{i}")
        matdyn_a2f.append(a2f.a2f)
        md_freq = (np.array(a2f.frequencies_Ry) * RY_TO_CM1).tolist()
    min_q = min(min(q.frequencies_cm1) for q in raw)
    min_freq = min(min_q, min(dos_w))
    stable = min_freq >= preset.imaginary_threshold_cm1
    n_sites = len(structure) if structure is not None else None
    return ElphTaskDoc(
        task_label=label,
        calc_type="elph",
        dir_name=str(directory),
        qe_version=qe_version,
        formula_pretty=structure.composition.reduced_formula if structure else None,
        elements=sorted(el.symbol for el in structure.composition.elements) if structure else [],
        nsites=n_sites,
        structure=structure,
        input=_input_summary(preset, ph_input_text, ("inputph",), kpoints_grid=list(kgrid),
                             qpoints_grid=list(qgrid)),
        corrections=corrections,
        timings=timings,
        wall_time_s=sum(t.wall_time_s for t in timings),
        outdir=str(directory / OUTDIR),
        prefix=PREFIX,
        lambda_=sel.lambda_,
        omega_log_K=sel.omega_log_K,
        tc_K=sel.tc_K,
        tc_mcmillan_K=sel.tc_mcmillan_K,
        debye_temperature_K=theta_D,
        dos_ef_states_per_Ry=sel.dos_ef_states_per_Ry,
        mu_star=preset.mu_star,
        selected_sigma_Ry=sel.sigma_Ry,
        selection_rule=table.rule,
        smearing_table=rows,
        sigmas_Ry=list(sigmas),
        lambda_matdyn=sel.lambda_qe,
        kpoints_grid=list(kgrid),
        qpoints_grid=list(grid),
        n_q_irreducible=nq,
        qpoints=raw,
        min_frequency_cm1=float(min_freq),
        imaginary_threshold_cm1=preset.imaginary_threshold_cm1,
        dynamically_stable=bool(stable),
        energy_eV=energy_eV,
        energy_per_atom_eV=energy_eV / n_sites if energy_eV is not None and n_sites else None,
        fanout=fanout,
        a2f=A2FData(
            source="ph-q-sum",
            frequencies_cm1=table.grid_cm1.tolist(),
            sigmas_Ry=list(sigmas),
            a2f=table.a2f.tolist(),
            phonon_dos_frequencies_cm1=dos_w,
            phonon_dos=dos,
            matdyn_a2f=matdyn_a2f,
            matdyn_frequencies_cm1=md_freq,
        ),
    )


@dataclass
class QeElphMaker(Maker):
    """ph.x EPC (interpolated) + q2r.x + matdyn.x + λ/ω_log/T_c.

    ``fanout=True``: this job runs the first irreducible q-point (Γ), whose ``dyn0`` lists all
    of them, then is replaced by one job per remaining q-point (``start_q = last_q = i``, each
    with its own copy of the scf outdir) and a merge job that gathers the dyn and elph_dir files
    and runs q2r/matdyn/analysis - λ matches the monolithic run because every q-point's ph.x
    calculation is the same.
    """

    name: str = "qe elph"
    preset: str | QePreset | None = None  # None: settings.qe_preset
    fanout: bool = False
    max_seconds: float | None = None
    walltime_s: float | None = None
    cleanup: bool = True  # delete the copied outdir (wavefunctions, dvscf) after success

    @job(data=list(ELPH_DATA_FIELDS))  # no output_schema: with fanout the output is the merge's
    def make(self, scf_outdir: str, prefix: str = PREFIX, kpoints_grid=None, qpoints_grid=None,
             structure: Structure | None = None, energy_eV: float | None = None):
        preset = get_preset(self.preset)
        if kpoints_grid is None:
            raise InputError("QeElphMaker needs the k grid of the scf (kpoints_grid)")
        kgrid = as_mesh(kpoints_grid, "kpoints_grid")
        qgrid = as_mesh(qpoints_grid or preset.qpoints_grid or qgrid_from_kgrid(kgrid), "qpoints_grid")
        if any(k % q for k, q in zip(kgrid, qgrid, strict=True)):
            raise InputError(f"q grid {qgrid} must divide the k grid {kgrid}")
        directory = Path.cwd()
        copy_outdir(scf_outdir, prefix, directory)
        if not self.fanout:
            text, res = run_ph(preset, qgrid, directory, max_seconds=self.max_seconds,
                               walltime_s=self.walltime_s)
            version = parse_ph_output(res.output).version
            doc = analyse_elph(directory, preset, kgrid, qgrid, structure, energy_eV, self.name,
                               [res.timing], res.corrections, text, False, version)
            if self.cleanup:
                shutil.rmtree(directory / OUTDIR, ignore_errors=True)
                doc.outdir = None
            return doc
        # fan-out: the first irreducible q-point (Γ; no nscf, cheap) runs here and its dyn0
        # lists all of them; the others become one job each, then a merge job replaces this one
        text, res = run_ph(preset, qgrid, directory, start_q=1, last_q=1,
                           max_seconds=self.max_seconds, walltime_s=self.walltime_s)
        _, irr = parse_dyn0(directory / f"{FILDYN}0")
        first = qpoint_doc(preset, directory, 1, len(irr), text, res, f"{self.name} q1/{len(irr)}",
                           qgrid)
        if self.cleanup:
            shutil.rmtree(directory / OUTDIR, ignore_errors=True)
        qmaker = QeQPointMaker(preset=preset, max_seconds=self.max_seconds,
                               walltime_s=self.walltime_s)
        qjobs = []
        for i in range(2, len(irr) + 1):
            j = qmaker.make(scf_outdir, prefix, qgrid, i, len(irr))
            j.name = f"{self.name} q{i}/{len(irr)}"
            qjobs.append(j)
        merge = QeElphMergeMaker(name=f"{self.name} merge", preset=preset).make(
            [first.model_dump(), *[j.output for j in qjobs]], str(directory), kgrid, qgrid,
            structure, energy_eV,
        )
        return Response(replace=Flow([*qjobs, merge], output=merge.output, name=f"{self.name} fan-out"))


def qpoint_doc(preset: QePreset, directory: Path, q_index: int, n_q: int, text: str, res,
               label: str, qpoints_grid) -> QPointTaskDoc:
    """Task document of one q-point run (its dyn and elph files stay in ``directory``)."""
    ph = parse_ph_output(res.output)
    return QPointTaskDoc(
        task_label=label,
        calc_type="ph-q",
        dir_name=str(directory),
        qe_version=ph.version,
        input=_input_summary(preset, text, ("inputph",), qpoints_grid=list(qpoints_grid)),
        corrections=res.corrections,
        timings=[res.timing],
        wall_time_s=res.timing.wall_time_s,
        q_index=q_index,
        n_q_irreducible=n_q,
        qpoint=_qpoint_phonons(directory, q_index),
    )


def run_qpoint(preset: QePreset, qpoints_grid, scf_outdir, prefix: str, q_index: int,
               directory: Path, max_seconds=None, walltime_s=None):
    """ph.x for irreducible q-point ``q_index`` alone, in ``directory`` (own outdir copy)."""
    directory.mkdir(parents=True, exist_ok=True)
    copy_outdir(scf_outdir, prefix, directory)
    text, res = run_ph(preset, as_mesh(qpoints_grid), directory, start_q=q_index, last_q=q_index,
                       max_seconds=max_seconds, walltime_s=walltime_s)
    shutil.rmtree(directory / OUTDIR, ignore_errors=True)  # wavefunctions/dvscf not needed
    return text, res


def gather_qpoints(qdirs: dict[int, Path], init_dir: Path, directory: Path) -> None:
    """Copy ``dyn0`` and each q-point's ``dynN`` + ``elph_dir/*.N`` into ``directory``."""
    shutil.copy2(Path(init_dir) / f"{FILDYN}0", directory / f"{FILDYN}0")
    (directory / "elph_dir").mkdir(exist_ok=True)
    for i, src in sorted(qdirs.items()):
        src = Path(src)
        shutil.copy2(src / f"{FILDYN}{i}", directory / f"{FILDYN}{i}")
        for f in (src / "elph_dir").iterdir():
            if f.name.endswith(f".{i}") and f.name.startswith(("elph.inp_lambda", "a2Fq2r")):
                shutil.copy2(f, directory / "elph_dir" / f.name)


@dataclass
class QeQPointMaker(Maker):
    """ph.x for one irreducible q-point (fan-out member)."""

    name: str = "qe ph q"
    preset: str | QePreset | None = None  # None: settings.qe_preset
    max_seconds: float | None = None
    walltime_s: float | None = None

    @job(output_schema=QPointTaskDoc)
    def make(self, scf_outdir: str, prefix: str, qpoints_grid, q_index: int, n_q: int) -> QPointTaskDoc:
        preset = get_preset(self.preset)
        directory = Path.cwd()
        text, res = run_qpoint(preset, qpoints_grid, scf_outdir, prefix, q_index, directory,
                               self.max_seconds, self.walltime_s)
        return qpoint_doc(preset, directory, q_index, n_q, text, res, f"{self.name} {q_index}",
                          qpoints_grid)


@dataclass
class QeElphMergeMaker(Maker):
    """Gather the q jobs' dyn/elph files, then q2r.x + matdyn.x + Eliashberg (fan-out end)."""

    name: str = "qe elph merge"
    preset: str | QePreset | None = None  # None: settings.qe_preset

    @job(output_schema=ElphTaskDoc, data=list(ELPH_DATA_FIELDS))
    def make(self, q_docs: list, init_dir: str, kpoints_grid, qpoints_grid,
             structure: Structure | None = None, energy_eV: float | None = None,
             init_timings: list | None = None) -> ElphTaskDoc:
        preset = get_preset(self.preset)
        directory = Path.cwd()
        timings = [RunTiming(**t) for t in init_timings or []]
        corrections: list[QeCorrection] = []
        docs = sorted((QPointTaskDoc.model_validate(d) if isinstance(d, dict) else d
                       for d in q_docs), key=lambda d: d.q_index)
        gather_qpoints({d.q_index: Path(d.dir_name) for d in docs}, Path(init_dir), directory)
        for d in docs:
            timings += d.timings
            corrections += d.corrections
        ph_text = (Path(docs[0].dir_name) / "ph.in").read_text()
        return analyse_elph(directory, preset, as_mesh(kpoints_grid), as_mesh(qpoints_grid),
                            structure, energy_eV, self.name, timings, corrections, ph_text, True,
                            docs[0].qe_version)
