"""Pseudopotentials of a QE run: where they are, which file per element, whether they are sound,
and the plane-wave cutoffs they call for.

Every caller that is about to schedule QE work (the ``epc`` command, the Makers, the end-to-end
flow) calls :func:`resolve_pseudopotentials` first, so that *all* elements without a
pseudopotential are reported together, by name, and an empty or truncated file by its path,
before any calculation starts.

Where (:func:`pseudo_location`): an explicit directory/pattern wins; a preset with a directory of
its own (``test``: Debian's LDA files) keeps it with its pattern; otherwise
``settings.pseudo_dir``/``settings.pseudo_pattern`` (``SC_INVERSE_PSEUDO_DIR``, a GBRV or SSSP
directory), else the PBEsol library built on install for the preset's functional and tier
(:func:`sc_inverse.qe.pslibrary.default_library_dir`) with the preset's pattern.

Which file (:func:`find_pseudopotentials`): a built library's ``manifest.json`` names the one
checked file per element; any other directory is searched with the pattern.
"""

from __future__ import annotations

import fnmatch
import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pymatgen.core import Composition, Element, Structure

from sc_inverse.errors import InputError, MissingPseudopotentialError, ParseError
from sc_inverse.qe.pslibrary import UpfHeader, check_upf, default_library_dir, read_manifest
from sc_inverse.qe.sets import QePreset, get_preset
from sc_inverse.settings import ScInverseSettings, get_settings

logger = logging.getLogger(__name__)

#: Lowest ecutrho/ecutwfc ratio the cutoff rule allows (ultrasoft augmentation charges).
MIN_DUAL = 4.0

#: UPF header spellings of the same functional (QE's four-part names and short names).
_FUNCTIONAL_NAMES: dict[tuple[str, ...], str] = {
    ("SLA", "PZ", "NOGX", "NOGC"): "PZ",
    ("LDA",): "PZ",
    ("PZ",): "PZ",
    ("SLA", "PW", "PBX", "PBC"): "PBE",
    ("SLA", "PW", "PBE", "PBE"): "PBE",
    ("PBE",): "PBE",
    ("SLA", "PW", "PSX", "PSC"): "PBESOL",
    ("PBESOL",): "PBESOL",
}


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


def pseudo_location(
    preset: str | QePreset | None = None,
    pseudo_dir: str | Path | None = None,
    pattern: str | None = None,
    settings: ScInverseSettings | None = None,
) -> tuple[Path, str]:
    """(directory, filename pattern) of ``preset``'s pseudopotentials (order: module docstring).

    ``preset=None`` is ``settings.qe_preset``.
    """
    settings = settings or get_settings()
    p = get_preset(preset if preset is not None else settings.qe_preset)
    if p.pseudo_dir is not None:
        directory: str | Path = pseudo_dir or p.pseudo_dir
        pattern = pattern or p.pseudo_pattern
    else:
        directory = (pseudo_dir or settings.pseudo_dir
                     or default_library_dir(p.functional, p.pseudo_tier))
        pattern = pattern or settings.pseudo_pattern or p.pseudo_pattern
    if not pattern:
        raise InputError(f"preset {p.name!r} names no pseudopotential pattern; pass one "
                         "(--pseudo-pattern or settings.pseudo_pattern)")
    if "{el}" not in pattern:
        raise InputError(f"pseudopotential pattern {pattern!r} must contain '{{el}}'")
    return Path(directory).expanduser(), pattern


def _manifest_files(directory: Path) -> dict[str, dict[str, Any]]:
    """Manifest rows of a built library by element ({} for a plain directory of UPF files)."""
    manifest = read_manifest(directory) if directory.is_dir() else None
    return {r["element"]: r for r in (manifest or {}).get("elements", []) if r.get("element")}


def _match(sym: str, glob: str, files: list[Path], manifest: dict[str, dict[str, Any]],
           directory: Path) -> Path | None:
    """The file of ``sym``: the manifest's checked file when it fits the pattern, else the
    lexicographically first glob match; ``None`` when there is none or the build failed."""
    row = manifest.get(sym)
    if row is not None and fnmatch.fnmatchcase(row["file"].lower(), glob):
        if row.get("status") != "ok":
            logger.warning("%s: the library build of %s failed (%s)", sym, row["file"],
                           row.get("reason"))
            return None
        path = directory / row["file"]
        return path if path.is_file() else None
    matches = [p for p in files if fnmatch.fnmatchcase(p.name.lower(), glob)]
    if len(matches) > 1:
        logger.info("%s: %d pseudopotentials match %r, using %s", sym, len(matches), glob,
                    matches[0].name)
    return matches[0] if matches else None


def find_pseudopotentials(
    elements_or_structure: Structure | Composition | Iterable,
    pseudo_dir: str | Path | None = None,
    pattern: str | None = None,
    preset: str | QePreset | None = None,
    settings: ScInverseSettings | None = None,
) -> dict[str, Path]:
    """Map each element to its pseudopotential file, or report every missing element at once.

    ``pattern`` is a glob with ``{el}`` for the element symbol (e.g. ``{el}.pbesol-*.UPF``, the
    built library's naming, or ``{el}_pbesol_v1*.uspp.F.UPF`` for GBRV) and is matched
    case-insensitively, because GBRV files are lower-case (``al_pbesol_v1.uspp.F.UPF``) while
    other libraries capitalise. A built library's manifest picks the file; elsewhere, when several
    files match, the lexicographically first is used (and logged) so runs are reproducible.
    Directory and pattern default to ``preset``'s (:func:`pseudo_location`). The files are only
    located here; :func:`check_pseudopotentials` reads them.

    Raises:
        MissingPseudopotentialError: naming all elements without a file (or all, when the
            directory does not exist).
    """
    directory, pattern = pseudo_location(preset, pseudo_dir, pattern, settings)
    symbols = _element_symbols(elements_or_structure)
    if not symbols:
        raise InputError("no elements given to find pseudopotentials for")
    files = sorted(p for p in directory.iterdir() if p.is_file()) if directory.is_dir() else []
    manifest = _manifest_files(directory)
    found: dict[str, Path] = {}
    missing: list[str] = []
    for sym in symbols:
        path = _match(sym, pattern.format(el=sym).lower(), files, manifest, directory)
        if path is None:
            missing.append(sym)
        else:
            found[sym] = path
    if missing:
        where = str(directory) if directory.is_dir() else f"{directory} (directory not found)"
        raise MissingPseudopotentialError(missing, where, pattern)
    return found


def functional_name(header_functional: str) -> str:
    """One name per functional, whatever spelling the UPF header uses ('SLA PW PSX PSC' and
    'PBESOL' are both PBESOL); unknown spellings are returned normalised but unchanged."""
    tokens = tuple(header_functional.upper().replace("-", " ").split())
    return _FUNCTIONAL_NAMES.get(tokens[:4], _FUNCTIONAL_NAMES.get(tokens, " ".join(tokens)))


def check_pseudopotentials(pseudos: Mapping[str, str | Path]) -> dict[str, UpfHeader]:
    """Read every file's header: refuse empty, truncated or mislabelled files and a mixture of
    functionals (one QE run has one exchange-correlation functional).

    Raises:
        ParseError: naming every empty, truncated or unreadable file.
        InputError: a file of another element, or files of different functionals (all named).
    """
    headers: dict[str, UpfHeader] = {}
    bad: list[str] = []
    for el, path in pseudos.items():
        try:
            headers[el] = check_upf(path)
        except ParseError as exc:
            bad.append(str(exc))
    if bad:
        raise ParseError("unusable pseudopotential file(s): " + "; ".join(bad))
    wrong = [f"{pseudos[el]} is for {h.element.strip()}, not {el}" for el, h in headers.items()
             if h.element.strip().lower() != el.lower()]
    if wrong:
        raise InputError("; ".join(wrong))
    functionals = {el: functional_name(h.functional) for el, h in headers.items()}
    if len(set(functionals.values())) > 1:
        listing = ", ".join(f"{el}: {f} ({Path(pseudos[el]).name})" for el, f in functionals.items())
        raise InputError(f"pseudopotentials of different functionals in one run ({listing}); "
                         "use one library")
    return headers


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"


def resolve_cutoffs(preset: QePreset, headers: Mapping[str, UpfHeader]) -> QePreset:
    """The preset with the cutoffs of this set of elements fixed (unchanged when the preset's
    cutoffs are fixed already).

    ecutwfc = ⌈max(preset floor, largest suggested ecutwfc)⌉ Ry; ecutrho likewise and at least
    :data:`MIN_DUAL` × ecutwfc; ``ecfixed`` of the modified kinetic functional follows ecutwfc
    (ecutwfc - 0.5 Ry, as JARVIS' 44.5 for 45 Ry). ``cutoff_rule`` records the choice, and the
    result no longer depends on the library, so resolving again changes nothing. The hull
    compares energies only at equal cutoffs: the elemental references of a chemical system are
    computed with the preset resolved for the whole system (see
    :class:`~sc_inverse.thermo.jobs.QeElementalReferenceMaker`).
    """
    if not preset.cutoffs_from_library:
        return preset
    wfc = [h.ecutwfc_Ry for h in headers.values() if h.ecutwfc_Ry]
    rho = [h.ecutrho_Ry for h in headers.values() if h.ecutrho_Ry]
    ecutwfc = float(math.ceil(max([preset.ecutwfc, *wfc]) - 1e-9))
    rho_floor = [preset.ecutrho] if preset.ecutrho else []
    ecutrho: float | None = float(math.ceil(max([*rho_floor, *rho, MIN_DUAL * ecutwfc]) - 1e-9))
    if not rho_floor and not rho:
        ecutrho = None  # norm-conserving files only: pw.x's default 4 × ecutwfc
    suggested = ", ".join(f"{el} {_fmt(h.ecutwfc_Ry)}/{_fmt(h.ecutrho_Ry)}"
                          for el, h in sorted(headers.items()))
    rule = (f"max({_fmt(preset.ecutwfc)}/{_fmt(preset.ecutrho)} Ry, suggested by the "
            f"pseudopotentials: {suggested}) = {_fmt(ecutwfc)}/{_fmt(ecutrho)} Ry")
    relax_system = dict(preset.relax_system)
    if "ecfixed" in relax_system:
        relax_system["ecfixed"] = ecutwfc - 0.5
    return preset.with_updates(ecutwfc=ecutwfc, ecutrho=ecutrho, cutoffs_from_library=False,
                               cutoff_rule=rule, relax_system=relax_system)


def resolve_pseudopotentials(
    elements_or_structure: Structure | Composition | Iterable,
    preset: str | QePreset | None = None,
    pseudo_dir: str | Path | None = None,
    pattern: str | None = None,
    settings: ScInverseSettings | None = None,
) -> tuple[dict[str, Path], QePreset]:
    """What a QE run needs before it is scheduled: the checked file of every element and the
    preset with the cutoffs of these elements fixed (:func:`resolve_cutoffs`).

    Raises:
        MissingPseudopotentialError, ParseError, InputError: as :func:`find_pseudopotentials`
            and :func:`check_pseudopotentials`.
    """
    p = get_preset(preset if preset is not None else (settings or get_settings()).qe_preset)
    pseudos = find_pseudopotentials(elements_or_structure, pseudo_dir, pattern, p, settings)
    headers = check_pseudopotentials(pseudos)
    names = {functional_name(h.functional) for h in headers.values()}
    if names and names != {p.functional.upper()}:
        logger.warning("preset %s is meant for %s; these pseudopotentials are %s", p.name,
                       p.functional.upper(), ", ".join(sorted(names)))
    return pseudos, resolve_cutoffs(p, headers)
