"""Submit the inverse-design flow to a FireWorks LaunchPad (MongoDB) for a cluster.

1. Edit ``my_launchpad.yaml`` (MongoDB host/credentials), ``my_fworker.yaml`` (QE commands,
   ``SC_INVERSE_MPI_PREFIX``, GBRV pseudopotential directory) and ``my_qadapter.yaml`` (SLURM).
2. ``SC_INVERSE_STORE=mongo python examples/inverse_design/cluster_submit.py --n 3000 --top 62``
3. On the cluster, both together (the first jobs have no category; the DFT stage creates the QE
   jobs at run time): ``sc-inverse rlaunch --until-idle -w my_fworker_cpu.yaml rapidfire`` (or on
   a GPU node) for generation, screening, DFT stage, hull and report, and
   ``sc-inverse qlaunch --until-idle -q my_qadapter.yaml -r rapidfire`` for the QE jobs
   (category ``qe``); both stop when everything is done (README, Cluster).

The run folder must be on a filesystem the workers share (``SC_INVERSE_DATA_DIR``).
"""

from __future__ import annotations

import argparse

from sc_inverse.execution import submit_flow
from sc_inverse.pipeline.maker import make_inverse_design_flow
from sc_inverse.qe.sets import PRESETS
from sc_inverse.runs import new_run_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--top", type=int, default=62, help="the paper validated 62 candidates")
    ap.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    ap.add_argument("--launchpad", default=None)
    args = ap.parse_args()
    run = new_run_dir()
    flow = make_inverse_design_flow(run.root, args.n, args.top, args.preset, seed=0,
                                    optimize_tc=True)
    ids = submit_flow(flow, launchpad=args.launchpad)
    print(f"submitted {len(ids)} fireworks; run folder {run.root}")


if __name__ == "__main__":
    main()
