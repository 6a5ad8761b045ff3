"""Task documents of the Quantum ESPRESSO electron–phonon workflow (atomate2/emmet style).

Three documents, one per job kind, all plain pydantic models whose field names are a stable
contract for the builders (``sc_inverse.builders``) and the end-to-end flow:

* :class:`PwTaskDoc` - a pw.x ``vc-relax`` or ``scf`` run;
* :class:`QPointTaskDoc` - one irreducible q-point of a fanned-out ph.x run;
* :class:`ElphTaskDoc` - ph.x + q2r.x + matdyn.x + Eliashberg analysis (λ, ω_log, T_c).

Units are in the field names (``energy_eV``, ``omega_log_K``, ``frequencies_cm1``).
Large arrays (α²F, phonon DOS) sit under the single field :data:`ELPH_DATA_FIELDS` so that
jobs can route them to jobflow's additional store named ``"data"`` (atomate2 convention).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pymatgen.core import Structure

from sc_inverse.qe.sets import DEFAULT_IMAGINARY_THRESHOLD_CM1

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


class RunTiming(BaseModel):
    """Wall time of one executable call."""

    step: str = Field(description="pw, pw-la2F, ph, ph-init, q2r, matdyn, lambda")
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
    kpoint_convergence: list[dict[str, Any]] | None = Field(
        None, description="Automatic k-point search: [{length, grid, energy_eV}] (paper preset)."
    )


class SmearingRow(BaseModel):
    """Eliashberg results for one electronic (Gaussian) smearing of the EPC calculation."""

    sigma_Ry: float = Field(description="el_ph_sigma value (Ry).")
    lambda_: float = Field(description="λ = 2∫α²F(ω)/ω dω.")
    omega_log_K: float = Field(description="ω_log = exp[(2/λ)∫α²F ln ω / ω dω] in K.")
    omega_2_K: float | None = Field(None, description="sqrt(<ω²>) in K (McMillan-Allen).")
    tc_K: float = Field(description="Allen-Dynes T_c, ω_log/1.2 prefactor (paper Eq. 6), in K.")
    tc_allen_dynes_f1f2_K: float | None = Field(
        None, description="Allen-Dynes T_c with the strong-coupling factors f1·f2 (needs ω_2)."
    )
    tc_mcmillan_K: float | None = Field(
        None, description="McMillan T_c, Θ_D/1.45 prefactor, Θ_D from the phonon DOS (see eliashberg)."
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


class A2FData(BaseModel):
    """α²F(ω) and phonon DOS on a frequency grid (large; goes to the 'data' store)."""

    source: str = Field(description="'ph-q-sum' (ph.x per-q λ) or 'matdyn' (interpolated).")
    frequencies_cm1: list[float] = Field(default_factory=list)
    sigmas_Ry: list[float] = Field(default_factory=list)
    a2f: list[list[float]] = Field(
        default_factory=list, description="α²F per smearing (rows follow sigmas_Ry)."
    )
    phonon_dos_frequencies_cm1: list[float] = Field(default_factory=list)
    phonon_dos: list[float] = Field(default_factory=list, description="states/cm⁻¹ per cell.")
    matdyn_a2f: list[list[float]] | None = Field(
        None, description="matdyn's interpolated α²F (a2F.dosN) on matdyn_frequencies_cm1."
    )
    matdyn_frequencies_cm1: list[float] | None = None


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


class QPointTaskDoc(QeTaskDocBase):
    """One q-point job of the fan-out; the merge job collects their files."""

    q_index: int
    n_q_irreducible: int
    qpoint: QPointPhonons | None = None


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
    min_frequency_cm1: float | None = Field(
        None, description="Lowest frequency over the ph.x q points and the matdyn DOS grid."
    )
    imaginary_threshold_cm1: float = DEFAULT_IMAGINARY_THRESHOLD_CM1
    dynamically_stable: bool | None = Field(
        None, description="True when no mode is below imaginary_threshold_cm1."
    )
    # carried from the scf job so that one document answers the end-to-end flow
    energy_eV: float | None = Field(None, description="scf total energy of `structure` (eV).")
    energy_per_atom_eV: float | None = None
    fanout: bool = Field(False, description="q-points run as separate jobs and merged.")
    a2f: A2FData | None = None


__all__ = [
    "A2FData",
    "DEFAULT_IMAGINARY_THRESHOLD_CM1",
    "ELPH_DATA_FIELDS",
    "ElphTaskDoc",
    "PwTaskDoc",
    "QPointPhonons",
    "QPointTaskDoc",
    "QeCorrection",
    "QeInputSummary",
    "QeTaskDocBase",
    "RunTiming",
    "SmearingRow",
]
