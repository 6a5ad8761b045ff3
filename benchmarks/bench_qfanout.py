"""Monolithic vs q-point fan-out ph.x on fcc Al (test preset), with N workers.

Runs the scf once, then
  1. monolithic ph.x, 1 process;
  2. with ``--mpi``: monolithic ph.x under ``mpirun -np N`` (N cores without fan-out);
  3. fan-out: q-point 1 (Γ) first (its dyn0 lists the irreducible q), the others as independent
     ph.x runs on a pool of N workers (1 process each; what a cluster does with one job per q),
     merge;
and prints wall times and λ/ω_log at σ = 0.010 Ry for each. It calls the same functions the
Makers use (``run_ph``, ``run_qpoint``, ``gather_qpoints``, ``analyse_elph``). Numbers, no asserts.

    .venv/bin/python benchmarks/bench_qfanout.py [--workers 2] [--mpi] [--workdir /tmp/bench_qfanout]

Besides wall time it reports the CPU seconds of the QE processes, which do not depend on what
else runs on the machine, and the fan-out critical path (Γ + slowest q-point + gather) that a
cluster with one core per q-point would see.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from sc_inverse.qe.jobs import (
    analyse_elph,
    copy_outdir,
    gather_qpoints,
    run_ph,
    run_qpoint,
    run_scf,
)
from sc_inverse.qe.parsers import parse_dyn0
from sc_inverse.qe.pseudos import find_pseudopotentials
from sc_inverse.qe.sets import PREFIX, TEST
from sc_inverse.records import load_records
from sc_inverse.settings import get_settings

ROOT = Path(__file__).resolve().parents[1]
KGRID, QGRID = (8, 8, 8), (4, 4, 4)


def _child_cpu() -> float:
    """CPU seconds (user + sys) of finished child processes (QE runs) of this process."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _qjob(args):
    scf_out, index, directory, settings = args
    t0, c0 = time.perf_counter(), _child_cpu()
    run_qpoint(TEST, QGRID, scf_out, PREFIX, index, Path(directory), settings=settings)
    return index, (time.perf_counter() - t0, _child_cpu() - c0)


def _analyse(directory: Path, structure, settings):
    doc = analyse_elph(directory, TEST, KGRID, structure=structure, label="bench", settings=settings)
    row = next(r for r in doc.smearing_table if abs(r.sigma_Ry - 0.01) < 1e-9)
    return row.lambda_, row.omega_log_K


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_qfanout"))
    ap.add_argument("--pseudo-dir", default="/usr/share/espresso/pseudo")
    ap.add_argument("--mpi", action="store_true",
                    help="also time monolithic ph.x under 'mpirun -np WORKERS' (slow when the "
                         "cores are shared: OpenMPI busy-waits)")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"  # environment of the QE processes
    serial = get_settings().model_copy(update={"mpi_prefix": ""})
    wd = args.workdir.resolve()
    shutil.rmtree(wd, ignore_errors=True)
    structure = load_records(ROOT / "examples" / "al_fcc" / "Al.pwi")[0].get_structure()
    pseudos = find_pseudopotentials(structure, args.pseudo_dir, TEST.pseudo_pattern)

    t0 = time.perf_counter()
    run_scf(structure, TEST, pseudos, KGRID, wd / "scf", settings=serial)
    scf_out = wd / "scf" / "out"
    print(f"scf (16^3 la2F + 8^3): {time.perf_counter() - t0:.1f} s")
    results = []

    # 1. monolithic, one process
    d = wd / "mono"
    copy_outdir(scf_out, PREFIX, d)
    t0, c0 = time.perf_counter(), _child_cpu()
    run_ph(TEST, QGRID, d, settings=serial)
    t_ph, cpu = time.perf_counter() - t0, _child_cpu() - c0
    results.append(("monolithic ph.x, 1 process", t_ph, cpu, *_analyse(d, structure, serial)))

    # 2. monolithic, MPI over the workers
    if args.mpi and shutil.which("mpirun"):
        flags = "--allow-run-as-root " if os.geteuid() == 0 else ""
        mpi = serial.model_copy(update={"mpi_prefix": f"mpirun {flags}-np {args.workers}"})
        d = wd / "mono_mpi"
        copy_outdir(scf_out, PREFIX, d)
        t0, c0 = time.perf_counter(), _child_cpu()
        run_ph(TEST, QGRID, d, settings=mpi)
        t_ph, cpu = time.perf_counter() - t0, _child_cpu() - c0
        results.append((f"monolithic ph.x, mpirun -np {args.workers}", t_ph, cpu,
                        *_analyse(d, structure, serial)))

    # 3. fan-out over a pool of workers
    for workers in sorted({1, args.workers}):
        d = wd / f"fanout_{workers}"
        init = d / "q1"  # as QeElphMaker: q-point 1 (Γ) runs first, its dyn0 lists all q
        t0, c0 = time.perf_counter(), _child_cpu()
        run_qpoint(TEST, QGRID, scf_out, PREFIX, 1, init, settings=serial)
        _, irr = parse_dyn0(init / "dyn0")
        t_init, cpu_init = time.perf_counter() - t0, _child_cpu() - c0
        jobs = [(str(scf_out), i, str(d / f"q{i}"), serial) for i in range(2, len(irr) + 1)]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            per_q = dict(pool.map(_qjob, jobs))
        merge = d / "merge"
        merge.mkdir()
        t1 = time.perf_counter()
        gather_qpoints({1: init, **{i: d / f"q{i}" for i in per_q}}, init, merge)
        t_gather = time.perf_counter() - t1
        t_ph = time.perf_counter() - t0
        cpu = cpu_init + sum(c for _, c in per_q.values())
        lam, wlog = _analyse(merge, structure, serial)
        results.append((f"fan-out, {len(irr)} q jobs on {workers} worker(s)", t_ph, cpu, lam, wlog))
        walls = [w for w, _ in per_q.values()]
        cpus = [c for _, c in per_q.values()]
        print(f"  fan-out {workers} worker(s): q1 (Γ, lists the q) {t_init:.1f} s, other q wall "
              f"{min(walls):.1f}-{max(walls):.1f} s (CPU {min(cpus):.1f}-{max(cpus):.1f} s), "
              f"gather {t_gather:.2f} s; critical path with one idle core per q: "
              f"{cpu_init + max(cpus) + t_gather:.1f} s of CPU")

    print(f"\n{'mode':45s} {'ph wall [s]':>11s} {'QE CPU [s]':>10s} {'lambda(0.010)':>14s} "
          f"{'omega_log [K]':>14s}")
    for name, wall, cpu, lam, wlog in results:
        print(f"{name:45s} {wall:11.1f} {cpu:10.1f} {lam:14.4f} {wlog:14.1f}")
    print(f"(cores: {os.cpu_count()}; other processes on the machine add noise)")


if __name__ == "__main__":
    main()
