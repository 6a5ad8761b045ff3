"""Pseudopotential library lookup: one directory + one per-element filename pattern.

Every caller that is about to schedule QE work (the ``epc`` command, the Makers, the
end-to-end flow) calls :func:`find_pseudopotentials` first, so that *all* elements without a
pseudopotential are reported together, by name, before any calculation starts.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable
from pathlib import Path

from pymatgen.core import Composition, Element, Structure

from sc_inverse.errors import InputError, MissingPseudopotentialError
from sc_inverse.settings import get_settings

logger = logging.getLogger(__name__)


def _element_symbols(elements_or_structure: Structure | Composition | Iterable) -> list[str]:
    """Element symbols of a structure/composition or of an iterable of symbols/Elements."""
    if isinstance(elements_or_structure, Structure):
        elements = elements_or_structure.composition.elements
    elif isinstance(elements_or_structure, Composition):
        elements = elements_or_structure.elements
    elif isinstance(elements_or_structure, str):
        elements = [elements_or_structure]
    else:
        elements = list(elements_or_structure)
    symbols = []
    for el in elements:
        sym = getattr(el, "symbol", None) or getattr(getattr(el, "element", None), "symbol", None)
        sym = sym or str(el)
        try:
            symbols.append(Element(sym).symbol)
        except ValueError as exc:
            raise InputError(f"{sym!r} is not a chemical element") from exc
    return sorted(set(symbols), key=symbols.index)


def find_pseudopotentials(
    elements_or_structure: Structure | Composition | Iterable,
    pseudo_dir: str | Path | None = None,
    pattern: str | None = None,
) -> dict[str, Path]:
    """Map each element to its pseudopotential file, or report every missing element at once.

    ``pattern`` is a glob with ``{el}`` for the element symbol (e.g. ``{el}_pbesol_v1*.uspp.F.UPF``,
    the GBRV naming of the paper preset) and is matched case-insensitively, because GBRV files
    are lower-case (``al_pbesol_v1.uspp.F.UPF``) while other libraries capitalise. When several
    files match, the lexicographically first is used (and logged) so runs are reproducible.
    Defaults come from :func:`sc_inverse.settings.get_settings`.

    Raises:
        MissingPseudopotentialError: naming all elements without a file (or all, when the
            directory does not exist).
    """
    settings = get_settings()
    pseudo_dir = Path(pseudo_dir if pseudo_dir is not None else settings.pseudo_dir).expanduser()
    pattern = pattern or settings.pseudo_pattern
    if "{el}" not in pattern:
        raise InputError(f"pseudopotential pattern {pattern!r} must contain '{{el}}'")
    symbols = _element_symbols(elements_or_structure)
    if not symbols:
        raise InputError("no elements given to find pseudopotentials for")
    files = (
        sorted(p for p in pseudo_dir.iterdir() if p.is_file()) if pseudo_dir.is_dir() else []
    )
    found: dict[str, Path] = {}
    missing: list[str] = []
    for sym in symbols:
        glob = pattern.format(el=sym).lower()
        matches = [p for p in files if fnmatch.fnmatchcase(p.name.lower(), glob)]
        if not matches:
            missing.append(sym)
            continue
        if len(matches) > 1:
            logger.info("%s: %d pseudopotentials match %r, using %s", sym, len(matches), glob,
                        matches[0].name)
        found[sym] = matches[0]
    if missing:
        where = str(pseudo_dir) if pseudo_dir.is_dir() else f"{pseudo_dir} (directory not found)"
        raise MissingPseudopotentialError(missing, where, pattern)
    return found
