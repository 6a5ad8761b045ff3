"""Fixtures for the generative tests: a few real JARVIS-SC structures and a tiny model."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: on a shared 2-core machine, 2 threads per process oversubscribe the
    CPU and made a small training step 50x slower (measured 3.6 s vs 0.07 s)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def jarvis_train():
    from sc_inverse.generative.data import load_structures

    return load_structures("jarvis", "train")


@pytest.fixture(scope="session")
def vocab(jarvis_train):
    from sc_inverse.generative.data import build_vocabulary

    return build_vocabulary([s for _, s, _ in jarvis_train])


@pytest.fixture(scope="session")
def tiny_items(jarvis_train, vocab):
    from sc_inverse.generative.data import to_items

    return to_items(jarvis_train[:24], vocab)


@pytest.fixture()
def tiny_model(vocab, tiny_items):
    from sc_inverse.generative.config import CDVAEConfig
    from sc_inverse.generative.data import collate
    from sc_inverse.generative.model import CDVAE

    torch.manual_seed(0)
    model = CDVAE(CDVAEConfig.small(elements=vocab)).double()
    b = collate(tiny_items)
    model.set_normalizer(b["lengths"].double(), b["angles"].double(), b["num_atoms"], b["tc"].double())
    return model
