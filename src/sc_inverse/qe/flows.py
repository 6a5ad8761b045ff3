"""The electron-phonon T_c flow: (vc-relax →) scf(la2F) → ph.x EPC → q2r → matdyn → T_c."""

from __future__ import annotations

from dataclasses import dataclass

from jobflow import Flow, Maker
from pymatgen.core import Structure

from sc_inverse.qe.jobs import QeElphMaker, QeRelaxMaker, QeScfMaker
from sc_inverse.qe.pseudos import find_pseudopotentials
from sc_inverse.qe.sets import QePreset, clean_structure, get_preset


@dataclass
class ElectronPhononTcMaker(Maker):
    """relax → scf → elph, passing structure, k grid and outdir from job to job.

    The flow's output is the elph job's :class:`~sc_inverse.qe.schemas.ElphTaskDoc`
    (``lambda_``, ``omega_log_K``, ``tc_K``, ``dynamically_stable``, ``structure``,
    ``energy_eV``, ``smearing_table``). Pseudopotentials are checked in :meth:`make`, so a
    missing element fails before any job exists. ``relax=None`` follows the preset.
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

    def make(self, structure: Structure) -> Flow:
        preset = get_preset(self.preset)
        structure = clean_structure(structure)
        formula = structure.composition.reduced_formula
        find_pseudopotentials(structure, self.pseudo_dir, self.pseudo_pattern or preset.pseudo_pattern)
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
        kgrid = self.kpoints_grid
        if do_relax:
            relax = relax_maker.make(structure, kpoints_grid=kgrid)
            jobs.append(relax)
            structure = relax.output.structure
            kgrid = relax.output.input.kpoints_grid
        scf = scf_maker.make(structure, kpoints_grid=kgrid)
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
