"""The electron-phonon T_c flow: (vc-relax → standardised primitive cell →) stability gate (scf +
phonons at Γ and the zone boundary) → [only when the gate allows] scf(la2F) → ph.x EPC → q2r →
matdyn → T_c."""

from __future__ import annotations

from dataclasses import dataclass

from jobflow import Flow, Maker
from pymatgen.core import Structure

from sc_inverse.qe.gate import QeGatedElphMaker, QeStabilityGateMaker
from sc_inverse.qe.jobs import QeElphMaker, QeRelaxMaker, QeScfMaker
from sc_inverse.qe.pseudos import resolve_pseudopotentials
from sc_inverse.qe.rescue import QeSoftModeRescueMaker
from sc_inverse.qe.sets import QePreset, clean_structure, get_preset
from sc_inverse.settings import get_settings


@dataclass
class ElectronPhononTcMaker(Maker):
    """relax → scf → elph, passing structure, k grid and outdir from job to job.

    The flow's output is the elph job's :class:`~sc_inverse.qe.schemas.ElphTaskDoc`
    (``lambda_``, ``omega_log_K``, ``tc_K``, ``dynamically_stable``, ``structure``,
    ``energy_eV``, ``smearing_table``). Pseudopotentials are found and read in :meth:`make`, so
    a missing element or a corrupt file fails before any job exists, and the cutoffs of the
    structure's elements are fixed there for every job (:func:`~sc_inverse.qe.pseudos.
    resolve_cutoffs`). ``relax=None`` follows the preset; after a vc-relax the later jobs run on
    the standardised primitive cell of the relaxed structure, with the k grid made from the
    relax's k-point length for that cell (or the fixed grid).

    ``stability_gate`` (None: ``settings.epc_stability_gate``): a phonons-only check
    (:mod:`sc_inverse.qe.gate`) runs first, and the scf(la2F) → elph jobs are created only when
    it finds no imaginary mode below the preset's threshold, or when ``epc_unstable``. The
    flow's output is then the elph document, or the gate's
    :class:`~sc_inverse.qe.schemas.StabilityGateDoc` (``calc_type`` 'stability-gate') for a
    candidate stopped at the gate. ``reuse_gate_phonons``: when the gate's q grid is the EPC
    q grid, the EPC's ph.x reads the gate's phonons (``trans=.false.``) instead of computing
    them again (off by default: λ moves by up to 0.5 % at small σ, which flipped the σ rule on
    bcc Nb, docs/validation.md); otherwise the EPC
    jobs' inputs are the same with or without the gate.

    ``rescue_rounds`` (None: ``settings.epc_rescue_rounds``): a candidate the gate stops is
    handed to the soft-mode rescue (:mod:`sc_inverse.qe.rescue`); the flow's output is then a
    :class:`~sc_inverse.qe.rescue.SoftModeRescueDoc` (``calc_type`` 'soft-mode-rescue').
    """

    name: str = "electron-phonon Tc"
    preset: str | QePreset | None = None  # None: settings.qe_preset
    pseudo_dir: str | None = None
    pseudo_pattern: str | None = None
    relax: bool | None = None
    fanout: bool = False
    kpoints_grid: tuple[int, int, int] | None = None
    relax_maker: QeRelaxMaker | None = None
    scf_maker: QeScfMaker | None = None
    elph_maker: QeElphMaker | None = None
    max_seconds: float | None = None
    walltime_s: float | None = None
    stability_gate: bool | None = None  # None: settings.epc_stability_gate
    epc_unstable: bool = False
    gate_maker: QeStabilityGateMaker | None = None
    reuse_gate_phonons: bool = False  # off: see docs/validation.md (σ rule flips on Nb)
    rescue_rounds: int | None = None  # None: settings.epc_rescue_rounds; 0 = no rescue

    def make(self, structure: Structure) -> Flow:
        structure = clean_structure(structure)
        formula = structure.composition.reduced_formula
        _, preset = resolve_pseudopotentials(structure, get_preset(self.preset), self.pseudo_dir,
                                             self.pseudo_pattern)
        common = {"preset": preset, "pseudo_dir": self.pseudo_dir,
                  "pseudo_pattern": self.pseudo_pattern, "max_seconds": self.max_seconds,
                  "walltime_s": self.walltime_s}
        relax_maker = self.relax_maker or QeRelaxMaker(**common)
        scf_maker = self.scf_maker or QeScfMaker(**common)
        elph_maker = self.elph_maker or QeElphMaker(
            preset=preset, fanout=self.fanout, max_seconds=self.max_seconds,
            walltime_s=self.walltime_s,
        )
        jobs = []
        do_relax = preset.relax if self.relax is None else self.relax
        kgrid, length = self.kpoints_grid, None
        if do_relax:
            relax = relax_maker.make(structure, kpoints_grid=kgrid)
            jobs.append(relax)
            structure = relax.output.structure_standardized
            if kgrid is None and preset.kpoints_grid is None:
                length = relax.output.input.kpoint_length_A  # the cell may have changed
            else:
                kgrid = relax.output.input.kpoints_grid
        gated = get_settings().epc_stability_gate if self.stability_gate is None else self.stability_gate
        if gated:
            gate = (self.gate_maker or QeStabilityGateMaker(
                **common, epc_unstable=self.epc_unstable, reuse_phonons=self.reuse_gate_phonons)
                    ).make(structure, kpoints_grid=kgrid, kpoint_length_A=length)
            rounds = (get_settings().epc_rescue_rounds if self.rescue_rounds is None
                      else self.rescue_rounds)
            epc = QeGatedElphMaker(
                name="qe epc (epc-unstable)" if self.epc_unstable else "qe epc",
                scf_maker=scf_maker, elph_maker=elph_maker, epc_unstable=self.epc_unstable,
                reuse_phonons=self.reuse_gate_phonons,
                rescue_maker=QeSoftModeRescueMaker(**common, rounds=rounds) if rounds > 0 else None,
            ).make(gate.output, structure, kpoints_grid=kgrid, kpoint_length_A=length)
            jobs += [gate, epc]
            return Flow(jobs, output=epc.output, name=f"{self.name} {formula}")
        scf = scf_maker.make(structure, kpoints_grid=kgrid, kpoint_length_A=length)
        jobs.append(scf)
        elph = elph_maker.make(
            scf.output.outdir,
            scf.output.prefix,
            kpoints_grid=scf.output.input.kpoints_grid,
            structure=scf.output.structure,
            energy_eV=scf.output.energy_eV,
        )
        jobs.append(elph)
        return Flow(jobs, output=elph.output, name=f"{self.name} {formula}")
