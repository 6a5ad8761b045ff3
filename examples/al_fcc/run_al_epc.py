"""fcc-Al electron-phonon T_c through the Python API (what `sc-inverse epc` does).

    .venv/bin/python examples/al_fcc/run_al_epc.py [--fanout]

Builds the jobflow Flow with ElectronPhononTcMaker, runs it locally into the configured job
store (embedded MontyStore under ./sc_inverse_data by default) and prints the smearing table.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jobflow import run_locally

from sc_inverse.qe.flows import ElectronPhononTcMaker
from sc_inverse.records import load_structure
from sc_inverse.stores import get_job_store

HERE = Path(__file__).resolve().parent

structure, _ = load_structure(HERE / "Al.pwi")
flow = ElectronPhononTcMaker(
    preset="test", pseudo_dir="/usr/share/espresso/pseudo", fanout="--fanout" in sys.argv
).make(structure)
store = get_job_store()
run_locally(flow, store=store, create_folders=True, root_dir="al_epc_run", raise_immediately=True)
with store:
    doc = flow.output.resolve(store)
print(f"{'sigma [Ry]':>10} {'lambda':>8} {'omega_log [K]':>14} {'Tc AD [K]':>10} {'lambda.x':>9}")
for r in doc.smearing_table:
    print(f"{r.sigma_Ry:10.3f} {r.lambda_:8.4f} {r.omega_log_K:14.1f} {r.tc_K:10.2f} "
          f"{r.lambda_lambdax:9.4f}")
print(f"reported: sigma {doc.selected_sigma_Ry} Ry ({doc.selection_rule}); "
      f"Tc = {doc.tc_K:.2f} K; dynamically stable: {doc.dynamically_stable}")
