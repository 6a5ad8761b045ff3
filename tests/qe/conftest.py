"""Fixtures of the QE tests: recorded outputs and the fcc-Al example."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from qe_testutils import AL_EXAMPLE, QE_DATA

from sc_inverse.records import load_records


@pytest.fixture
def qe_data() -> Path:
    return QE_DATA


@pytest.fixture
def al_structure():
    return load_records(AL_EXAMPLE)[0].get_structure()


@pytest.fixture
def al_elph_dir(tmp_path) -> Path:
    """A writable copy of the recorded monolithic Al EPC directory."""
    dst = tmp_path / "al_elph"
    shutil.copytree(QE_DATA / "al_elph", dst)
    return dst
