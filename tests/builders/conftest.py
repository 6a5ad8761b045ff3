"""Builder fixtures: the configured (embedded) job store's docs collection and targets."""

from __future__ import annotations

import pytest


@pytest.fixture
def stores():
    """(tasks, superconductors, thermo) on the embedded store of this test's data dir."""
    from sc_inverse.stores import SUPERCONDUCTORS, THERMO, get_job_store, get_store

    tasks = get_job_store().docs_store
    sc, th = get_store(SUPERCONDUCTORS), get_store(THERMO)
    tasks.connect()
    yield tasks, sc, th
    tasks.close()
