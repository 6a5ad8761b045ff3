"""Per-job overhead of jobflow and FireWorks for a trivial job (on the embedded stores).

* jobflow ``run_locally`` of N trivial chained jobs on the embedded JobStore (MontyStore);
* FireWorks embedded mode (mongomock LaunchPad persisted to a file): ``sc-inverse submit flow``
  then ``sc-inverse rlaunch rapidfire`` (FireWorks' rlaunch on the locked LaunchPad file) of N
  trivial jobs, as separate processes like on a cluster. The
  per-job cost is the slope between N_small and N jobs, the fixed cost is rlaunch's start-up.

Compare with a ``test``-preset Al EPC run (about 1-2 minutes of QE for 2-3 jobs here): the
issue's target is overhead <= 2 % of that. Prints numbers; asserts nothing.

    python benchmarks/bench_fw_overhead.py [--n 30]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jobflow import Flow, job

BIN = Path(sys.executable).parent


@job
def trivial(x: float) -> float:
    """Does nothing measurable."""
    return x + 1


def chain(n: int) -> Flow:
    jobs = [trivial(0.0)]
    for _ in range(n - 1):
        jobs.append(trivial(jobs[-1].output))
    return Flow(jobs, name=f"{n} trivial jobs")


def bench_local(n: int, tmp: Path) -> float:
    from sc_inverse.execution import run_flow_locally
    from sc_inverse.settings import ScInverseSettings
    from sc_inverse.stores import get_job_store

    store = get_job_store(ScInverseSettings(data_dir=tmp / "local"))
    t = time.perf_counter()
    run_flow_locally(chain(n), store=store, root_dir=tmp / "local_runs", log=False)
    return (time.perf_counter() - t) / n


def bench_fireworks(n: int, tmp: Path) -> tuple[float, float, float]:
    """(submit s, rlaunch wall s, jobs) for a chain of n jobs in a fresh embedded LaunchPad."""
    from monty.serialization import dumpfn

    d = tmp / f"fw{n}"
    d.mkdir()
    (d / "state.json").write_text("{}")
    (d / "lp.yaml").write_text("host: localhost\nname: bench\n")
    (d / "w.yaml").write_text("name: bench\ncategory: ''\nquery: '{}'\n")
    # the rlaunch processes import the job by module name, so not from __main__
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_fw_overhead

    dumpfn(bench_fw_overhead.chain(n), d / "flow.json")
    env = {**os.environ, "MONGOMOCK_SERVERSTORE_FILE": str(d / "state.json"),
           "SC_INVERSE_DATA_DIR": str(d / "data"),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    t = time.perf_counter()
    subprocess.run([BIN / "sc-inverse", "submit", "flow", d / "flow.json", "--launchpad", d / "lp.yaml"],
                   check=True, env=env, cwd=d, capture_output=True)
    t_submit = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run([BIN / "sc-inverse", "rlaunch", "-l", d / "lp.yaml", "-w", d / "w.yaml", "rapidfire"],
                   check=True, env=env, cwd=d, capture_output=True)
    t_run = time.perf_counter() - t
    import bson.json_util

    state = bson.json_util.loads((d / "state.json").read_text())
    done = sum(doc["state"] == "COMPLETED" for _, doc in state["bench"]["fireworks"]["documents"])
    if done != n:
        raise SystemExit(f"only {done}/{n} Fireworks completed; see {d}")
    return t_submit, t_run, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--n-small", type=int, default=2)
    args = ap.parse_args()
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        per_local = bench_local(args.n, tmp)
        print(f"jobflow run_locally, embedded store: {per_local * 1e3:.1f} ms per trivial job "
              f"({args.n} jobs)")
        s_small, r_small, _ = bench_fireworks(args.n_small, tmp)
        s_big, r_big, _ = bench_fireworks(args.n, tmp)
        slope = (r_big - r_small) / (args.n - args.n_small)
        fixed = r_small - slope * args.n_small
        print(f"FireWorks embedded: submit {s_big:.1f} s ({args.n} jobs, incl. CLI start-up); "
              f"rlaunch rapidfire {r_small:.1f} s for {args.n_small} jobs, {r_big:.1f} s for "
              f"{args.n} jobs -> {slope * 1e3:.0f} ms per job + {fixed:.1f} s start-up per rlaunch")
        for epc_s in (60.0, 120.0):
            jobs = 3
            frac = (jobs * slope) / epc_s * 100
            print(f"  vs a {epc_s:.0f} s test-preset Al EPC flow of {jobs} jobs: per-job overhead "
                  f"{frac:.2f} % (+ {fixed / epc_s * 100:.1f} % if a fresh rlaunch is started for it)")


if __name__ == "__main__":
    main()
