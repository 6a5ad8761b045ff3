"""CPU of the DFT stability gate against the full electron-phonon run it can save.

Runs the EPC flow with the gate and ``epc_unstable=True`` (so both the gate and the EPC run)
on fcc Al (``test`` preset: QE's Al example) and bcc Zr (a = 3.57 Å, unstable at N; the
``test`` preset's k 8³ / la2F 16³ with the PBEsol Zr library file at 35/280 Ry, MP 0.02 Ry and
q 2³ - the recorded case of tests/test_data/qe/stability), optionally bcc Zr with the ``fast``
preset (vc-relax first), and prints per case the gate's verdict and CPU seconds (pw.x + ph.x,
from their outputs) against the EPC's (la2F scf(s) + ph.x EPC).

    OMP_NUM_THREADS=1 python benchmarks/bench_stability_gate.py WORKDIR [--fast] [--only TEXT]
    OMP_NUM_THREADS=1 python benchmarks/bench_stability_gate.py WORKDIR --reuse [--only TEXT]

(``--only fast``: the cases whose label contains "fast"). ``--reuse``: bcc Nb and fcc Al at the
``fast`` preset (EPC q grid 2³ = the gate's), each run three times - gate off, gate + EPC
reusing the gate's phonons (ph.x ``trans=.false.``), gate + EPC computing them again - and
prints λ, ω_log, T_c of each and the CPU seconds of gate, EPC and vc-relax.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pymatgen.core import Lattice, Structure

from sc_inverse.pipeline.epc import run_epc
from sc_inverse.qe.parsers import parse_cpu_time
from sc_inverse.qe.pslibrary import default_library_dir
from sc_inverse.qe.schemas import PwTaskDoc, StabilityGateDoc
from sc_inverse.qe.sets import TEST, get_preset
from sc_inverse.records import load_records

ROOT = Path(__file__).resolve().parents[1]


def cpu(folder: Path, files: dict[str, str]) -> float:
    """Sum of the CPU seconds of ``{file: program}`` found under ``folder`` (recursively)."""
    total = 0.0
    for name, program in files.items():
        for out in folder.rglob(name):
            total += parse_cpu_time(out.read_text(errors="replace"), program) or 0.0
    return total


def bcc_zr() -> Structure:
    h = 3.57 / 2
    return Structure(Lattice([[-h, h, h], [h, -h, h], [h, h, -h]]), ["Zr"], [[0, 0, 0]])


def nb_bcc() -> Structure:
    h = 3.30 / 2
    return Structure(Lattice([[-h, h, h], [h, -h, h], [h, h, -h]]), ["Nb"], [[0, 0, 0]])


PW_PH = {"scf_la2f.out": "PWSCF", "scf.out": "PWSCF", "ph.out": "PHONON"}


def reuse_rows(workdir: Path, only: str | None = None) -> list[dict]:
    """gate off / gate + reuse / gate + no reuse on bcc Nb and fcc Al at ``fast``."""
    structures = {"bcc Nb, fast": nb_bcc(),
                  "fcc Al, fast": load_records(ROOT / "examples" / "al_fcc" / "Al.pwi")[0]
                  .get_structure()}
    modes = {"gate off": {"stability_gate": False},
             "gate + reuse": {"stability_gate": True, "reuse_gate_phonons": True},
             "gate, no reuse": {"stability_gate": True, "reuse_gate_phonons": False}}
    rows = []
    for label, structure in structures.items():
        if only and only not in label:
            continue
        for mode, kwargs in modes.items():
            name = f"{label} {mode}".replace(" ", "_").replace(",", "").replace("+", "")
            doc = run_epc(structure, workdir / name, fresh=True, preset="fast", **kwargs)
            folder = Path(doc.dir_name).parent
            gate = [d for d in folder.iterdir() if d.name.startswith("qe-stability-gate")]
            epc = [d for d in folder.iterdir() if d.name.startswith(("qe-scf", "qe-elph"))]
            relax = [d for d in folder.iterdir() if d.name.startswith("qe-vc-relax")]
            rows.append({
                "case": label, "mode": mode, "lambda": doc.lambda_, "omega_log_K": doc.omega_log_K,
                "tc_K": doc.tc_K, "sigma_Ry": doc.selected_sigma_Ry,
                "phonons_from_gate": doc.phonons_from is not None,
                "gate_cpu_s": round(sum(cpu(d, {"scf.out": "PWSCF", "ph.out": "PHONON"})
                                        for d in gate), 1),
                "epc_cpu_s": round(sum(cpu(d, PW_PH) for d in epc), 1),
                "epc_ph_cpu_s": round(sum(cpu(d, {"ph.out": "PHONON"}) for d in epc), 1),
                "relax_cpu_s": round(sum(cpu(d, {"relax.out": "PWSCF"}) for d in relax), 1)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def cases(fast: bool) -> dict[str, tuple[Structure, dict]]:
    lib = default_library_dir("pbesol", "standard")
    zr_test = TEST.with_updates(pseudo_pattern="{el}.pbesol-*.UPF", pseudo_dir=str(lib),
                                ecutwfc=35.0, ecutrho=280.0, smearing="mp", degauss=0.02,
                                qpoints_grid=(2, 2, 2))
    out = {
        "fcc Al, test": (load_records(ROOT / "examples" / "al_fcc" / "Al.pwi")[0].get_structure(),
                         {"preset": "test", "pseudo_dir": "/usr/share/espresso/pseudo"}),
        "bcc Zr, test (PBEsol Zr, q 2^3)": (bcc_zr(), {"preset": zr_test}),
    }
    if fast:
        out["bcc Zr, fast"] = (bcc_zr(), {"preset": "fast"})
    return out


def main(workdir: Path, fast: bool = False, only: str | None = None) -> list[dict]:
    rows = []
    for label, (structure, kwargs) in cases(fast).items():
        if only and only not in label:
            continue
        doc = run_epc(structure, workdir / label.replace(" ", "_").replace(",", ""), fresh=True,
                      epc_unstable=True, stability_gate=True, **kwargs)
        folder = Path(doc.dir_name).parent
        gate = next(folder.glob("qe-stability-gate*"))
        epc_dirs = [d for d in folder.iterdir() if d.name.startswith(("qe-scf", "qe-elph"))]
        gate_cpu = cpu(gate, {"scf.out": "PWSCF", "ph.out": "PHONON"})
        epc_cpu = sum(cpu(d, {"scf_la2f.out": "PWSCF", "scf.out": "PWSCF", "ph.out": "PHONON"})
                      for d in epc_dirs)
        preset = get_preset(kwargs["preset"]) if isinstance(kwargs["preset"], str) else kwargs["preset"]
        scf = PwTaskDoc.from_directory(gate, preset, "scf")
        g = StabilityGateDoc.from_directory(gate, preset, scf.structure, scf)
        gate_doc = {"stable": g.stable, "min_frequency_cm1": g.min_frequency_cm1,
                    "softest_q_frac": g.softest_q_frac, "qpoints_grid": g.qpoints_grid,
                    "n_unstable_modes": len(g.unstable_modes), "reason": g.reason}
        rows.append({"case": label, "gate_cpu_s": round(gate_cpu, 1), "epc_cpu_s": round(epc_cpu, 1),
                     "epc_dynamically_stable": doc.dynamically_stable,
                     "epc_min_frequency_cm1": doc.min_frequency_cm1, "tc_K": doc.tc_K,
                     "gate": gate_doc})
        print(json.dumps(rows[-1], indent=1), flush=True)
    return rows


if __name__ == "__main__":
    args = sys.argv[2:]
    only_ = args[args.index("--only") + 1] if "--only" in args else None
    if "--reuse" in args:
        reuse_rows(Path(sys.argv[1]), only_)
    else:
        main(Path(sys.argv[1]), "--fast" in args, only_)
