"""Parsers of Quantum ESPRESSO outputs used by the EPC workflow.

Each parser raises :class:`~sc_inverse.errors.ParseError` naming the file when the output is
missing, empty or truncated where data is required; ``require_done=False`` lets the custodian
handlers look at unfinished outputs.

Files understood: pw.x output (scf/relax/vc-relax), pw.x's XML data file (Kohn-Sham eigenvalues,
occupations, smearing, Fermi energy), ph.x output, ph.x ``elph_dir/elph.inp_lambda.N``,
dynamical-matrix files (``fildynN``), matdyn's ``lambda`` table, ``a2F.dosN``, ``phonon.dos`` and
frequency files (``flfrq``), lambda.x's ``lambda.dat``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pymatgen.core import Lattice, Structure

from sc_inverse.errors import ParseError
from sc_inverse.units import BOHR_TO_A, HARTREE_TO_EV, RY_PER_BOHR_TO_EV_PER_A, RY_TO_CM1, RY_TO_EV

_NUM = r"[-+]?\d*\.?\d+(?:[eEdD][-+]?\d+)?"
JOB_DONE = "JOB DONE"


def _read(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise ParseError(f"{path}: output file not found")
    text = path.read_text(errors="replace")
    if not text.strip():
        raise ParseError(f"{path}: output file is empty")
    return text


def _f(x: str) -> float:
    return float(x.replace("D", "E").replace("d", "e"))


def _duration_s(raw: str) -> float:
    """Seconds of a QE clock text such as ``1h 2m`` or ``1m23.45s``."""
    total = 0.0
    for value, unit in re.findall(r"(\d+\.?\d*)([hms])", raw.replace(" ", "")):
        total += float(value) * {"h": 3600.0, "m": 60.0, "s": 1.0}[unit]
    return total


def parse_wall_time(text: str, program: str) -> float | None:
    """Seconds from e.g. ``PWSCF : 1m23.45s CPU 1h 2m WALL`` (last occurrence)."""
    matches = re.findall(rf"{program}\s*:\s*.*?CPU\s+(.*?)\s*WALL", text)
    return _duration_s(matches[-1]) if matches else None


#: a program's own clock line, e.g. ``     PHONON       :     11.08s CPU     17.49s WALL``;
#: QE's per-routine lines use lower-case names
_PROGRAM_CLOCK = re.compile(r"^\s*([A-Z][A-Z0-9_]+)\s*:\s*(.+?)\s*CPU\s+(.+?)\s*WALL\s*$", re.M)


def parse_program_times(text: str) -> tuple[str, float, float] | None:
    """``(program, cpu_s, wall_s)`` of the last clock line a QE program printed (cumulative,
    e.g. PWSCF, PHONON, Q2R, MATDYN); None when it printed none (killed early, lambda.x).
    The CPU time is that of the process (rank 0 under MPI)."""
    matches = _PROGRAM_CLOCK.findall(text)
    if not matches:
        return None
    program, cpu, wall = matches[-1]
    return program, _duration_s(cpu), _duration_s(wall)


def qe_errors(text: str) -> list[str]:
    """Messages of QE's ``%%%% Error in routine X (n): message`` blocks."""
    out = []
    for m in re.finditer(r"Error in routine\s+(\S+)\s*\((\s*-?\d+)\):\s*\n\s*(.*)", text):
        out.append(f"{m.group(1)}: {m.group(3).strip()}")
    return out


def qe_version(text: str) -> str | None:
    m = re.search(r"Program \w+ v\.(\S+)", text)
    return m.group(1) if m else None


# ---------------------------------------------------------------------------------------------
# pw.x
# ---------------------------------------------------------------------------------------------
@dataclass
class PwOutput:
    """What the workflow needs from a pw.x output."""

    path: str
    version: str | None = None
    job_done: bool = False
    calculation: str = "scf"
    energies_Ry: list[float] = field(default_factory=list)
    fermi_energy_eV: float | None = None
    forces_Ry_per_bohr: list[list[float]] | None = None
    stress_kbar: list[list[float]] | None = None
    pressure_kbar: float | None = None
    scf_converged: bool = False
    scf_failed: bool = False
    n_scf_iterations: int | None = None
    n_ionic_steps: int = 0
    relax_converged: bool | None = None
    max_time_exceeded: bool = False
    errors: list[str] = field(default_factory=list)
    initial_structure: Structure | None = None
    final_structure: Structure | None = None
    wall_time_s: float | None = None
    total_magnetization: float | None = None

    @property
    def energy_eV(self) -> float | None:
        return self.energies_Ry[-1] * RY_TO_EV if self.energies_Ry else None

    @property
    def forces_eV_per_A(self) -> list[list[float]] | None:
        if self.forces_Ry_per_bohr is None:
            return None
        return (np.array(self.forces_Ry_per_bohr) * RY_PER_BOHR_TO_EV_PER_A).tolist()


def _pw_initial_structure(text: str) -> Structure | None:
    m_alat = re.search(r"lattice parameter \(alat\)\s*=\s*(" + _NUM + r")\s*a\.u\.", text)
    vecs = re.findall(r"a\(\d\) = \(\s*(" + _NUM + r")\s+(" + _NUM + r")\s+(" + _NUM + r")\s*\)", text)
    sites = re.findall(
        r"\d+\s+(\w+)\s+tau\(\s*\d+\) = \(\s*(" + _NUM + r")\s+(" + _NUM + r")\s+(" + _NUM + r")",
        text.split("site n.", 1)[1] if "site n." in text else "",
    )
    if not (m_alat and len(vecs) >= 3 and sites):
        return None
    alat = _f(m_alat.group(1)) * BOHR_TO_A
    lattice = Lattice(np.array([[_f(x) for x in v] for v in vecs[:3]]) * alat)
    nat = re.search(r"number of atoms/cell\s*=\s*(\d+)", text)
    n = int(nat.group(1)) if nat else len(sites)
    species = [re.sub(r"\d+$", "", s[0]) for s in sites[:n]]
    coords = np.array([[_f(x) for x in s[1:]] for s in sites[:n]]) * alat
    return Structure(lattice, species, coords, coords_are_cartesian=True)


def _pw_last_structure(text: str, initial: Structure | None) -> Structure | None:
    """Last CELL_PARAMETERS/ATOMIC_POSITIONS printed (the final one after a relax)."""
    row = r"[ \t]*" + _NUM + r"[ \t]+" + _NUM + r"[ \t]+" + _NUM + r"[ \t]*\n"
    cells = list(re.finditer(r"CELL_PARAMETERS \((\w+)(?:=\s*(" + _NUM + r"))?\)\s*\n((?:" + row + r"){3})", text))
    positions = list(re.finditer(r"ATOMIC_POSITIONS \((\w+)\)\s*\n((?:\s*[A-Z][a-z]?\w*\s+" + (r"\s*" + _NUM) * 3 + r".*\n)+)", text))
    if not positions:
        return None
    if cells:
        unit, alat, block = cells[-1].group(1), cells[-1].group(2), cells[-1].group(3)
        matrix = np.array([[_f(x) for x in line.split()] for line in block.strip().splitlines()])
        if unit == "alat":
            matrix = matrix * _f(alat) * BOHR_TO_A
        elif unit == "bohr":
            matrix = matrix * BOHR_TO_A
        lattice = Lattice(matrix)
    elif initial is not None:
        lattice = initial.lattice
    else:
        return None
    unit = positions[-1].group(1)
    species, coords = [], []
    for line in positions[-1].group(2).strip().splitlines():
        parts = line.split()
        species.append(re.sub(r"\d+$", "", parts[0]))
        coords.append([_f(x) for x in parts[1:4]])
    coords = np.array(coords)
    if unit == "crystal":
        return Structure(lattice, species, coords)
    if unit == "alat":
        alat_m = re.search(r"lattice parameter \(alat\)\s*=\s*(" + _NUM + r")", text)
        coords = coords * _f(alat_m.group(1)) * BOHR_TO_A if alat_m else coords
    elif unit == "bohr":
        coords = coords * BOHR_TO_A
    return Structure(lattice, species, coords, coords_are_cartesian=True)


def parse_pw_output(path: str | Path, require_done: bool = True) -> PwOutput:
    """Parse a pw.x output (energies in Ry as printed; eV via properties)."""
    text = _read(path)
    if "Program PWSCF" not in text:
        raise ParseError(f"{path}: not a pw.x output (no 'Program PWSCF' header)")
    out = PwOutput(path=str(path), version=qe_version(text), job_done=JOB_DONE in text)
    calc = re.search(r"calculation\s*=\s*'([\w-]+)'", text)
    if "Begin final coordinates" in text or "BFGS Geometry Optimization" in text:
        out.calculation = "vc-relax" if "CELL_PARAMETERS" in text else "relax"
    elif calc:
        out.calculation = calc.group(1)
    out.energies_Ry = [_f(x) for x in re.findall(r"^!\s+total energy\s+=\s+(" + _NUM + r") Ry", text, re.M)]
    ef = re.findall(r"the Fermi energy is\s+(" + _NUM + r") ev", text)
    out.fermi_energy_eV = _f(ef[-1]) if ef else None
    blocks = re.findall(r"Forces acting on atoms.*?\n\n((?:\s*atom\s+\d+\s+type\s+\d+\s+force =.*\n)+)", text)
    if blocks:
        out.forces_Ry_per_bohr = [[_f(x) for x in line.split("=")[1].split()] for line in blocks[-1].strip().splitlines()]
    stress = list(re.finditer(r"total\s+stress\s+\(Ry/bohr\*\*3\)\s+\(kbar\)\s+P=\s*(" + _NUM + r")\s*\n((?:.*\n){3})", text))
    if stress:
        out.pressure_kbar = _f(stress[-1].group(1))
        out.stress_kbar = [[_f(x) for x in line.split()[3:6]] for line in stress[-1].group(2).strip().splitlines()]
    conv = re.findall(r"convergence has been achieved in\s+(\d+) iterations", text)
    out.scf_failed = "convergence NOT achieved" in text
    out.scf_converged = bool(conv) and not out.scf_failed
    out.n_scf_iterations = int(conv[-1]) if conv else None
    out.n_ionic_steps = max(len(out.energies_Ry), 0)
    if out.calculation in ("relax", "vc-relax"):
        out.relax_converged = "End of BFGS Geometry Optimization" in text and "bfgs converged" in text
    out.max_time_exceeded = "Maximum CPU time exceeded" in text
    out.errors = qe_errors(text)
    mag = re.findall(r"total magnetization\s+=\s+(" + _NUM + r")", text)
    out.total_magnetization = _f(mag[-1]) if mag else None
    out.wall_time_s = parse_wall_time(text, "PWSCF")
    out.initial_structure = _pw_initial_structure(text)
    out.final_structure = _pw_last_structure(text, out.initial_structure) or out.initial_structure
    if require_done:
        if not out.job_done:
            why = "; ".join(out.errors) or "no 'JOB DONE' (truncated or killed)"
            raise ParseError(f"{path}: pw.x did not finish: {why}")
        if not out.energies_Ry:
            raise ParseError(f"{path}: no final '!    total energy' line")
        if out.final_structure is None:
            raise ParseError(f"{path}: no structure could be read")
    return out


# ---------------------------------------------------------------------------------------------
# pw.x XML data file (QE >= 6.2 schema; values in Hartree)
# ---------------------------------------------------------------------------------------------
@dataclass
class PwBands:
    """Kohn-Sham eigenvalues of a pw.x run, converted to eV.

    ``eigenvalues_eV`` and ``occupations`` have shape (spin channels, k points, bands): one
    channel, or two (up, down) for a spin-polarised (lsda) run. ``kpoint_weights`` are QE's
    (they sum to 2 without spin polarisation, to 1 with lsda or noncollinear spins);
    ``occupations`` are per state, 0…1.
    """

    path: str
    eigenvalues_eV: np.ndarray
    occupations: np.ndarray
    kpoint_weights: np.ndarray
    lsda: bool
    noncolin: bool
    nelec: float
    occupations_kind: str
    smearing: str | None = None
    degauss_eV: float | None = None
    fermi_energy_eV: float | None = None
    fermi_energies_eV: tuple[float, float] | None = None
    highest_occupied_eV: float | None = None
    lowest_unoccupied_eV: float | None = None

    @property
    def spin_degeneracy(self) -> int:
        """Electrons per state: 2 without spin polarisation, 1 with lsda or noncollinear spins."""
        return 1 if (self.lsda or self.noncolin) else 2


def pw_xml_path(outdir: str | Path, prefix: str) -> Path:
    """pw.x's XML data file in ``outdir``: ``prefix.xml``, else ``prefix.save/data-file-schema.xml``
    (both are written by pw.x; the first is missing when only ``prefix.save`` was copied)."""
    outdir = Path(outdir)
    for path in (outdir / f"{prefix}.xml", outdir / f"{prefix}.save" / "data-file-schema.xml"):
        if path.is_file():
            return path
    return outdir / f"{prefix}.xml"


def _xml_float(node: ET.Element | None) -> float | None:
    return float(node.text) if node is not None and node.text else None


def _xml_floats(node: ET.Element | None, path: str, where: str) -> np.ndarray:
    if node is None or node.text is None:
        raise ParseError(f"{where}: no <{path}> in a <ks_energies> block")
    return np.array([_f(x) for x in node.text.split()])


def parse_pw_xml(path: str | Path) -> PwBands:
    """Eigenvalues, k weights, occupations, smearing and Fermi level(s) of a pw.x XML file.

    For lsda runs QE lists each k point once with ``nbnd_up`` up then ``nbnd_dw`` down values;
    they are split into two channels here. Insulators with fixed occupations have
    ``highestOccupiedLevel`` (and ``lowestUnoccupiedLevel`` when empty bands were computed)
    instead of, or besides, a Fermi energy.
    """
    path = Path(path)
    if not path.is_file():
        raise ParseError(f"{path}: pw.x XML file not found")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ParseError(f"{path}: not a readable XML file ({exc})") from exc
    bs = root.find("output/band_structure")
    if bs is None:
        raise ParseError(f"{path}: no <output><band_structure> (pw.x did not finish?)")
    lsda = (bs.findtext("lsda") or "false").strip() == "true"
    noncolin = (bs.findtext("noncolin") or "false").strip() == "true"
    blocks = bs.findall("ks_energies")
    if not blocks:
        raise ParseError(f"{path}: <band_structure> has no <ks_energies>")
    weights, eig, occ = [], [], []
    for block in blocks:
        kp = block.find("k_point")
        weights.append(float(kp.get("weight")) if kp is not None and kp.get("weight") else np.nan)
        eig.append(_xml_floats(block.find("eigenvalues"), "eigenvalues", str(path)))
        occ.append(_xml_floats(block.find("occupations"), "occupations", str(path)))
    if len({len(e) for e in eig}) != 1 or np.isnan(weights).any():
        raise ParseError(f"{path}: k points with different band counts or without a weight")
    n_channels = 2 if lsda else 1
    if len(eig[0]) % n_channels:
        raise ParseError(f"{path}: lsda run with an odd number of eigenvalues per k point")
    shape = (len(blocks), n_channels, len(eig[0]) // n_channels)
    smearing = bs.find("smearing")
    two = bs.findtext("two_fermi_energies")
    to_ev = lambda x: None if x is None else x * HARTREE_TO_EV  # noqa: E731
    return PwBands(
        path=str(path),
        eigenvalues_eV=np.array(eig).reshape(shape).transpose(1, 0, 2) * HARTREE_TO_EV,
        occupations=np.array(occ).reshape(shape).transpose(1, 0, 2),
        kpoint_weights=np.array(weights),
        lsda=lsda,
        noncolin=noncolin,
        nelec=float(bs.findtext("nelec") or "nan"),
        occupations_kind=(bs.findtext("occupations_kind") or "").strip(),
        smearing=smearing.text.strip() if smearing is not None and smearing.text else None,
        degauss_eV=to_ev(float(smearing.get("degauss"))) if smearing is not None and smearing.get("degauss") else None,
        fermi_energy_eV=to_ev(_xml_float(bs.find("fermi_energy"))),
        fermi_energies_eV=tuple(_f(x) * HARTREE_TO_EV for x in two.split()[:2]) if two else None,
        highest_occupied_eV=to_ev(_xml_float(bs.find("highestOccupiedLevel"))),
        lowest_unoccupied_eV=to_ev(_xml_float(bs.find("lowestUnoccupiedLevel"))),
    )


# ---------------------------------------------------------------------------------------------
# ph.x
# ---------------------------------------------------------------------------------------------
@dataclass
class PhOutput:
    path: str
    version: str | None = None
    job_done: bool = False
    qpoints_grid: list[int] | None = None
    irreducible_q: list[list[float]] = field(default_factory=list)
    computed_q: list[list[float]] = field(default_factory=list)
    n_star: list[int] = field(default_factory=list)
    frequencies_cm1: list[list[float]] = field(default_factory=list)
    max_time_exceeded: bool = False
    errors: list[str] = field(default_factory=list)
    wall_time_s: float | None = None


def parse_ph_output(path: str | Path, require_done: bool = True) -> PhOutput:
    """Parse a ph.x output (q list, stars, frequencies, errors, completion)."""
    text = _read(path)
    if "Program PHONON" not in text:
        raise ParseError(f"{path}: not a ph.x output (no 'Program PHONON' header)")
    out = PhOutput(path=str(path), version=qe_version(text), job_done=JOB_DONE in text)
    grid = re.search(r"Dynamical matrices for \(\s*(\d+),\s*(\d+),\s*(\d+)\)\s+uniform grid of q-points\s*\n\s*\(\s*(\d+)\s*q-points\):\s*\n.*\n((?:\s*\d+(?:\s+" + _NUM + r"){3}\s*\n)+)", text)
    if grid:
        out.qpoints_grid = [int(grid.group(i)) for i in (1, 2, 3)]
        out.irreducible_q = [[_f(x) for x in line.split()[1:4]] for line in grid.group(5).strip().splitlines()]
    out.computed_q = [[_f(x) for x in m] for m in re.findall(r"Calculation of q =\s*(" + _NUM + r")\s+(" + _NUM + r")\s+(" + _NUM + r")", text)]
    # ph.x prints the star size twice per q-point: keep the first of each "Calculation of q" part
    for part in re.split(r"Calculation of q =", text)[1:]:
        m = re.search(r"Number of q in the star =\s+(\d+)", part)
        if m:
            out.n_star.append(int(m.group(1)))
    for block in re.findall(r"Diagonalizing the dynamical matrix.*?\*{20,}\n(.*?)\*{20,}", text, re.S):
        out.frequencies_cm1.append([_f(x) for x in re.findall(r"freq \(\s*\d+\) =\s*" + _NUM + r" \[THz\] =\s*(" + _NUM + r") \[cm-1\]", block)])
    out.max_time_exceeded = "Maximum CPU time exceeded" in text
    out.errors = qe_errors(text)
    out.wall_time_s = parse_wall_time(text, "PHONON")
    if require_done and not out.job_done:
        why = "; ".join(out.errors) or "no 'JOB DONE' (truncated, killed or out of time)"
        raise ParseError(f"{path}: ph.x did not finish: {why}")
    return out


@dataclass
class ElphQ:
    """Content of one ``elph_dir/elph.inp_lambda.N`` file."""

    q: list[float]
    omega2_Ry2: list[float]
    sigmas_Ry: list[float]
    dos_ef: list[float]
    fermi_eV: list[float]
    lambdas: list[list[float]]
    gammas_GHz: list[list[float]]

    @property
    def frequencies_cm1(self) -> list[float]:
        w2 = np.array(self.omega2_Ry2)
        return (np.sign(w2) * np.sqrt(np.abs(w2)) * RY_TO_CM1).tolist()


def parse_elph_lambda_file(path: str | Path) -> ElphQ:
    """ph.x's per-q EPC file: q, ω² (Ry²) and per smearing N(E_F), λ_qν, γ_qν."""
    text = _read(path)
    lines = text.splitlines()
    try:
        head = lines[0].split()
        q = [_f(x) for x in head[:3]]
        nsig, nmodes = int(head[3]), int(head[4])
        w2: list[float] = []
        i = 1
        while len(w2) < nmodes:
            w2 += [_f(x) for x in lines[i].split()]
            i += 1
        body = "\n".join(lines[i:])
    except (IndexError, ValueError) as exc:
        raise ParseError(f"{path}: malformed elph.inp_lambda header ({exc})") from exc
    sig = [_f(x) for x in re.findall(r"Gaussian Broadening:\s*(" + _NUM + r") Ry", body)]
    dos = re.findall(r"DOS =\s*(" + _NUM + r") states/spin/Ry/Unit Cell at Ef=\s*(" + _NUM + r") eV", body)
    lam = re.findall(r"lambda\(\s*\d+\)=\s*(" + _NUM + r")\s+gamma=\s*(" + _NUM + r") GHz", body)
    if len(sig) != nsig or len(dos) != nsig or len(lam) != nsig * nmodes:
        raise ParseError(
            f"{path}: truncated elph.inp_lambda file (expected {nsig} smearings x {nmodes} modes, "
            f"found {len(sig)} smearings and {len(lam)} lambda lines)"
        )
    lam_arr = np.array([[_f(a), _f(b)] for a, b in lam]).reshape(nsig, nmodes, 2)
    return ElphQ(
        q=q,
        omega2_Ry2=w2,
        sigmas_Ry=sig,
        dos_ef=[_f(d) for d, _ in dos],
        fermi_eV=[_f(e) for _, e in dos],
        lambdas=lam_arr[:, :, 0].tolist(),
        gammas_GHz=lam_arr[:, :, 1].tolist(),
    )


@dataclass
class DynFile:
    """A ph.x dynamical-matrix file for one star of q."""

    path: str
    star: list[list[float]]
    frequencies_cm1: list[float]

    @property
    def n_star(self) -> int:
        return len(self.star)


def parse_dyn_file(path: str | Path) -> DynFile:
    """Star members and frequencies of a ``fildynN`` file."""
    text = _read(path)
    star = [[_f(x) for x in m] for m in re.findall(r"Dynamical\s+Matrix in cartesian axes\s*\n\s*\n\s*q = \(\s*(" + _NUM + r")\s+(" + _NUM + r")\s+(" + _NUM + r")", text)]
    diag = text.split("Diagonalizing the dynamical matrix")
    if not star or len(diag) < 2:
        raise ParseError(f"{path}: not a complete dynamical-matrix file")
    freqs = [_f(x) for x in re.findall(r"freq \(\s*\d+\) =\s*" + _NUM + r" \[THz\] =\s*(" + _NUM + r") \[cm-1\]", diag[-1])]
    if not freqs:
        raise ParseError(f"{path}: dynamical-matrix file has no frequencies (truncated?)")
    return DynFile(path=str(path), star=star, frequencies_cm1=freqs)


def parse_dyn0(path: str | Path) -> tuple[list[int], list[list[float]]]:
    """``fildyn0``: q grid and the irreducible q list (cartesian, 2π/alat)."""
    text = _read(path)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    try:
        grid = [int(x) for x in lines[0].split()]
        nq = int(lines[1].split()[0])
        qs = [[_f(x) for x in ln.split()[:3]] for ln in lines[2 : 2 + nq]]
    except (IndexError, ValueError) as exc:
        raise ParseError(f"{path}: malformed dyn0 file ({exc})") from exc
    if len(qs) != nq or len(grid) != 3:
        raise ParseError(f"{path}: dyn0 lists {len(qs)} of {nq} q-points (truncated)")
    return grid, qs


# ---------------------------------------------------------------------------------------------
# matdyn.x / lambda.x
# ---------------------------------------------------------------------------------------------
@dataclass
class MatdynLambdaRow:
    sigma_Ry: float
    lambda_: float
    dos_ef: float
    omega_log_K: float | None


def parse_matdyn_lambda(path: str | Path) -> list[MatdynLambdaRow]:
    """matdyn's ``lambda`` table (λ and ω_ln per broadening from the interpolated α²F)."""
    text = _read(path)
    rows = []
    for m in re.finditer(r"Broadening\s+(" + _NUM + r")\s+lambda\s+(" + _NUM + r")\s+dos\(Ef\)\s+(" + _NUM + r")(?:\s+omega_ln \[K\]\s+(" + _NUM + r"))?", text):
        rows.append(MatdynLambdaRow(_f(m.group(1)), _f(m.group(2)), _f(m.group(3)), _f(m.group(4)) if m.group(4) else None))
    if not rows:
        raise ParseError(f"{path}: no 'Broadening ... lambda' rows")
    return rows


@dataclass
class A2FDos:
    """matdyn ``a2F.dosN``: α²F (total and per mode) on a frequency grid (Ry)."""

    frequencies_Ry: list[float]
    a2f: list[float]
    lambda_: float | None


def parse_a2f_dos(path: str | Path) -> A2FDos:
    text = _read(path)
    freqs, vals = [], []
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("lambda"):
            break
        parts = s.split()
        try:
            freqs.append(_f(parts[0]))
            vals.append(_f(parts[1]))
        except (IndexError, ValueError) as exc:
            raise ParseError(f"{path}: malformed a2F line {s!r}") from exc
    lam = re.search(r"lambda =\s*(" + _NUM + r")", text)
    if not freqs:
        raise ParseError(f"{path}: no α²F data")
    return A2FDos(freqs, vals, _f(lam.group(1)) if lam else None)


def parse_phonon_dos(path: str | Path) -> tuple[list[float], list[float]]:
    """matdyn ``fldos``: frequencies (cm⁻¹) and total DOS."""
    text = _read(path)
    data = [ln.split() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    try:
        arr = np.array([[_f(r[0]), _f(r[1])] for r in data])
    except (IndexError, ValueError) as exc:
        raise ParseError(f"{path}: malformed phonon DOS ({exc})") from exc
    if arr.size == 0:
        raise ParseError(f"{path}: empty phonon DOS")
    return arr[:, 0].tolist(), arr[:, 1].tolist()


@dataclass
class MatdynFrequencies:
    """matdyn's frequency file (``flfrq``): the modes at each q point it computed."""

    path: str
    qpoints_2pi_alat: list[list[float]]  # cartesian, units 2π/alat (as matdyn writes them)
    frequencies_cm1: list[list[float]]  # one row of 3·nat modes per q point, ascending


#: numbers of a matdyn ``flfrq`` file: fixed-point (q: f10.6, modes: f10.4, possibly touching
#: when a negative mode fills its field) or a field of asterisks (Fortran overflow)
_FLFRQ_NUMBER = re.compile(r"[-+]?\d+\.\d+|\*+")


def parse_matdyn_frequencies(path: str | Path) -> MatdynFrequencies:
    """matdyn's ``flfrq`` file: ``&plot nbnd=N, nks=M /``, then per q point its coordinates
    and its N frequencies (cm⁻¹)."""
    text = _read(path)
    head = re.match(r"\s*&plot\s+nbnd=\s*(\d+)\s*,\s*nks=\s*(\d+)\s*/", text)
    if not head:
        raise ParseError(f"{path}: not a matdyn frequency file (no '&plot nbnd=, nks= /' header)")
    nbnd, nks = int(head.group(1)), int(head.group(2))
    numbers = _FLFRQ_NUMBER.findall(text[head.end():])
    if any(x.startswith("*") for x in numbers):
        raise ParseError(f"{path}: a value overflowed its Fortran field (*****)")
    if len(numbers) != nks * (3 + nbnd) or nks == 0:
        raise ParseError(
            f"{path}: expected {nks} q points x (3 + {nbnd}) numbers, found {len(numbers)} (truncated?)"
        )
    rows = np.array([float(x) for x in numbers]).reshape(nks, 3 + nbnd)
    return MatdynFrequencies(str(path), rows[:, :3].tolist(), rows[:, 3:].tolist())


def parse_lambda_dat(path: str | Path) -> list[dict[str, float]]:
    """lambda.x's ``lambda.dat``: degauss, λ, ∫α²F λ, <log w> (K), N(E_F)."""
    text = _read(path)
    rows = []
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        parts = line.split()
        if len(parts) >= 5:
            sig, lam, lam_int, wlog, dos = (_f(x) for x in parts[:5])
            rows.append({"sigma_Ry": sig, "lambda": lam, "lambda_int": lam_int,
                         "omega_log_K": wlog, "dos_ef": dos})
    if not rows:
        raise ParseError(f"{path}: no lambda.x rows")
    return rows


# ---------------------------------------------------------------------------------------------
# stability gate: matdyn.x displacement patterns, CPU times
# ---------------------------------------------------------------------------------------------
@dataclass
class MatdynModes:
    """matdyn's ``flvec`` file: per q point (cartesian, 2π/alat) its modes' frequencies (cm⁻¹)
    and displacement patterns (n_atoms × 3 complex, cartesian; eigenvector / √mass, normalised)."""

    path: str
    qpoints_2pi_alat: list[list[float]]
    frequencies_cm1: list[list[float]]
    displacements: list[list[np.ndarray]]  # [q][mode] -> (n_atoms, 3) complex


_MODE_FREQ = re.compile(r"freq \(\s*\d+\)\s*=\s*(" + _NUM + r")\s*\[THz\]\s*=\s*(" + _NUM + r")\s*\[cm-1\]")
_MODE_ROW = re.compile(r"^\s*\((.*)\)\s*$")


def parse_matdyn_modes(path: str | Path) -> MatdynModes:
    """matdyn.x's ``flvec`` (``matdyn.modes``) file: blocks ``q = x y z``, then per mode a
    ``freq (i) = … [THz] = … [cm-1]`` line and one ``( re im re im re im )`` line per atom."""
    text = _read(path)
    blocks = re.split(r"^\s*q =", text, flags=re.M)[1:]
    if not blocks:
        raise ParseError(f"{path}: no 'q =' block (not a matdyn modes file)")
    qs, freqs, disps = [], [], []
    for block in blocks:
        lines = block.splitlines()
        try:
            qs.append([_f(x) for x in lines[0].split()[:3]])
        except (IndexError, ValueError) as exc:
            raise ParseError(f"{path}: malformed q line {lines[0]!r}") from exc
        q_freqs: list[float] = []
        q_disps: list[list[list[complex]]] = []
        for line in lines[1:]:
            m = _MODE_FREQ.search(line)
            if m:
                q_freqs.append(_f(m.group(2)))
                q_disps.append([])
                continue
            row = _MODE_ROW.match(line)
            if row and q_disps:
                values = [_f(x) for x in row.group(1).split()]
                if len(values) != 6:
                    raise ParseError(f"{path}: displacement line {line!r} has {len(values)} numbers")
                q_disps[-1].append([complex(values[i], values[i + 1]) for i in (0, 2, 4)])
        n_atoms = {len(d) for d in q_disps}
        if not q_freqs or len(n_atoms) != 1 or 0 in n_atoms or len(q_freqs) != 3 * n_atoms.pop():
            raise ParseError(f"{path}: q point {qs[-1]} has {len(q_freqs)} modes with unequal or "
                             "missing displacement rows (truncated?)")
        freqs.append(q_freqs)
        disps.append([np.array(d, dtype=complex) for d in q_disps])
    return MatdynModes(str(path), qs, freqs, disps)


def parse_cpu_time(text: str, program: str) -> float | None:
    """CPU seconds of the final ``PROGRAM : 1m23.45s CPU 1h 2m WALL`` line (None when absent)."""
    matches = re.findall(rf"{program}\s*:\s*(.*?)\s*CPU\s", text)
    if not matches:
        return None
    raw = matches[-1].replace(" ", "")
    parts = re.findall(r"(\d+\.?\d*)([hms])", raw)
    if not parts:
        return None
    return sum(float(v) * {"h": 3600.0, "m": 60.0, "s": 1.0}[u] for v, u in parts)
