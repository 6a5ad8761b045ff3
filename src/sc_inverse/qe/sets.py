"""Quantum ESPRESSO inputs as pymatgen InputSets, and the presets (``fast``, ``paper``, ``test``).

pw.x inputs are written by :class:`pymatgen.io.pwscf.PWInput` (CELL_PARAMETERS in Å, crystal
positions, ibrav = 0); ph.x, q2r.x and matdyn.x inputs are plain namelists written here.
The namelist helpers (:func:`format_namelist`, :func:`update_namelist`) are also what the
custodian handlers use to change an input between attempts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pymatgen.core import Structure
from pymatgen.io.core import InputGenerator, InputSet
from pymatgen.io.pwscf import PWInput

from sc_inverse.errors import InputError
from sc_inverse.records import MIN_DISTANCE_A, atoms_too_close
from sc_inverse.settings import get_settings
from sc_inverse.units import CM1_TO_THZ, RY_TO_EV

Mesh = tuple[int, int, int]

#: Lowest ASR-corrected phonon frequency (cm⁻¹; acoustic modes at Γ excluded) still counted as
#: stable (rule: :mod:`sc_inverse.qe.stability`). Slightly negative values are the usual
#: Fourier-interpolation noise of acoustic branches near Γ; JARVIS and most EPC studies treat
#: modes below about -20 cm⁻¹ as real instabilities.
DEFAULT_IMAGINARY_THRESHOLD_CM1: float = -20.0

# File names every job of the workflow uses (the task documents read them back).
PREFIX = "qe"  # pw.x/ph.x prefix
OUTDIR = "out"  # pw.x/ph.x outdir, relative to the job directory
FILDYN = "dyn"  # ph.x dynamical matrices: dyn0 (q list), dyn1 ...
FLFRC = f"{PREFIX}.fc"  # q2r.x force constants
PHONON_DOS = "phonon.dos"  # matdyn.x phonon DOS
MESH_FREQ = "qe.freq"  # matdyn.x frequencies on the irreducible points of its DOS mesh
QGRID_FREQ = "qgrid.freq"  # matdyn.x frequencies on ph.x's irreducible q points
QGRID_MODES = "qgrid.modes"  # matdyn.x displacement patterns there (stability gate only)
FILDVSCF = "dvscf"  # ph.x potential variations (out/_ph0/qe.dvscf1, out/_ph0/qe.q_N/qe.dvscf1)
#: the gate's out/_ph0 kept for the EPC (displacement patterns + dvscf, no wavefunctions)
SAVED_PH0 = "gate_ph0"

#: Acoustic sum rule matdyn.x imposes on the force constants (both runs). 'crystal' is QE's
#: optimal correction (the smallest change of all force constants that restores translational
#: invariance, keeping their symmetry); ph.x's own dynamical matrices carry no correction.
MATDYN_ASR = "crystal"


# ---------------------------------------------------------------------------------------------
# presets
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QePreset:
    """Every numerical choice of the EPC workflow in one place.

    Pseudopotentials: ``pseudo_dir`` fixes a preset's own directory (``test``: Debian's LDA
    files); otherwise ``settings.pseudo_dir``, else the built library of ``functional`` and
    ``pseudo_tier`` (:func:`sc_inverse.qe.pslibrary.default_library_dir`); ``pseudo_pattern`` names
    the files (``settings.pseudo_pattern`` overrides it). See :mod:`sc_inverse.qe.pseudos`.

    Cutoffs (Ry): with ``cutoffs_from_library`` the run uses max(``ecutwfc``/``ecutrho``, the
    largest cutoffs the UPF files of the elements present suggest) (:func:`~sc_inverse.qe.pseudos.
    resolve_cutoffs` fixes them per structure and records how in ``cutoff_rule``); otherwise
    ``ecutwfc``/``ecutrho`` as they are.

    k-points: ``kpoints_grid`` fixes the grid; else ``kpoint_length_A`` makes it from a fixed
    k-point length (no convergence loop; prime dimensions bumped); else JARVIS' automatic
    k-point-length convergence. ``qpoints_grid=None`` derives q from k (smallest divisor).
    la2F: ``la2f_kpoints_grid`` (fixed) or ``la2f_kpoints_factor`` (× the k grid) runs a denser
    la2F scf first (QE's Al example); neither writes the la2F data in the scf ph.x uses (JARVIS).

    Relaxation (``relax=True``): symmetry-preserving vc-relax (BFGS ions and cell,
    ``cell_dofree='all'``) to ``forc_conv_thr_Ry_per_bohr``, ``press_conv_thr_kbar`` and
    ``etot_conv_thr_Ry``; the EPC then runs on the standardised primitive cell of the result.
    """

    name: str
    pseudo_pattern: str | None = None  # file names ({el}); settings.pseudo_pattern wins
    pseudo_dir: str | None = None  # a library of its own; None = settings', else the built one
    functional: str = "pbesol"
    pseudo_tier: str = "standard"
    ecutwfc: float = 45.0
    ecutrho: float | None = 250.0
    cutoffs_from_library: bool = False
    cutoff_rule: str | None = None  # how resolve_cutoffs chose ecutwfc/ecutrho (set by it)
    smearing: str = "mp"
    degauss: float = 0.01
    conv_thr: float = 1e-9
    mixing_beta: float = 0.7
    mixing_mode: str = "plain"
    relax: bool = True
    forc_conv_thr_Ry_per_bohr: float = 1e-3
    press_conv_thr_kbar: float = 0.5
    etot_conv_thr_Ry: float = 1e-4
    relax_system: dict[str, Any] = field(default_factory=dict)
    relax_electrons: dict[str, Any] = field(default_factory=dict)
    relax_control: dict[str, Any] = field(default_factory=dict)
    kpoints_grid: Mesh | None = None
    kpoint_length_A: float | None = None
    la2f_kpoints_grid: Mesh | None = None
    la2f_kpoints_factor: int | None = None
    qpoints_grid: Mesh | None = None
    kpoint_length_start: float = 10.0
    kpoint_length_step: float = 5.0
    kpoint_tol_eV: float = 1e-3 * RY_TO_EV
    kpoint_n_confirm: int = 1
    el_ph_sigma: float = 0.005
    el_ph_nsigma: int = 10
    tr2_ph: float = 1e-12
    matdyn_nk: Mesh | None = None  # None = the k grid (JARVIS)
    matdyn_ndos: int = 50
    mu_star: float = 0.1
    imaginary_threshold_cm1: float = DEFAULT_IMAGINARY_THRESHOLD_CM1

    def with_updates(self, **kwargs) -> QePreset:
        return replace(self, **kwargs)


#: File names of the built PBEsol library (:mod:`sc_inverse.qe.pslibrary`).
PBESOL_LIBRARY_PATTERN = "{el}.pbesol-*.UPF"

#: JARVIS/Wines settings (learned from jarvis.tasks.qe.super / converg): PBEsol, cutoffs
#: max(45/250 Ry, the suggested cutoffs of the elements present) - JARVIS used 45/250 Ry with
#: GBRV; the built pslibrary files suggest more for about half of the elements -, Methfessel-
#: Paxton 0.01 Ry, conv_thr 1e-9, vc-relax (BFGS, cell_dofree='all', QE's default thresholds as
#: JARVIS: forces 1e-3 Ry/bohr, pressure 0.5 kbar, energy 1e-4 Ry) with the constant-cutoff
#: modified kinetic functional (qcutz/q2sigma/ecfixed, ecfixed = ecutwfc - 0.5 Ry) and local-TF
#: mixing, automatic k length (1 mRy), q = smallest divisor of k, one la2F scf, ph.x tr2_ph 1e-12,
#: σ = 0.005 × 10, matdyn on the k grid, μ* = 0.1.
PAPER = QePreset(
    name="paper",
    pseudo_pattern=PBESOL_LIBRARY_PATTERN,
    cutoffs_from_library=True,
    relax_system={"q2sigma": 1.0, "ecfixed": 44.5, "qcutz": 800.0},
    relax_electrons={"mixing_mode": "local-TF", "mixing_beta": 0.3},
    relax_control={"nstep": 100},
)

#: The cheap preset whose T_c should stay within 25 % (or 2 K) of ``paper`` - the default of
#: ``run`` and ``submit inverse-design``. Every number that sets its cost is in this block:
#: PBEsol low-cutoff tier, cutoffs max(30/240 Ry, the suggested ones), MP 0.02 Ry, conv_thr 1e-8,
#: vc-relax as ``paper`` but plain mixing and no modified kinetic functional (forces 1e-3 Ry/bohr,
#: pressure 0.5 kbar), k from a fixed k-point length of 18 Å instead of the convergence loop
#: (ph.x grid; 8³ for fcc Al and bcc Nb), la2F on a grid twice as dense, q = smallest divisor of
#: k (2³ there), tr2_ph 1e-10, σ = 0.005 × 10.
#: Chosen by measurement (benchmarks/validate_epc.py, docs/validation.md; 1 process). With the
#: vc-relax (Al → a 4.02 Å, Nb → 3.27 Å): bcc Nb T_c 10.14 K at σ 0.045 Ry in 93 s CPU (paper:
#: 11.1 K at that σ - its σ rule reports 24.5 K at 0.010 Ry -, 392 s: 4.2× cheaper; JARVIS
#: 10.7 K), fcc Al 0.32 K in 14 s (paper 0.32 K,
#: 57 s). Variants of paper on the unrelaxed cells (Nb a 3.30 Å: paper 12.25 K, 333 s) that did
#: not work on Nb: MP 0.01 at k 8³ (7.8 K; 8.2 K with the dense la2F: phonons 10-20 % too
#: stiff), MP 0.04 (8.5 K), k 10³ (λ 1.1-4: soft N-point phonons at MP 0.01 and 0.02; 18 Å
#: keeps both metals at 8³ with margin, 18.5 Å is at their 8/9 edge, 20 Å gives 9³ and q 3³),
#: 6 smearings (the σ rule then
#: stops at 0.025-0.03 Ry: Nb 16 K). The 10 smearings cost ~1 % of ph.x (elphsum 2 s of 275 s).
FAST = QePreset(
    name="fast",
    pseudo_pattern=PBESOL_LIBRARY_PATTERN,
    pseudo_tier="low",
    cutoffs_from_library=True,
    ecutwfc=30.0,
    ecutrho=240.0,
    conv_thr=1e-8,
    relax_control={"nstep": 60},
    degauss=0.02,
    kpoint_length_A=18.0,
    la2f_kpoints_factor=2,
    tr2_ph=1e-10,
    el_ph_nsigma=10,
)

#: QE's own fcc-Al EPC example (PHonon/example03): LDA Al.pz-vbc (Debian's library), 15 Ry,
#: Marzari-Vanderbilt 0.05 Ry, scf k 8³ for phonons after a 16³ la2F scf, q 4³, σ = 0.005 × 10,
#: matdyn 10³. For CI only: its numbers are plumbing checks, not chemistry.
#: No vc-relax: relaxing the example cell moves λ away from the reference the test checks
#: (see docs/architecture.md); pass relax=True to QeElphTcMaker/CLI --relax to include it.
TEST = QePreset(
    name="test",
    pseudo_pattern="{el}.pz-*.UPF",
    pseudo_dir="/usr/share/espresso/pseudo",
    functional="pz",
    ecutwfc=15.0,
    ecutrho=None,
    smearing="mv",
    degauss=0.05,
    conv_thr=1e-8,
    mixing_beta=0.7,
    relax=False,
    relax_control={"nstep": 30},
    kpoints_grid=(8, 8, 8),
    la2f_kpoints_grid=(16, 16, 16),
    qpoints_grid=(4, 4, 4),
    tr2_ph=1e-10,
    matdyn_nk=(10, 10, 10),
    matdyn_ndos=50,
)

PRESETS: dict[str, QePreset] = {"fast": FAST, "paper": PAPER, "test": TEST}


def get_preset(preset: str | QePreset | None = None) -> QePreset:
    """Look a preset up by name (or pass a QePreset through); None: ``settings.qe_preset``."""
    if isinstance(preset, QePreset):
        return preset
    if preset is None:
        preset = get_settings().qe_preset
    try:
        return PRESETS[preset]
    except KeyError:
        raise InputError(f"unknown QE preset {preset!r}; choose one of {sorted(PRESETS)}") from None


# ---------------------------------------------------------------------------------------------
# namelists
# ---------------------------------------------------------------------------------------------
def fortran_value(value: Any) -> str:
    """Format a Python value as a Fortran namelist value."""
    if isinstance(value, bool):
        return ".true." if value else ".false."
    if isinstance(value, str):
        return "'" + value.replace("'", "") + "'"
    if isinstance(value, float):
        return repr(value).replace("e", "d")
    if isinstance(value, int):
        return str(value)
    raise InputError(f"cannot write {value!r} ({type(value).__name__}) into a namelist")


def format_namelist(name: str, params: dict[str, Any]) -> str:
    """``&name ... /`` block; list values become ``key(1)``, ``key(2)`` ..."""
    lines = [f"&{name}"]
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            lines += [f"  {key}({i}) = {fortran_value(v)}" for i, v in enumerate(value, 1)]
        else:
            lines.append(f"  {key} = {fortran_value(value)}")
    lines.append("/")
    return "\n".join(lines) + "\n"


_BLOCK_RE = r"(?ims)^[ \t]*&{name}\b(?P<body>.*?)^[ \t]*/[ \t]*$"


def _split_assignments(body: str) -> list[tuple[str, str]]:
    items = []
    for part in re.split(r",\s*\n|\n", body):
        part = part.split("!")[0].strip().rstrip(",")
        for sub in re.split(r",\s*(?=[A-Za-z_][\w()]*\s*=)", part):
            if "=" in sub:
                k, v = sub.split("=", 1)
                items.append((k.strip().lower(), v.strip()))
    return items


def read_namelist(text: str, name: str) -> dict[str, str]:
    """Raw ``{key: value-string}`` of namelist ``name`` (keys lower-case)."""
    match = re.search(_BLOCK_RE.format(name=re.escape(name)), text)
    if not match:
        raise InputError(f"namelist &{name} not found")
    return dict(_split_assignments(match.group("body")))


def update_namelist(text: str, name: str, updates: dict[str, Any]) -> str:
    """Set (or add) keys of namelist ``name`` in an input text; ``None`` removes a key."""
    match = re.search(_BLOCK_RE.format(name=re.escape(name)), text)
    if not match:
        if all(v is None for v in updates.values()):
            return text
        raise InputError(f"namelist &{name} not found in input")
    items = dict(_split_assignments(match.group("body")))
    for key, value in updates.items():
        if value is None:
            items.pop(key.lower(), None)
        else:
            items[key.lower()] = fortran_value(value)
    body = "".join(f"  {k} = {v}\n" for k, v in items.items())
    start, end = match.span()
    head = text[start : match.start("body")].strip("\n")
    rest = text[end:]
    return text[:start] + f"{head}\n{body}/" + (rest if rest.startswith("\n") else "\n" + rest)


def parse_fortran_value(raw: str) -> Any:
    """Inverse of :func:`fortran_value` for simple scalars."""
    raw = raw.strip()
    low = raw.lower()
    if low in (".true.", ".t.", "t"):
        return True
    if low in (".false.", ".f.", "f"):
        return False
    if raw[:1] in "'\"":
        return raw.strip("'\"")
    try:
        return int(raw)
    except ValueError:
        try:
            return float(low.replace("d", "e"))
        except ValueError:
            return raw


# ---------------------------------------------------------------------------------------------
# input sets
# ---------------------------------------------------------------------------------------------
class QeInputSet(InputSet):
    """Input files of one QE executable (``{filename: text}``)."""

    #: name of the main input file
    filename: str = "qe.in"

    @property
    def text(self) -> str:
        return str(self.inputs[self.filename])

    def validate(self) -> bool:
        return bool(self.inputs.get(self.filename))


class PwInputSet(QeInputSet):
    filename = "pw.in"


class PhInputSet(QeInputSet):
    filename = "ph.in"


class Q2rInputSet(QeInputSet):
    filename = "q2r.in"


class MatdynInputSet(QeInputSet):
    filename = "matdyn.in"


class LambdaInputSet(QeInputSet):
    filename = "lambda.in"


def clean_structure(structure: Structure) -> Structure:
    """Ordered, charge-free copy; raises InputError for what pw.x cannot take."""
    if not isinstance(structure, Structure):
        raise InputError(f"expected a pymatgen Structure, got {type(structure).__name__}")
    if not structure.is_ordered:
        raise InputError(
            f"{structure.composition.formula}: disordered structure (partial occupancies) "
            "cannot be run with pw.x"
        )
    if len(structure) == 0 or structure.volume <= 1e-3:
        raise InputError("structure has no sites or a zero-volume cell")
    s = structure.copy()
    s.remove_oxidation_states()
    for prop in list(s.site_properties):  # magmoms, selective dynamics: not used by this workflow
        s.remove_site_property(prop)
    if atoms_too_close(s):  # a neighbour list: linear in the atoms (distance_matrix was O(N^4) here)
        raise InputError(f"{s.composition.reduced_formula}: atoms closer than {MIN_DISTANCE_A} Å "
                         "(atoms_too_close)")
    return s


@dataclass
class PwInputGenerator(InputGenerator):
    """pw.x input for ``calculation`` in {'scf', 'vc-relax', 'relax'} from a preset."""

    preset: QePreset = TEST
    calculation: str = "scf"
    la2f: bool = False
    max_seconds: float | None = None
    user_params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def get_input_set(  # type: ignore[override]
        self,
        structure: Structure,
        pseudos: dict[str, str | Path],
        kpoints_grid: Mesh,
        outdir: str = OUTDIR,
        prefix: str = PREFIX,
    ) -> PwInputSet:
        structure = clean_structure(structure)
        p = self.preset
        pseudo_dirs = {str(Path(v).parent) for v in pseudos.values()}
        if len(pseudo_dirs) != 1:
            raise InputError(f"all pseudopotentials must be in one directory, got {pseudo_dirs}")
        control: dict[str, Any] = {
            "calculation": self.calculation,
            "prefix": prefix,
            "outdir": outdir,
            "pseudo_dir": pseudo_dirs.pop(),
            "tstress": True,
            "tprnfor": True,
        }
        system: dict[str, Any] = {
            "ecutwfc": p.ecutwfc,
            "occupations": "smearing",
            "smearing": p.smearing,
            "degauss": p.degauss,
        }
        if p.ecutrho is not None:
            system["ecutrho"] = p.ecutrho
        electrons: dict[str, Any] = {
            "conv_thr": p.conv_thr,
            "mixing_beta": p.mixing_beta,
            "mixing_mode": p.mixing_mode,
        }
        ions: dict[str, Any] = {}
        cell: dict[str, Any] = {}
        if self.calculation in ("relax", "vc-relax"):
            control.update({"forc_conv_thr": p.forc_conv_thr_Ry_per_bohr,
                            "etot_conv_thr": p.etot_conv_thr_Ry, **p.relax_control})
            electrons.update(p.relax_electrons)
            ions["ion_dynamics"] = "bfgs"
            if self.calculation == "vc-relax":
                system.update(p.relax_system)
                cell.update({"cell_dynamics": "bfgs", "cell_dofree": "all",
                             "press_conv_thr": p.press_conv_thr_kbar})
        if self.la2f:
            system["la2F"] = True
        if self.max_seconds:
            control["max_seconds"] = float(self.max_seconds)
        for section, values in self.user_params.items():
            {"control": control, "system": system, "electrons": electrons, "ions": ions,
             "cell": cell}[section.lower()].update(values)
        pw = PWInput(
            structure,
            pseudo={el: Path(f).name for el, f in pseudos.items()},
            control=control,
            system=system,
            electrons=electrons,
            ions=ions,
            cell=cell,
            kpoints_mode="automatic",
            kpoints_grid=tuple(kpoints_grid),
            kpoints_shift=(0, 0, 0),
            format_options={"coord_decimals": 10},
        )
        return PwInputSet(inputs={PwInputSet.filename: str(pw) + "\n"})


@dataclass
class PhInputGenerator(InputGenerator):
    """ph.x electron-phonon input: ``ldisp`` on the q grid, ``electron_phonon='interpolated'``.

    ``start_q``/``last_q`` select irreducible q-points (fan-out: the run of q-point 1 writes
    ``fildyn0``, the list the other q jobs are made from). ``electron_phonon=False``: phonons
    only (the stability gate): no EPC keywords, and no dvscf file unless ``save_dvscf`` (the
    gate on the EPC's own q grid keeps it for the EPC). ``trans=False``: no phonons - ph.x
    reads the displacement patterns (``_ph0/prefix.phsave``), ``fildvscf`` and the ``fildyn``
    matrices of an earlier phonon run on the same grid and computes only the electron-phonon
    matrix elements (QE's two-step route; INPUT_PH, ``electron_phonon``).
    """

    preset: QePreset = TEST
    fildyn: str = FILDYN
    fildvscf: str = FILDVSCF
    electron_phonon: bool = True
    save_dvscf: bool = False
    trans: bool = True

    def get_input_set(  # type: ignore[override]
        self,
        qpoints_grid: Mesh,
        outdir: str = OUTDIR,
        prefix: str = PREFIX,
        start_q: int | None = None,
        last_q: int | None = None,
        max_seconds: float | None = None,
        user_params: dict[str, Any] | None = None,
    ) -> PhInputSet:
        p = self.preset
        params: dict[str, Any] = {
            "prefix": prefix,
            "outdir": outdir,
            "fildyn": self.fildyn,
            "fildvscf": self.fildvscf,
            "tr2_ph": p.tr2_ph,
            "ldisp": True,
            "trans": self.trans,
            "nq1": qpoints_grid[0],
            "nq2": qpoints_grid[1],
            "nq3": qpoints_grid[2],
            "electron_phonon": "interpolated",
            "el_ph_sigma": p.el_ph_sigma,
            "el_ph_nsigma": p.el_ph_nsigma,
            "start_q": start_q,
            "last_q": last_q,
            "max_seconds": float(max_seconds) if max_seconds else None,
        }
        if not self.electron_phonon:
            if not self.trans:
                raise InputError("ph.x with trans=.false. and no electron_phonon computes nothing")
            dropped = ("electron_phonon", "el_ph_sigma", "el_ph_nsigma")
            for key in dropped if self.save_dvscf else ("fildvscf", *dropped):
                params[key] = None  # format_namelist leaves None out
        params.update(user_params or {})
        title = ("electron-phonon" if self.trans else "electron-phonon from saved phonons") \
            if self.electron_phonon else "phonons"
        text = f"{title} (sc-inverse)\n" + format_namelist("inputph", params)
        return PhInputSet(inputs={PhInputSet.filename: text})


@dataclass
class Q2rInputGenerator(InputGenerator):
    """q2r.x: real-space force constants and (``la2F``) the EPC linewidths.

    ``el_ph_nsigma`` must be ph.x's: q2r.x reads one ``a2Fq2r.(50+i).q`` file per smearing and
    stops at the first one missing (its default is 10).
    """

    fildyn: str = FILDYN
    flfrc: str = FLFRC
    el_ph_nsigma: int = 10
    la2f: bool = True  # False: force constants only (a phonons-only ph.x run, the gate)

    def get_input_set(self) -> Q2rInputSet:  # type: ignore[override]
        params = {"fildyn": self.fildyn, "flfrc": self.flfrc, "zasr": "simple", "la2F": self.la2f,
                  "el_ph_nsigma": self.el_ph_nsigma if self.la2f else None}
        return Q2rInputSet(inputs={Q2rInputSet.filename: format_namelist("input", params)})


@dataclass
class MatdynInputGenerator(InputGenerator):
    """matdyn.x: phonon DOS and Fourier-interpolated α²F (``la2F``, ``dos``) on a dense grid."""

    preset: QePreset = TEST
    flfrc: str = FLFRC

    def get_input_set(self, nk: Mesh) -> MatdynInputSet:  # type: ignore[override]
        params = {
            "asr": MATDYN_ASR,
            "flfrc": self.flfrc,
            "flfrq": MESH_FREQ,
            "la2F": True,
            "dos": True,
            "fldos": PHONON_DOS,
            "nk1": nk[0],
            "nk2": nk[1],
            "nk3": nk[2],
            "ndos": self.preset.matdyn_ndos,
            "el_ph_nsigma": self.preset.el_ph_nsigma,  # as ph.x and q2r.x (default 10)
        }
        return MatdynInputSet(inputs={MatdynInputSet.filename: format_namelist("input", params)})


class MatdynQpointsInputSet(QeInputSet):
    filename = "matdyn_qgrid.in"


@dataclass
class MatdynQpointsInputGenerator(InputGenerator):
    """matdyn.x frequencies at an explicit q list (ph.x's irreducible q points, cartesian
    2π/alat as in ``fildyn0``) with the acoustic sum rule imposed: the q-grid phonons the
    stability verdict reads (on grid points the interpolation returns ph.x's matrices).

    ``flvec``: file of the displacement patterns (eigenvectors / √mass, normalised) at those
    points; blank writes none (the EPC flow), the stability gate keeps them
    (:data:`QGRID_MODES`)."""

    flfrc: str = FLFRC
    flvec: str = " "

    def get_input_set(self, qpoints: Sequence[Sequence[float]]) -> MatdynQpointsInputSet:  # type: ignore[override]
        params = {"asr": MATDYN_ASR, "flfrc": self.flfrc, "flfrq": QGRID_FREQ, "flvec": self.flvec,
                  "dos": False}
        lines = [f"{len(qpoints)}"] + [f"{q[0]:.12f} {q[1]:.12f} {q[2]:.12f}" for q in qpoints]
        text = format_namelist("input", params) + "\n".join(lines) + "\n"
        return MatdynQpointsInputSet(inputs={MatdynQpointsInputSet.filename: text})


@dataclass
class LambdaInputGenerator(InputGenerator):
    """lambda.x: λ and ω_log from ph.x's per-q files, the independent cross-check of α²F.

    ``emax`` is set 20 % above the highest mode; 0.12 THz is the width of QE's example.
    """

    mu_star: float = 0.1
    degauss_THz: float = 0.12

    def get_input_set(  # type: ignore[override]
        self,
        q_cart: Sequence[Sequence[float]],
        n_star: Sequence[int],
        files: Sequence[str],
        max_frequency_cm1: float,
    ) -> LambdaInputSet:
        emax = max(1.0, 1.2 * max_frequency_cm1 * CM1_TO_THZ)  # THz, as lambda.x reads
        lines = [f"{emax:.3f} {self.degauss_THz:g} 1", f"{len(files)}"]
        lines += [f"{q[0]:.9f} {q[1]:.9f} {q[2]:.9f} {float(n):.2f}"
                  for q, n in zip(q_cart, n_star, strict=True)]
        lines += list(files)
        lines.append(f"{self.mu_star:g}")
        return LambdaInputSet(inputs={LambdaInputSet.filename: "\n".join(lines) + "\n"})
