"""A PBEsol pseudopotential library built on the user's machine from pslibrary's parameters.

:func:`build_library` writes ``ld1.x`` inputs from the shipped table, runs them and checks the
results; :func:`list_library` shows what a library directory holds; :func:`check_upf` refuses
empty or truncated UPF files by name. ``sc-inverse pseudos build|list`` (what install.sh calls)
runs them.
"""

from sc_inverse.qe.pslibrary.builder import (
    build_library,
    default_library_dir,
    format_listing,
    list_library,
    read_manifest,
)
from sc_inverse.qe.pslibrary.table import ld1_input, load_table, not_covered, select_entries
from sc_inverse.qe.pslibrary.upf import UpfHeader, check_upf

__all__ = [
    "UpfHeader",
    "build_library",
    "check_upf",
    "default_library_dir",
    "format_listing",
    "ld1_input",
    "list_library",
    "load_table",
    "not_covered",
    "read_manifest",
    "select_entries",
]
