"""Builder throughput on the embedded store (MontyStore/SQLite).

Inserts N synthetic task documents (real ElphTaskDoc / PwTaskDoc schemas) into a fresh embedded
job store, then times the builder's first run (all N materials), a second run (0 to process),
and an incremental run after 1 % of the tasks changed. Prints documents/s; asserts nothing.
``--builder tc`` (TcBuilder, elph docs) or ``hull`` (HullBuilder, scf docs + references).

    python benchmarks/bench_builders.py [--n 50000] [--builder tc|hull] [--distinct]

By default the documents reuse 60 prototype cells (as re-runs and smearing/preset variants of
the same materials do), so the space group is computed once per cell; ``--distinct`` gives
every document its own cell and measures the spglib cost (about 1-4 ms per cell here).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

# the synthetic task documents live with the tests (tests/factories.py), not in the package
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--builder", choices=["tc", "hull"], default="tc")
    ap.add_argument("--distinct", action="store_true",
                    help="every document a different cell (no space-group cache hits)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          "(wall times scale with contention; CPU times much less)")

    from factories import many_elph_tasks, many_scf_tasks
    from sc_inverse.builders.tc import _SG_CACHE, TcBuilder
    from sc_inverse.builders.thermo import HullBuilder
    from sc_inverse.settings import ScInverseSettings
    from sc_inverse.stores import SUPERCONDUCTORS, THERMO, get_job_store, get_store

    with tempfile.TemporaryDirectory() as tmp:
        settings = ScInverseSettings(data_dir=Path(tmp))
        tasks = get_job_store(settings).docs_store
        target = get_store(SUPERCONDUCTORS if args.builder == "tc" else THERMO, settings)
        cls = TcBuilder if args.builder == "tc" else HullBuilder
        t = time.perf_counter()
        docs = (many_elph_tasks(args.n, distinct_structures=args.distinct) if args.builder == "tc"
                else many_scf_tasks(args.n))
        t_gen = time.perf_counter() - t
        tasks.connect()
        t = time.perf_counter()
        tasks.update(docs, key=["uuid", "index"])
        t_ins = time.perf_counter() - t
        print(f"generated {args.n} task docs in {t_gen:.1f} s; inserted in {t_ins:.2f} s "
              f"({args.n / t_ins:,.0f} docs/s)")

        def run(label):
            _SG_CACHE.clear()  # each `sc-inverse build` is a fresh process
            t0, c0 = time.perf_counter(), time.process_time()
            s = cls(tasks, target).run_with_summary()
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            print(f"{label}: {s['source_docs']} source docs, {s['processed']} processed, "
                  f"{s['errors']} errors in {dt:.2f} s wall / {dc:.2f} s CPU -> "
                  f"{s['source_docs'] / dt:,.0f} docs/s wall, {s['source_docs'] / dc:,.0f} docs/s CPU")

        run(f"{cls.__name__} first run ")
        run(f"{cls.__name__} second run")
        changed = docs[: args.n // 100]
        for d in changed:
            d["completed_at"] = "2027-01-01T00:00:00"
        tasks.update(changed, key=["uuid", "index"])
        run(f"{cls.__name__} after 1 % changed")
        size = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
        print(f"embedded store on disk: {size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
