"""Task documents of the Quantum ESPRESSO electron–phonon workflow (atomate2/emmet style).

Three documents, one per job kind, all plain pydantic models whose field names are a stable
contract for the builders (``sc_inverse.builders``) and the end-to-end flow:

* :class:`PwTaskDoc` - a pw.x ``vc-relax`` or ``scf`` run;
* :class:`QPointTaskDoc` - one irreducible q-point of a fanned-out ph.x run;
* :class:`ElphTaskDoc` - ph.x + q2r.x + matdyn.x + Eliashberg analysis (λ, ω_log, T_c).

Each document builds itself from the directory its executables ran in
(``PwTaskDoc.from_directory`` ...), as atomate2's ``TaskDoc.from_directory`` does: the jobs run
the executables (:mod:`sc_inverse.qe.run`) and pass only what the directory cannot tell - the
preset, the job name, the runner's timings and corrections, and what earlier jobs produced.
Every file is parsed once.

Units are in the field names (``energy_eV``, ``omega_log_K``, ``frequencies_cm1``).
Large arrays (α²F, phonon DOS) sit under the single field :data:`ELPH_DATA_FIELDS` so that
jobs can route them to jobflow's additional store named ``"data"`` (atomate2 convention).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pymatgen.core import Structure

from sc_inverse.errors import CalculationError, InputError, ParseError
from sc_inverse.qe.electronic import ElectronicSummary, electronic_from_outdir
from sc_inverse.qe.eliashberg import EliashbergResult, debye_temperature_K, eliashberg_table
from sc_inverse.qe.parsers import (
    ElphQ,
    MatdynFrequencies,
    parse_a2f_dos,
    parse_cpu_time,
    parse_dyn0,
    parse_dyn_file,
    parse_elph_lambda_file,
    parse_lambda_dat,
    parse_matdyn_frequencies,
    parse_matdyn_lambda,
    parse_matdyn_modes,
    parse_ph_output,
    parse_phonon_dos,
    parse_pw_output,
)
from sc_inverse.qe.sets import (
    DEFAULT_IMAGINARY_THRESHOLD_CM1,
    FILDYN,
    MESH_FREQ,
    OUTDIR,
    PHONON_DOS,
    PREFIX,
    QGRID_FREQ,
    QGRID_MODES,
    QePreset,
    parse_fortran_value,
    read_namelist,
)
from sc_inverse.qe.stability import N_ACOUSTIC, assess_stability, is_gamma
from sc_inverse.units import BOHR_TO_A, RY_TO_CM1, RY_TO_EV

#: Fields of :class:`ElphTaskDoc` that hold large arrays; jobs send them to the "data" store.
ELPH_DATA_FIELDS: tuple[str, ...] = ("a2f",)



def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class QeCorrection(BaseModel):
    """One custodian correction applied while running an executable."""

    handler: str = Field(description="Handler class name, e.g. 'PwScfConvergenceHandler'.")
    errors: list[str] = Field(default_factory=list, description="What the handler detected.")
    actions: list[dict[str, Any]] = Field(
        default_factory=list, description="Changes made to the input (custodian action dicts)."
    )
    step: str = Field("", description="Which run was corrected: pw, ph, q2r, matdyn.")


class QeInputSummary(BaseModel):
    """What went into a run (enough to reproduce it)."""

    preset: str = Field(description="Input preset name: 'paper' or 'test' (or custom).")
    parameters: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Namelist -> {keyword: value} as written to the input."
    )
    kpoints_grid: list[int] | None = Field(None, description="Monkhorst-Pack grid of pw.x/ph.x.")
    kpoints_shift: list[int] | None = None
    la2f_kpoints_grid: list[int] | None = Field(
        None, description="Dense grid of the la2F scf run that feeds α²F (None = same as k grid)."
    )
    qpoints_grid: list[int] | None = Field(None, description="ph.x q grid (nq1, nq2, nq3).")
    pseudopotentials: dict[str, str] = Field(
        default_factory=dict, description="Element -> pseudopotential file name."
    )
    pseudo_dir: str | None = None
    cutoff_rule: str | None = Field(
        None, description="How ecutwfc/ecutrho were chosen when the preset takes them from the "
        "pseudopotentials' suggestions (None: the preset's fixed cutoffs)."
    )
    kpoint_length_A: float | None = Field(
        None, description="k-point length (Å) the k grid was made from (fixed or converged)."
    )

    @classmethod
    def from_input(cls, preset: str, text: str, namelists: Sequence[str], **fields) -> QeInputSummary:
        """Summary of an input text: its listed namelists as written (absent ones skipped)."""
        params = {}
        for name in namelists:
            try:
                params[name] = read_namelist(text, name)
            except InputError:
                continue
        return cls(preset=preset, parameters=params, **fields)


class RunTiming(BaseModel):
    """Wall time of one executable call."""

    step: str = Field(
        description="relax, scf_la2f, scf, ph, q2r, matdyn or lambda (the program "
                    "unless the job names the run)."
    )
    command: str = ""
    wall_time_s: float


class QeTaskDocBase(BaseModel):
    """Fields common to every QE task document."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    task_label: str = Field("", description="Job name.")
    calc_type: str = Field(description="'vc-relax', 'relax', 'scf', 'ph-q' or 'elph'.")
    dir_name: str = Field(description="Directory the job ran in (absolute).")
    last_updated: str = Field(default_factory=_now)
    qe_version: str | None = Field(None, description="e.g. '6.7MaX', parsed from the output.")
    formula_pretty: str | None = None
    elements: list[str] = Field(default_factory=list)
    nsites: int | None = None
    structure: Structure | None = Field(None, description="Final (output) structure.")
    input: QeInputSummary
    completed: bool = Field(True, description="Every executable finished with JOB DONE.")
    corrections: list[QeCorrection] = Field(default_factory=list)
    timings: list[RunTiming] = Field(default_factory=list)
    wall_time_s: float | None = Field(None, description="Sum of all executable wall times.")
    outdir: str | None = Field(
        None, description="QE outdir (holds prefix.save, prefix.a2Fsave) for the next job."
    )
    prefix: str | None = Field(None, description="QE prefix of files in outdir.")


class RelaxSymmetry(BaseModel):
    """Symmetry of a vc-relax: space groups before/after (spglib) and the cell the EPC uses."""

    spacegroup_input: str | None = Field(None, description="e.g. 'Im-3m (229)'; None: not found.")
    spacegroup_relaxed: str | None = None
    symprec_A: float = Field(description="spglib tolerance (Å).")
    standardized: bool = Field(
        description="structure_standardized is the standardised primitive cell of the relaxed one."
    )
    nsites_relaxed: int | None = None
    nsites_standardized: int | None = None
    note: str | None = None


class PwTaskDoc(QeTaskDocBase):
    """A pw.x run (vc-relax or scf)."""

    structure_input: Structure | None = None
    energy_eV: float | None = Field(None, description="Final total energy (eV).")
    energy_per_atom_eV: float | None = None
    energies_ionic_eV: list[float] = Field(
        default_factory=list, description="Total energy after each ionic step (relax)."
    )
    fermi_energy_eV: float | None = None
    forces_eV_per_A: list[list[float]] | None = None
    stress_kbar: list[list[float]] | None = None
    pressure_kbar: float | None = None
    scf_converged: bool = True
    n_scf_iterations: int | None = Field(None, description="Iterations of the last scf cycle.")
    n_ionic_steps: int | None = None
    total_magnetization: float | None = None
    relax_converged: bool | None = Field(
        None, description="relax/vc-relax: BFGS reached its thresholds (None for scf)."
    )
    kpoint_convergence: list[dict[str, Any]] | None = Field(
        None, description="Automatic k-point search: [{length, grid, energy_eV}] (paper preset)."
    )
    structure_standardized: Structure | None = Field(
        None, description="Relax: the cell the next jobs compute on (standardised primitive "
        "cell of the relaxed structure, see symmetry)."
    )
    symmetry: RelaxSymmetry | None = Field(None, description="vc-relax: space groups before/after.")
    electronic: ElectronicSummary | None = Field(
        None, description="Band gap, metallicity and N(E_F) from the run's eigenvalues (pw.x XML); "
        "None when the XML was missing or unreadable (the reason is logged).")

    @classmethod
    def from_directory(
        cls,
        dir_name: str | Path,
        preset: QePreset,
        name: str = "scf",
        task_label: str = "",
        structure_input: Structure | None = None,
        timings: Sequence[RunTiming] = (),
        corrections: Sequence[QeCorrection] = (),
        kpoint_convergence: list[dict[str, Any]] | None = None,
        kpoint_length_A: float | None = None,
    ) -> PwTaskDoc:
        """Document of the pw.x run ``name`` (``name.in`` → ``name.out``) in ``dir_name``.

        The input summary is the input file as it stands after the run (handler corrections
        included); the la2F grid is that of ``scf_la2f.in`` when a denser la2F scf ran first.
        ``electronic`` is read from pw.x's XML now, because later jobs may delete the outdir.
        """
        directory = Path(dir_name)
        text = _read_input(directory / f"{name}.in")
        out = parse_pw_output(directory / f"{name}.out")
        control = {k: parse_fortran_value(v) for k, v in read_namelist(text, "control").items()}
        grid, shift, pseudos = _pw_cards(text, directory / f"{name}.in")
        final = out.final_structure
        outdir, prefix = str(directory / str(control.get("outdir", OUTDIR))), control.get("prefix")
        summary = QeInputSummary.from_input(
            preset.name, text, ("control", "system", "electrons", "ions", "cell"),
            kpoints_grid=grid, kpoints_shift=shift, pseudopotentials=pseudos,
            pseudo_dir=control.get("pseudo_dir"), la2f_kpoints_grid=_la2f_grid(directory, text, grid),
            cutoff_rule=preset.cutoff_rule, kpoint_length_A=kpoint_length_A,
        )
        return cls(
            task_label=task_label,
            calc_type=str(control.get("calculation", "scf")),
            dir_name=str(directory),
            qe_version=out.version,
            **_structure_fields(final),
            structure_input=structure_input,
            input=summary,
            energy_eV=out.energy_eV,
            energy_per_atom_eV=out.energy_eV / len(final),
            energies_ionic_eV=[e * RY_TO_EV for e in out.energies_Ry],
            fermi_energy_eV=out.fermi_energy_eV,
            forces_eV_per_A=out.forces_eV_per_A,
            stress_kbar=out.stress_kbar,
            pressure_kbar=out.pressure_kbar,
            scf_converged=out.scf_converged,
            n_scf_iterations=out.n_scf_iterations,
            n_ionic_steps=out.n_ionic_steps,
            total_magnetization=out.total_magnetization,
            relax_converged=out.relax_converged,
            kpoint_convergence=kpoint_convergence,
            **_run_fields(timings, corrections),
            outdir=outdir,
            prefix=prefix,
            electronic=electronic_from_outdir(outdir, prefix or "pwscf"),  # pw.x's default prefix
        )


# ---------------------------------------------------------------------------------------------
# stability gate (issue 11): phonons only, before the electron-phonon run
# ---------------------------------------------------------------------------------------------
class GateMode(BaseModel):
    """One unstable phonon mode seen by the stability gate, in the form a soft-mode rescue
    needs: where (``q_frac``) and how the atoms move (``displacements_*``)."""

    q_frac: list[float] = Field(
        description="q in reduced coordinates of the checked structure's reciprocal lattice "
                    "(e.g. [0.5, 0, 0]); the checked structure is StabilityGateDoc.structure.")
    q_cart_2pi_alat: list[float] = Field(description="q as matdyn prints it (cartesian, 2π/alat).")
    frequency_cm1: float = Field(description="ASR-corrected frequency; negative = imaginary.")
    displacements_re: list[list[float]] = Field(
        description="Real part of the displacement pattern (n_sites × 3, cartesian; eigenvector "
                    "/ √mass, normalised to 1 over the cell as matdyn writes it).")
    displacements_im: list[list[float]] = Field(description="Imaginary part, same layout.")


class GateQPoint(BaseModel):
    """ASR-corrected frequencies at one irreducible q point of the gate's grid."""

    q_frac: list[float]
    q_cart_2pi_alat: list[float]
    frequencies_cm1: list[float]


class StabilityGateDoc(QeTaskDocBase):
    """The DFT stability gate: scf on the normal k grid, then phonons only (ph.x, no EPC) at Γ
    and the zone-boundary points of the EPC q grid, q2r.x + matdyn.x with the acoustic sum rule,
    verdict by :func:`~sc_inverse.qe.stability.assess_stability` on those q points only (no
    interpolated mesh: from a ≤ 2³ grid it is noise). ``epc_allowed`` decides whether the
    electron-phonon run starts."""

    stable: bool | None = Field(None, description="None: no mode to judge (Γ-only grid, 1 atom).")
    threshold_cm1: float = DEFAULT_IMAGINARY_THRESHOLD_CM1
    min_frequency_cm1: float | None = Field(
        None, description="Lowest ASR-corrected mode on the gate's q points (acoustic at Γ left out).")
    min_frequency_raw_cm1: float | None = Field(
        None, description="Lowest mode of ph.x's own dynamical matrices (no sum rule); not judged.")
    softest_q_frac: list[float] | None = None
    qpoints_grid: list[int] = Field(description="The gate's ph.x grid: min(2, n) of the EPC q grid.")
    epc_qpoints_grid: list[int] | None = Field(None, description="The EPC q grid it was made from.")
    qpoints: list[GateQPoint] = Field(default_factory=list)
    unstable_modes: list[GateMode] = Field(default_factory=list)
    reason: str = ""
    epc_allowed: bool = Field(description="True when stable (or undecided), or forced by epc_unstable.")
    epc_unstable: bool = Field(False, description="The user asked for the EPC run even if unstable.")
    scf: PwTaskDoc = Field(description="The gate's scf (normal k grid, no la2F): hull energy, gap.")
    cpu_time_s: float | None = Field(None, description="CPU seconds of pw.x + ph.x (q2r/matdyn "
                                                       "negligible), from their outputs.")
    energy_eV: float | None = None
    energy_per_atom_eV: float | None = None

    epc_skipped_reason: str | None = Field(
        None, description="Why the electron-phonon run did not start (None when it may).")
    phonons_dir: str | None = Field(
        None, description="Where the gate kept its phonons (dvscf, patterns, dyn) for the EPC "
                          "to reuse: set when the gate's q grid is the EPC's and reuse is on.")

    @classmethod
    def from_directory(
        cls,
        dir_name: str | Path,
        preset: QePreset,
        structure: Structure,
        scf: PwTaskDoc,
        epc_qpoints_grid: Sequence[int] | None = None,
        epc_unstable: bool = False,
        task_label: str = "",
        timings: Sequence[RunTiming] = (),
        corrections: Sequence[QeCorrection] = (),
    ) -> StabilityGateDoc:
        """The gate's verdict from ``dir_name``: ``dyn0..N`` (ph.x), ``qgrid.freq`` and
        ``qgrid.modes`` (matdyn.x, ASR) and the CPU times of ``scf.out`` and ph.x (``ph.out``
        and the logs of earlier, killed attempts it continued, ``ph.attemptN.out``).

        ``structure`` is the checked cell (q is converted to its reduced coordinates with the
        alat pw.x printed: with ibrav = 0 it is the length of the first lattice vector);
        ``scf`` its scf document; the threshold is the preset's."""
        directory = Path(dir_name)
        grid, irreducible = parse_dyn0(directory / f"{FILDYN}0")
        raw = min(min(parse_dyn_file(directory / f"{FILDYN}{i}").frequencies_cm1)
                  for i in range(1, len(irreducible) + 1))
        qgrid = parse_matdyn_frequencies(directory / QGRID_FREQ)
        empty_mesh = MatdynFrequencies(str(directory / "no-mesh"), [], [])
        threshold = preset.imaginary_threshold_cm1
        verdict = assess_stability(raw, qgrid, empty_mesh, threshold)
        alat_A = pw_alat_A(directory / "scf.out")
        modes = parse_matdyn_modes(directory / QGRID_MODES)
        # q from dyn0 (12 digits; the modes file prints 4), after checking the files agree
        if len(modes.qpoints_2pi_alat) != len(irreducible) or not np.allclose(
                modes.qpoints_2pi_alat, irreducible, atol=2e-4):
            raise ParseError(f"{directory / QGRID_MODES}: q points differ from ph.x's dyn0 list")
        qpoints, unstable = [], []
        for q, freqs, disps in zip(irreducible, modes.frequencies_cm1, modes.displacements,
                                   strict=True):
            q_frac = q_frac_from_cartesian(q, structure, alat_A)
            qpoints.append(GateQPoint(q_frac=q_frac, q_cart_2pi_alat=q, frequencies_cm1=freqs))
            judged = sorted(range(len(freqs)), key=freqs.__getitem__)
            if is_gamma(q):
                judged = judged[N_ACOUSTIC:]
            unstable += [GateMode(q_frac=q_frac, q_cart_2pi_alat=q, frequency_cm1=freqs[i],
                                  displacements_re=disps[i].real.tolist(),
                                  displacements_im=disps[i].imag.tolist())
                         for i in judged if freqs[i] < threshold]
        softest = verdict.qgrid
        allowed = verdict.stable is not False or epc_unstable
        skipped = None if allowed else f"{GATE_SKIP_NOTE}: {verdict.reason}"
        ph_logs = [*sorted(directory.glob("ph.attempt*.out")), directory / "ph.out"]
        cpu = [parse_cpu_time(_read_text(directory / "scf.out"), "PWSCF")]
        cpu += [parse_cpu_time(_read_text(f), "PHONON") for f in ph_logs if f.is_file()]
        return cls(
            task_label=task_label,
            calc_type="stability-gate",
            dir_name=str(directory),
            qe_version=scf.qe_version,
            **_structure_fields(structure),
            input=_ph_input_summary(directory, preset.name, kpoints_grid=scf.input.kpoints_grid,
                                    qpoints_grid=list(grid)),
            **_run_fields(timings, corrections),
            stable=verdict.stable,
            threshold_cm1=threshold,
            min_frequency_cm1=softest.frequency_cm1 if softest else None,
            min_frequency_raw_cm1=raw,
            softest_q_frac=(q_frac_from_cartesian(softest.q_2pi_alat, structure, alat_A)
                            if softest else None),
            qpoints_grid=list(grid),
            epc_qpoints_grid=list(epc_qpoints_grid) if epc_qpoints_grid is not None else None,
            qpoints=qpoints,
            unstable_modes=unstable,
            reason=verdict.reason.replace("the q grid", "the gate's q grid", 1),
            epc_allowed=allowed,
            epc_unstable=epc_unstable,
            epc_skipped_reason=skipped,
            scf=scf,
            cpu_time_s=sum(c for c in cpu if c is not None) if any(c is not None for c in cpu)
            else None,
            energy_eV=scf.energy_eV,
            energy_per_atom_eV=scf.energy_per_atom_eV,
        )


    @classmethod
    def not_a_metal(
        cls,
        dir_name: str | Path,
        preset: QePreset,
        structure: Structure,
        scf: PwTaskDoc,
        gap_eV: float,
        max_gap_eV: float,
        epc_qpoints_grid: Sequence[int],
        qpoints_grid: Sequence[int],
        epc_unstable: bool = False,
        task_label: str = "",
        timings: Sequence[RunTiming] = (),
        corrections: Sequence[QeCorrection] = (),
    ) -> StabilityGateDoc:
        """The gate's verdict when its scf finds a band gap ≥ ``max_gap_eV`` (the screen's
        E_gap criterion, from DFT): no phonons computed (``stable`` None), no EPC - a
        conventional superconductor needs a Fermi surface."""
        directory = Path(dir_name)
        reason = (f"{GAP_SKIP_NOTE}: DFT band gap {gap_eV:.3f} eV >= {max_gap_eV:g} eV at the "
                  "gate's scf; phonons not computed")
        cpu = parse_cpu_time(_read_text(directory / "scf.out"), "PWSCF")
        return cls(
            task_label=task_label, calc_type="stability-gate", dir_name=str(directory),
            qe_version=scf.qe_version, **_structure_fields(structure),
            input=_ph_input_summary(directory, preset.name, kpoints_grid=scf.input.kpoints_grid,
                                    qpoints_grid=list(qpoints_grid)),
            **_run_fields(timings, corrections),
            stable=None, threshold_cm1=preset.imaginary_threshold_cm1,
            qpoints_grid=list(qpoints_grid), epc_qpoints_grid=list(epc_qpoints_grid),
            reason=reason, epc_allowed=epc_unstable, epc_unstable=epc_unstable,
            epc_skipped_reason=None if epc_unstable else reason, scf=scf, cpu_time_s=cpu,
            energy_eV=scf.energy_eV, energy_per_atom_eV=scf.energy_per_atom_eV,
        )


#: what a row says for a candidate the gate stopped
GATE_SKIP_NOTE = "EPC not run (unstable at the gate; --epc-unstable runs it)"
#: ... and for one whose gate scf is not a metal
GAP_SKIP_NOTE = "EPC not run (not a metal; --epc-unstable runs it)"


def pw_alat_A(path: Path) -> float:
    """pw.x's ``lattice parameter (alat)`` (Å): the unit of ph.x's and matdyn's q (2π/alat)."""
    m = re.search(r"lattice parameter \(alat\)\s*=\s*([-+.\dEeDd]+)\s*a\.u\.", _read_text(path))
    if not m:
        raise ParseError(f"{path}: no 'lattice parameter (alat)' line")
    return float(m.group(1).replace("D", "E").replace("d", "e")) * BOHR_TO_A


def q_frac_from_cartesian(q_2pi_alat: Sequence[float], structure: Structure,
                          alat_A: float) -> list[float]:
    """q (cartesian, 2π/alat) → reduced coordinates of ``structure``'s reciprocal lattice:
    q_frac_i = q · a_i / alat (a_i the real-space lattice vectors in Å), rounded to 1e-6."""
    frac = structure.lattice.matrix @ np.asarray(q_2pi_alat, dtype=float) / alat_A
    return [round(float(x), 6) + 0.0 for x in frac]


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise ParseError(f"{path}: output file not found")
    return path.read_text(errors="replace")


def null_non_finite(model: BaseModel) -> BaseModel:
    """Null every NaN/inf float field of ``model`` (not a value, and not valid JSON), saying so
    in its ``undefined_reasons``; a non-finite value in a field that cannot be null is an error.

    The computations return None with their own reason; this catches what slips through."""
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, float) and not math.isfinite(value):
            if info.is_required() or info.default is not None:
                raise ValueError(f"{name} is {value}: it must be a finite number")
            setattr(model, name, None)
            model.undefined_reasons.setdefault(name, f"computed a non-finite value ({value})")
    return model


class SmearingRow(BaseModel):
    """Eliashberg results for one electronic (Gaussian) smearing of the EPC calculation."""

    sigma_Ry: float = Field(description="el_ph_sigma value (Ry).")
    lambda_: float = Field(description="λ = 2∫α²F(ω)/ω dω.")
    omega_log_K: float | None = Field(
        None, description="ω_log = exp[(2/λ)∫α²F ln ω / ω dω] in K (None: λ = 0)."
    )
    omega_2_K: float | None = Field(None, description="sqrt(<ω²>) in K (McMillan-Allen).")
    tc_K: float | None = Field(
        None, description="Allen-Dynes T_c, ω_log/1.2 prefactor (paper Eq. 6), in K."
    )
    tc_allen_dynes_f1f2_K: float | None = Field(
        None, description="Allen-Dynes T_c with the strong-coupling factors f1·f2 (needs ω_2)."
    )
    tc_mcmillan_K: float | None = Field(
        None, description="McMillan T_c, Θ_D/1.45 prefactor, Θ_D from the phonon second moment "
                          "(see eliashberg)."
    )
    dos_ef_states_per_Ry: float | None = Field(
        None, description="N(E_F) per spin per cell (states/Ry), as printed by ph.x."
    )
    lambda_qe: float | None = Field(
        None, description="λ of matdyn's Fourier-interpolated α²F ('lambda' file), for comparison."
    )
    omega_log_qe_K: float | None = Field(None, description="ω_log printed by QE for comparison.")
    lambda_lambdax: float | None = Field(
        None, description="λ from QE's lambda.x on the same per-q files (cross-check)."
    )
    omega_log_lambdax_K: float | None = Field(None, description="ω_log from lambda.x (K).")
    undefined_reasons: dict[str, str] = Field(
        default_factory=dict, description="Field -> why it is null (could not be computed)."
    )

    @model_validator(mode="after")
    def _finite(self) -> SmearingRow:
        return null_non_finite(self)


class A2FData(BaseModel):
    """α²F(ω) and phonon DOS on a frequency grid (large; goes to the 'data' store)."""

    source: str = Field(description="'ph-q-sum' (ph.x per-q λ) or 'matdyn' (interpolated).")
    frequencies_cm1: list[float] = Field(default_factory=list)
    sigmas_Ry: list[float] = Field(default_factory=list)
    a2f: list[list[float]] = Field(
        default_factory=list, description="α²F per smearing (rows follow sigmas_Ry)."
    )
    phonon_dos_frequencies_cm1: list[float] = Field(default_factory=list)
    phonon_dos: list[float] | None = Field(
        default_factory=list, description="matdyn's phonon DOS, states/cm⁻¹ per cell."
    )
    matdyn_a2f: list[list[float]] | None = Field(
        None, description="matdyn's interpolated α²F (a2F.dosN) on matdyn_frequencies_cm1."
    )
    matdyn_frequencies_cm1: list[float] | None = None
    undefined_reasons: dict[str, str] = Field(
        default_factory=dict, description="Field -> why it is null (could not be computed)."
    )


class QPointPhonons(BaseModel):
    """Phonons and EPC of one irreducible q-point."""

    index: int = Field(description="1-based index in ph.x's irreducible list.")
    q_cart_2pi_alat: list[float] = Field(description="q in cartesian 2π/alat units.")
    weight: float = Field(description="Fraction of the full q grid in this star (sums to 1).")
    n_star: int
    frequencies_cm1: list[float]
    lambdas: list[list[float]] | None = Field(
        None, description="λ_qν per smearing (rows follow ElphTaskDoc.sigmas_Ry)."
    )
    gammas_GHz: list[list[float]] | None = None

    @classmethod
    def from_directory(cls, dir_name: str | Path, index: int, fildyn: str = FILDYN) -> QPointPhonons:
        """q-point ``index`` from ``fildyn{index}`` and ``elph_dir/elph.inp_lambda.{index}``
        (``weight`` = star size until the whole grid is known)."""
        return _read_qpoint(Path(dir_name), index, fildyn)[0]


class QPointTaskDoc(QeTaskDocBase):
    """One q-point job of the fan-out; the merge job collects their files."""

    q_index: int
    n_q_irreducible: int
    qpoint: QPointPhonons | None = None

    @classmethod
    def from_directory(
        cls,
        dir_name: str | Path,
        preset: QePreset,
        q_index: int,
        n_q_irreducible: int,
        task_label: str = "",
        timings: Sequence[RunTiming] = (),
        corrections: Sequence[QeCorrection] = (),
        fildyn: str = FILDYN,
    ) -> QPointTaskDoc:
        """Document of a ph.x run of irreducible q-point ``q_index`` in ``dir_name``
        (``ph.in``, ``ph.out``, its dyn and elph files, which stay there for the merge)."""
        directory = Path(dir_name)
        ph = parse_ph_output(directory / "ph.out")
        return cls(
            task_label=task_label,
            calc_type="ph-q",
            dir_name=str(directory),
            qe_version=ph.version,
            input=_ph_input_summary(directory, preset.name),
            **_run_fields(timings, corrections),
            q_index=q_index,
            n_q_irreducible=n_q_irreducible,
            qpoint=QPointPhonons.from_directory(directory, q_index, fildyn),
        )


@dataclass
class PhElphData:
    """ph.x's electron-phonon output in one directory, each file parsed once.

    Read before q2r.x/matdyn.x/lambda.x run, so that a missing or truncated per-q file fails
    before them, and passed on to lambda.x's input and to :meth:`ElphTaskDoc.from_directory`.
    """

    qpoints_grid: list[int]
    qpoints: list[QPointPhonons]  # weights: fraction of the full grid (sum to 1)
    sigmas_Ry: list[float]
    dos_ef: list[float]  # N(E_F) per smearing, states/spin/Ry/cell

    @classmethod
    def from_directory(cls, dir_name: str | Path, fildyn: str = FILDYN) -> PhElphData:
        """``fildyn0`` (grid, irreducible q), then every ``fildynN`` + ``elph.inp_lambda.N``."""
        directory = Path(dir_name)
        grid, irreducible = parse_dyn0(directory / f"{fildyn}0")
        read = [_read_qpoint(directory, i, fildyn) for i in range(1, len(irreducible) + 1)]
        qpoints = [q for q, _ in read]
        n_total = sum(q.n_star for q in qpoints)
        if n_total != int(np.prod(grid)):
            raise CalculationError(
                f"{directory}: q stars cover {n_total} points, the {grid} grid has {int(np.prod(grid))}"
            )
        for q in qpoints:
            q.weight = q.n_star / n_total
        first: ElphQ = read[0][1]
        return cls(list(grid), qpoints, first.sigmas_Ry, first.dos_ef)


class ElphTaskDoc(QeTaskDocBase):
    """ph.x electron-phonon + q2r + matdyn + Eliashberg T_c: the result users look at."""

    # headline numbers (reported smearing)
    lambda_: float | None = Field(None, description="λ at the reported smearing.")
    omega_log_K: float | None = None
    tc_K: float | None = Field(None, description="Allen-Dynes T_c (μ* = mu_star) in K.")
    tc_mcmillan_K: float | None = None
    debye_temperature_K: float | None = Field(None, description="Θ_D from the phonon DOS.")
    dos_ef_states_per_Ry: float | None = Field(None, description="N(E_F) per spin (states/Ry).")
    mu_star: float = 0.1
    selected_sigma_Ry: float | None = None
    selection_rule: str = Field("", description="How the reported smearing was chosen.")
    smearing_table: list[SmearingRow] = Field(default_factory=list)
    sigmas_Ry: list[float] = Field(default_factory=list)
    # cross-check
    lambda_matdyn: float | None = Field(
        None, description="λ from matdyn's interpolated α²F at the reported smearing."
    )
    # phonons
    kpoints_grid: list[int] | None = None
    qpoints_grid: list[int] | None = None
    n_q_irreducible: int | None = None
    qpoints: list[QPointPhonons] = Field(default_factory=list)
    # dynamical stability (rule: sc_inverse.qe.stability)
    min_frequency_cm1: float | None = Field(
        None, description="Lowest ASR-corrected frequency the verdict judged: the lower of "
                          "min_frequency_qgrid_cm1 and min_frequency_mesh_cm1."
    )
    min_frequency_qgrid_cm1: float | None = Field(
        None, description="Lowest frequency on ph.x's irreducible q points after the acoustic sum "
                          "rule (matdyn.x), the three acoustic modes at Γ excluded."
    )
    min_frequency_mesh_cm1: float | None = Field(
        None, description="Lowest frequency on matdyn.x's interpolated DOS mesh (ASR imposed), "
                          "the three acoustic modes at Γ excluded."
    )
    min_frequency_raw_cm1: float | None = Field(
        None, description="Lowest frequency of ph.x's own dynamical matrices (no sum rule, "
                          "acoustic modes at Γ included); for comparison, not used by the verdict."
    )
    softest_qpoint_2pi_alat: list[float] | None = Field(
        None, description="q (cartesian, 2π/alat) of the lowest judged mode."
    )
    softest_mode_source: str | None = Field(None, description="'q grid' or 'mesh'.")
    phonon_mesh: list[int] | None = Field(None, description="matdyn.x's mesh (nk1, nk2, nk3).")
    imaginary_threshold_cm1: float = DEFAULT_IMAGINARY_THRESHOLD_CM1
    dynamically_stable: bool | None = Field(
        None, description="True when no judged mode is below imaginary_threshold_cm1."
    )
    stability_reason: str = Field("", description="What the verdict saw, in words.")
    undefined_reasons: dict[str, str] = Field(
        default_factory=dict, description="Field -> why it is null (could not be computed)."
    )
    # carried from the scf job so that one document answers the end-to-end flow
    energy_eV: float | None = Field(None, description="scf total energy of `structure` (eV).")
    energy_per_atom_eV: float | None = None
    fanout: bool = Field(False, description="q-points run as separate jobs and merged.")
    phonons_from: str | None = Field(
        None, description="Directory (the stability gate's) whose saved phonons - displacement "
                          "patterns, dvscf, dyn files on this q grid - ph.x read with "
                          "trans=.false.; None: ph.x computed the phonons itself.")
    a2f: A2FData | None = None

    @classmethod
    def from_directory(
        cls,
        dir_name: str | Path,
        preset: QePreset,
        kpoints_grid: Sequence[int],
        structure: Structure | None = None,
        energy_eV: float | None = None,
        task_label: str = "",
        timings: Sequence[RunTiming] = (),
        corrections: Sequence[QeCorrection] = (),
        fanout: bool = False,
        qe_version: str | None = None,
        ph_data: PhElphData | None = None,
    ) -> ElphTaskDoc:
        """Eliashberg analysis of a directory where ph.x, q2r.x, matdyn.x and lambda.x ran.

        Reads the ph.x files (unless ``ph_data`` already holds them), ``ph.in`` (input summary),
        ``ph.out`` (QE version, unless given), matdyn's ``qgrid.freq``, ``qe.freq``,
        ``phonon.dos``, ``lambda`` and ``a2F.dosN``, and lambda.x's ``lambda.dat``.
        ``kpoints_grid`` (the scf's), ``structure`` and ``energy_eV`` come from the scf job;
        ``mu_star`` and the stability threshold from ``preset``. What cannot be computed is
        None, with the reason in ``undefined_reasons``.
        """
        directory = Path(dir_name)
        ph_data = ph_data or PhElphData.from_directory(directory)
        if qe_version is None and (directory / "ph.out").is_file():
            qe_version = parse_ph_output(directory / "ph.out").version
        qpoints = ph_data.qpoints
        qgrid = _qgrid_frequencies(directory, qpoints)
        theta_D, theta_why = debye_temperature_K(qgrid.frequencies_cm1, [q.weight for q in qpoints])
        table = eliashberg_table(
            [q.frequencies_cm1 for q in qpoints], [q.lambdas for q in qpoints],
            [q.weight for q in qpoints], ph_data.sigmas_Ry, ph_data.dos_ef,
            mu_star=preset.mu_star, theta_D_K=theta_D, theta_D_reason=theta_why or "",
        )
        rows = _smearing_rows(table, directory)
        sel = rows[table.selected]
        stability, stability_why = _stability_fields(directory, qpoints, qgrid,
                                                     preset.imaginary_threshold_cm1)
        n_sites = len(structure) if structure is not None else None
        summary = _ph_input_summary(directory, preset.name, kpoints_grid=list(kpoints_grid),
                                    qpoints_grid=list(ph_data.qpoints_grid))
        ph_params = {k: parse_fortran_value(v) for k, v in summary.parameters.get("inputph", {}).items()}
        dos_w, dos = parse_phonon_dos(directory / PHONON_DOS)
        return cls(
            task_label=task_label,
            calc_type="elph",
            dir_name=str(directory),
            qe_version=qe_version,
            **_structure_fields(structure),
            input=summary,
            **_run_fields(timings, corrections),
            outdir=str(directory / str(ph_params.get("outdir", OUTDIR))),
            prefix=str(ph_params.get("prefix", PREFIX)),
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
            sigmas_Ry=list(ph_data.sigmas_Ry),
            lambda_matdyn=sel.lambda_qe,
            kpoints_grid=list(kpoints_grid),
            qpoints_grid=list(ph_data.qpoints_grid),
            n_q_irreducible=len(qpoints),
            qpoints=qpoints,
            **stability,
            undefined_reasons=_headline_reasons(sel, theta_why) | stability_why,
            energy_eV=energy_eV,
            energy_per_atom_eV=energy_eV / n_sites if energy_eV is not None and n_sites else None,
            fanout=fanout,
            a2f=_a2f_data(directory, table, ph_data.sigmas_Ry, dos_w, dos),
        )

    @model_validator(mode="after")
    def _finite(self) -> ElphTaskDoc:
        return null_non_finite(self)


# ---------------------------------------------------------------------------------------------
# reading a run directory (used by the from_directory constructors)
# ---------------------------------------------------------------------------------------------
def _read_input(path: Path) -> str:
    if not path.is_file():
        raise ParseError(f"{path}: input file not found")
    return path.read_text(errors="replace")


def _pw_cards(text: str, path: Path) -> tuple[list[int] | None, list[int] | None, dict[str, str]]:
    """(k grid, k shift, {species: pseudopotential file}) from a pw.x input's cards."""
    lines = text.splitlines()
    ntyp = int(parse_fortran_value(read_namelist(text, "system").get("ntyp", "0")))
    grid = shift = None
    pseudos: dict[str, str] = {}
    try:
        for i, line in enumerate(lines):
            card = line.split()[0].upper() if line.split() else ""
            if card == "ATOMIC_SPECIES":
                for spec in lines[i + 1 : i + 1 + ntyp]:
                    label, _mass, pseudo = spec.split()[:3]
                    pseudos[label] = pseudo
            elif card == "K_POINTS" and "automatic" in line.lower():
                values = [int(x) for x in lines[i + 1].split()[:6]]
                grid, shift = values[:3], values[3:]
    except (IndexError, ValueError) as exc:
        raise ParseError(f"{path}: malformed ATOMIC_SPECIES or K_POINTS card ({exc})") from exc
    return grid, shift, pseudos


def _la2f_grid(directory: Path, text: str, grid: list[int] | None) -> list[int] | None:
    """k grid of the scf that wrote the la2F data: the dense ``scf_la2f`` run, else this run
    when it set la2F itself, else None (a relax)."""
    dense = directory / "scf_la2f.in"
    if dense.is_file():
        return _pw_cards(dense.read_text(errors="replace"), dense)[0]
    la2f = read_namelist(text, "system").get("la2f", ".false.")
    return grid if parse_fortran_value(la2f) is True else None


def _ph_input_summary(directory: Path, preset_name: str, **fields) -> QeInputSummary:
    """``ph.in`` of ``directory`` (no parameters when absent); the q grid from its ``nq1..3``."""
    path = directory / "ph.in"
    text = path.read_text(errors="replace") if path.is_file() else ""
    summary = QeInputSummary.from_input(preset_name, text, ("inputph",), **fields)
    params = summary.parameters.get("inputph", {})
    if summary.qpoints_grid is None and all(f"nq{i}" in params for i in (1, 2, 3)):
        summary.qpoints_grid = [int(parse_fortran_value(params[f"nq{i}"])) for i in (1, 2, 3)]
    return summary


def _read_qpoint(directory: Path, index: int, fildyn: str) -> tuple[QPointPhonons, ElphQ]:
    dyn = parse_dyn_file(directory / f"{fildyn}{index}")
    elph = parse_elph_lambda_file(directory / "elph_dir" / f"elph.inp_lambda.{index}")
    qpoint = QPointPhonons(
        index=index,
        q_cart_2pi_alat=elph.q,
        weight=float(dyn.n_star),
        n_star=dyn.n_star,
        frequencies_cm1=elph.frequencies_cm1,
        lambdas=elph.lambdas,
        gammas_GHz=elph.gammas_GHz,
    )
    return qpoint, elph


def _qgrid_frequencies(directory: Path, qpoints: Sequence[QPointPhonons]) -> MatdynFrequencies:
    """matdyn's ASR-corrected frequencies on ph.x's irreducible q points (``qgrid.freq``), in
    the order of ``qpoints``."""
    freqs = parse_matdyn_frequencies(directory / QGRID_FREQ)
    listed = np.array(freqs.qpoints_2pi_alat)
    expected = np.array([q.q_cart_2pi_alat for q in qpoints])
    if listed.shape != expected.shape or not np.allclose(listed, expected, atol=2e-5):
        raise ParseError(f"{directory / QGRID_FREQ}: q points differ from ph.x's irreducible list "
                         f"({len(listed)} listed, {len(expected)} expected)")
    return freqs


def _stability_fields(directory: Path, qpoints: Sequence[QPointPhonons], qgrid: MatdynFrequencies,
                      threshold_cm1: float) -> tuple[dict[str, Any], dict[str, str]]:
    """(fields, undefined reasons) of the stability verdict
    (:func:`~sc_inverse.qe.stability.assess_stability`) on matdyn's ASR-corrected q-grid and
    mesh (``qe.freq``) frequencies, with ph.x's raw minimum beside it."""
    raw = min(min(q.frequencies_cm1) for q in qpoints)
    verdict = assess_stability(raw, qgrid, parse_matdyn_frequencies(directory / MESH_FREQ),
                               threshold_cm1)
    softest = verdict.softest
    fields: dict[str, Any] = {
        "min_frequency_cm1": softest[1].frequency_cm1 if softest else None,
        "min_frequency_qgrid_cm1": verdict.qgrid.frequency_cm1 if verdict.qgrid else None,
        "min_frequency_mesh_cm1": verdict.mesh.frequency_cm1 if verdict.mesh else None,
        "min_frequency_raw_cm1": raw,
        "softest_qpoint_2pi_alat": softest[1].q_2pi_alat if softest else None,
        "softest_mode_source": softest[0] if softest else None,
        "phonon_mesh": _matdyn_mesh(directory / "matdyn.in"),
        "imaginary_threshold_cm1": threshold_cm1,
        "dynamically_stable": verdict.stable,
        "stability_reason": verdict.reason,
    }
    reasons = {k: verdict.reason for k, v in fields.items() if v is None and k != "phonon_mesh"}
    if fields["phonon_mesh"] is None:
        reasons["phonon_mesh"] = "no matdyn.in with nk1..nk3 in the run directory"
    return fields, reasons


def _headline_reasons(sel: SmearingRow, theta_why: str | None) -> dict[str, str]:
    """Why a headline number taken from the reported smearing's row is None."""
    names = {"omega_log_K": "omega_log_K", "tc_K": "tc_K", "tc_mcmillan_K": "tc_mcmillan_K",
             "lambda_matdyn": "lambda_qe", "dos_ef_states_per_Ry": "dos_ef_states_per_Ry"}
    out = {doc: sel.undefined_reasons.get(row, "not computed")
           for doc, row in names.items() if getattr(sel, row) is None}
    if theta_why:
        out["debye_temperature_K"] = theta_why
    return out


def _matdyn_mesh(path: Path) -> list[int] | None:
    """(nk1, nk2, nk3) of matdyn's DOS run input; None without the input file or its nk."""
    if not path.is_file():
        return None
    params = read_namelist(path.read_text(errors="replace"), "input")
    if not all(f"nk{i}" in params for i in (1, 2, 3)):
        return None
    return [int(parse_fortran_value(params[f"nk{i}"])) for i in (1, 2, 3)]


#: why lambda.x's α²F-based columns can be NaN (its source: omega = sqrt(w2) for every mode)
LAMBDAX_NAN = ("lambda.x printed NaN: it takes √ω² of every ph.x mode, so one imaginary mode "
               "(ω² < 0, e.g. an acoustic mode at Γ before the sum rule) makes its α²F NaN")


def _smearing_rows(table: EliashbergResult, directory: Path) -> list[SmearingRow]:
    """Our table per smearing, with matdyn's (``lambda``) and lambda.x's (``lambda.dat``)
    values at the same smearing beside it (None, with the reason, where they have none)."""
    matdyn = {round(r.sigma_Ry, 6): r for r in parse_matdyn_lambda(directory / "lambda")}
    lambdax = {round(r["sigma_Ry"], 6): r for r in parse_lambda_dat(directory / "lambda.dat")}
    rows = []
    for r in table.rows:
        md = matdyn.get(round(r["sigma_Ry"], 6))
        lx = lambdax.get(round(r["sigma_Ry"], 6))
        cross = {
            "lambda_qe": md.lambda_ if md else None,
            "omega_log_qe_K": md.omega_log_K if md else None,
            "lambda_lambdax": lx["lambda"] if lx else None,
            "omega_log_lambdax_K": lx["omega_log_K"] if lx else None,
        }
        reasons = dict(r["undefined_reasons"])
        for key, value in cross.items():
            if value is not None and not math.isfinite(value):
                cross[key] = None
                reasons[key] = LAMBDAX_NAN if "lambdax" in key else f"matdyn printed {value}"
            elif value is None:
                source = "lambda.dat (lambda.x)" if "lambdax" in key else "matdyn's 'lambda' file"
                reasons[key] = f"{source} has no row (or no value) for σ = {r['sigma_Ry']:g} Ry"
        rows.append(SmearingRow(**{k: v for k, v in r.items() if k != "undefined_reasons"},
                                **cross, undefined_reasons=reasons))
    return rows


def _a2f_data(directory: Path, table: EliashbergResult, sigmas_Ry: list[float],
              dos_w: list[float], dos: list[float]) -> A2FData:
    """Our α²F per smearing, the phonon DOS and matdyn's interpolated ``a2F.dosN``; matdyn's
    arrays are null (with the reason) when they hold NaN."""
    matdyn_a2f, matdyn_freq = [], None
    for i in range(1, len(sigmas_Ry) + 1):
        a2f = parse_a2f_dos(directory / f"a2F.dos{i}")
        matdyn_a2f.append(a2f.a2f)
        matdyn_freq = (np.array(a2f.frequencies_Ry) * RY_TO_CM1).tolist()
    reasons = {}
    if not np.all(np.isfinite(dos)):
        dos, reasons["phonon_dos"] = None, f"{PHONON_DOS}: {MATDYN_NAN}"
    if not np.all(np.isfinite(np.asarray(matdyn_a2f, float))):
        matdyn_a2f, reasons["matdyn_a2f"] = None, f"a2F.dosN: {MATDYN_NAN}"
    return A2FData(
        source="ph-q-sum",
        frequencies_cm1=table.grid_cm1.tolist(),
        sigmas_Ry=list(sigmas_Ry),
        a2f=table.a2f.tolist(),
        phonon_dos_frequencies_cm1=dos_w,
        phonon_dos=dos,
        matdyn_a2f=matdyn_a2f,
        matdyn_frequencies_cm1=matdyn_freq,
        undefined_reasons=reasons,
    )


#: why matdyn's DOS and a2F.dosN can be NaN (QE 6.7 matdyn.f90, function dos_gam)
MATDYN_NAN = ("matdyn.x wrote NaN; its tetrahedron routine (dos_gam, QE 6.7) divides every "
              "corner's weight by the corner's frequency, so when an acoustic mode at Γ is exactly "
              "0 after the sum rule every tetrahedron touching Γ gives 0/0, at every frequency")


def _structure_fields(structure: Structure | None) -> dict[str, Any]:
    if structure is None:
        return {"formula_pretty": None, "elements": [], "nsites": None, "structure": None}
    return {
        "formula_pretty": structure.composition.reduced_formula,
        "elements": sorted(el.symbol for el in structure.composition.elements),
        "nsites": len(structure),
        "structure": structure,
    }


def _run_fields(timings: Sequence[RunTiming], corrections: Sequence[QeCorrection]) -> dict[str, Any]:
    return {
        "corrections": list(corrections),
        "timings": list(timings),
        "wall_time_s": sum(t.wall_time_s for t in timings),
    }


__all__ = [
    "A2FData",
    "DEFAULT_IMAGINARY_THRESHOLD_CM1",
    "GAP_SKIP_NOTE",
    "ELPH_DATA_FIELDS",
    "ElphTaskDoc",
    "GATE_SKIP_NOTE",
    "GateMode",
    "GateQPoint",
    "PhElphData",
    "PwTaskDoc",
    "QPointPhonons",
    "QPointTaskDoc",
    "QeCorrection",
    "QeInputSummary",
    "QeTaskDocBase",
    "RunTiming",
    "SmearingRow",
    "StabilityGateDoc",
]
