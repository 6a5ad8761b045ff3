"""Screening-test fixtures (helpers live in screening_testutils.py)."""

from __future__ import annotations

import math

import pytest
from screening_testutils import TINY_MODEL


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A real ALIGNN model trained for one epoch on 16 JARVIS-SC train structures (~10 s)."""
    from sc_inverse.screening.train import load_training_data, train_alignn

    train, val = load_training_data("tc_K")
    out = tmp_path_factory.mktemp("tiny_alignn")
    res = train_alignn(out, epochs=1, batch_size=8, train_samples=train[:16], val_samples=val[:4],
                       model_overrides=TINY_MODEL, progress=False, command="pytest tiny model")
    assert math.isfinite(res.val_mae)
    return out


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny graphs gain nothing from threads, and on a busy 2-core box OpenMP spin-waits can
    make them 10x slower: screening tests run on one thread (restored afterwards)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
