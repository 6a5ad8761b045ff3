"""CDVAE crystal generator (own implementation on current PyTorch).

Importing this package is cheap: only :mod:`torch`-free names live here. Heavy modules
(``model``, ``sample``, ...) are imported where used so ``sc-inverse --help`` stays fast and the
training core runs on machines that have torch but no pymatgen (see ``train.fit``).
"""

from __future__ import annotations

__all__ = ["generate_candidates", "recover_symmetry", "GenerateCandidatesMaker"]


def __getattr__(name: str):
    if name == "generate_candidates":
        from sc_inverse.generative.sample import generate_candidates

        return generate_candidates
    if name == "recover_symmetry":
        from sc_inverse.generative.symmetry import recover_symmetry

        return recover_symmetry
    if name == "GenerateCandidatesMaker":
        from sc_inverse.generative.jobs import GenerateCandidatesMaker

        return GenerateCandidatesMaker
    raise AttributeError(name)
