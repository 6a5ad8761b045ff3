"""Packaged JARVIS-DFT superconductor set (1 056 structures; test-split T_c withheld)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Literal

from pymatgen.core import Structure

from sc_inverse.errors import InputError

Split = Literal["train", "val", "test"]
JARVIS_SC_FILE = "jarvis_sc.json"


@lru_cache(maxsize=1)
def _raw_jarvis_sc() -> tuple[dict, ...]:
    text = resources.files(__package__).joinpath(JARVIS_SC_FILE).read_text()
    return tuple(json.loads(text)["records"])


def load_jarvis_sc(split: Split | None = None) -> list[dict]:
    """Records ``{jid, split, formula, tc_K, structure}`` with pymatgen Structures.

    ``split=None`` returns all 1 056; the test split has ``tc_K = None`` by design.
    """
    if split not in (None, "train", "val", "test"):
        raise InputError(f"unknown split {split!r}; use train, val or test")
    out = []
    for rec in _raw_jarvis_sc():
        if split is not None and rec["split"] != split:
            continue
        out.append(
            {
                "jid": rec["jid"],
                "split": rec["split"],
                "formula": rec["formula"],
                "tc_K": rec["tc_K"],
                "structure": Structure.from_str(rec["poscar"], fmt="poscar"),
            }
        )
    return out
