#!/usr/bin/env bash
# Installs everything sc-inverse needs on a fresh Debian/Ubuntu machine: Quantum ESPRESSO
# (pw.x, ph.x, q2r.x, matdyn.x, lambda.x + pseudopotentials) from the distribution, and the
# Python package with all its dependencies into ./.venv (CPU torch pinned). Idempotent.
set -euo pipefail
cd "$(dirname "$0")"

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

if ! command -v pw.x >/dev/null 2>&1 || ! command -v ph.x >/dev/null 2>&1; then
  echo "[install] Quantum ESPRESSO (apt)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq quantum-espresso >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[install] virtual environment .venv"
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
  echo "[install] torch 2.13.0 (CPU)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q torch==2.13.0
fi
echo "[install] sc-inverse and dependencies"
.venv/bin/pip install -q -e '.[dev]' 2>&1 | grep -vE "^WARNING: Location|^$" || true

# PBEsol pseudopotentials generated here with QE's ld1.x from pslibrary's parameters (about a
# minute on 2 cores; files already built from the same input are kept, so a rerun takes a second).
# Location: $SC_INVERSE_PSEUDO_DIR, else ~/.local/share/sc-inverse/pseudos/pbesol (the `paper`
# preset's) and .../pbesol-low (lower-cutoff variants, the `fast` preset's).
for tier in standard low; do
  echo "[install] PBEsol pseudopotential library ($tier tier)"
  .venv/bin/sc-inverse pseudos build --tier "$tier" --workers 2 --quiet \
    || echo "[install] warning: some pseudopotentials did not build (sc-inverse pseudos list --tier $tier)" >&2
done
.venv/bin/python -c "import sc_inverse, torch; print('[install] ok: sc-inverse', sc_inverse.__version__, 'torch', torch.__version__)"
