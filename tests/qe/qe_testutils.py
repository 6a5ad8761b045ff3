"""Shared constants and skip markers of the QE tests (imported by the test modules)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QE_DATA = ROOT / "tests" / "test_data" / "qe"
AL_EXAMPLE = ROOT / "examples" / "al_fcc" / "Al.pwi"
QE_PSEUDO_DIR = Path("/usr/share/espresso/pseudo")


def have_qe(*programs: str) -> bool:
    return all(shutil.which(p) for p in programs)


requires_qe = pytest.mark.skipif(
    not have_qe("pw.x", "ph.x", "q2r.x", "matdyn.x", "lambda.x")
    or not (QE_PSEUDO_DIR / "Al.pz-vbc.UPF").is_file(),
    reason="Quantum ESPRESSO executables or Al.pz-vbc.UPF not installed",
)
