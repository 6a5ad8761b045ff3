"""Which elements the inverse-design run may generate: those QE can run with the installed
pseudopotential library, so that every survivor of the screen can go to DFT."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pymatgen.core import Structure

from sc_inverse.errors import MissingPseudopotentialError
from sc_inverse.qe.pseudos import find_pseudopotentials
from sc_inverse.settings import parse_element_spec

logger = logging.getLogger(__name__)


def missing_pseudopotentials(structure_or_elements: Structure | Sequence[str],
                             pseudo_dir: str | None, pattern: str | None,
                             preset: str | None = None) -> list[str]:
    """Elements of ``structure_or_elements`` without a pseudopotential file in the preset's
    library (or ``pseudo_dir``/``pattern``); only the file names are looked at."""
    try:
        find_pseudopotentials(structure_or_elements, pseudo_dir, pattern, preset)
    except MissingPseudopotentialError as exc:
        return exc.elements
    return []


def covered_elements(elements: list[str], preset: str, pseudo_dir: str | None = None,
                     pseudo_pattern: str | None = None) -> list[str]:
    """Those of ``elements`` that have a pseudopotential file in the preset's library."""
    missing = missing_pseudopotentials(elements, pseudo_dir, pseudo_pattern, preset)
    return [e for e in elements if e not in missing]


def resolve_chemical_space(spec: str | Sequence[str] | None, preset: str,
                           pseudo_dir: str | None = None) -> list[str] | None:
    """``--elements``: ``all`` (None: no restriction), ``auto`` or element symbols (a list or a
    comma-separated string).

    ``auto`` keeps the generator's elements that the preset's pseudopotential library covers, so
    every survivor of the screen can go to DFT (the built PBEsol library covers all 62; Debian's
    LDA files of the ``test`` preset 14); if the library covers all of them, or none (no library
    found), generation is not restricted.
    """
    spec = parse_element_spec(spec)
    if not spec or spec == "all":
        return None
    if spec != "auto":
        return list(spec)
    from sc_inverse.generative.model import load_model  # torch: only when the space is derived

    vocab = load_model()[0].cfg.elements
    covered = covered_elements(vocab, preset, pseudo_dir)
    if not covered:
        logger.warning("--elements auto: no pseudopotential library covers any generator element; "
                       "generating over all %d elements (DFT will skip every candidate)", len(vocab))
        return None
    if len(covered) == len(vocab):
        return None
    logger.info("--elements auto: %d of %d generator elements have %s-preset pseudopotentials: %s",
                len(covered), len(vocab), preset, ",".join(covered))
    return covered
