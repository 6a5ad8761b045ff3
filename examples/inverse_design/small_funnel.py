"""Reproduce the paper's funnel at small scale on this machine (embedded store).

generate N crystals with the shipped CDVAE → ALIGNN/CHGNet screen → QE DFT-PT (``test`` preset,
LDA pseudopotentials from /usr/share/espresso/pseudo) for the top-K survivors that the library
can run, plus fcc Al supplied by the user as a control → convex hull → builders → report.

    .venv/bin/python examples/inverse_design/small_funnel.py --n 100 --top 1

The report (figures + summary.md with the funnel and timings) lands in <run>/report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sc_inverse.execution import run_flow_locally
from sc_inverse.pipeline.maker import make_inverse_design_flow
from sc_inverse.report.summary import build_report
from sc_inverse.runs import new_run_dir

HERE = Path(__file__).parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--top", type=int, default=1)
    ap.add_argument("--no-control", action="store_true", help="do not add fcc Al as a control")
    args = ap.parse_args()

    run = new_run_dir()
    control = None if args.no_control else HERE.parent / "al_fcc" / "Al.pwi"
    flow = make_inverse_design_flow(run.root, args.n, args.top, "test", seed=0, optimize_tc=False,
                                    include=control)
    run_flow_locally(flow, root_dir=run.root / "jobs")
    summary = build_report(run.root, run.root / "report")
    print(summary.read_text())


if __name__ == "__main__":
    main()
