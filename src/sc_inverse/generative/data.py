"""Datasets for the CDVAE: pymatgen structures -> Niggli-reduced tensors, batching.

Sources: the packaged JARVIS-SC set (``"jarvis"``; splits train/val/test) or any file/folder
:func:`sc_inverse.records.load_records` reads, with an optional ``tc_K`` field per record.
The tensors (``types``, ``frac``, ``lengths``, ``angles``, ``tc``) need only torch, so a
prepared dataset file can be trained on a machine without pymatgen.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from sc_inverse.errors import InputError


@dataclass
class CrystalItem:
    id: str
    types: torch.Tensor  # (n,) long, index into the vocabulary
    frac: torch.Tensor  # (n,3)
    lengths: torch.Tensor  # (3,)
    angles: torch.Tensor  # (3,)
    tc: float  # nan when unknown

    def to_dict(self) -> dict:
        return dict(id=self.id, types=self.types, frac=self.frac, lengths=self.lengths,
                    angles=self.angles, tc=self.tc)


# pymatgen (and the record/data modules that import it) only inside the functions that need
# it: prepared tensors must load and train where only torch is installed (see module docstring)


def _check_structure(structure, where: str) -> None:
    from pymatgen.core import Element

    if not structure.is_ordered:
        raise InputError(f"{where}: disordered (partially occupied) sites are not supported")
    for sp in structure.composition.elements:
        if not isinstance(sp, Element) and not hasattr(sp, "element"):
            raise InputError(f"{where}: unknown element {sp!s}")
        el = getattr(sp, "element", sp)
        if not isinstance(el, Element):
            raise InputError(f"{where}: unknown element {sp!s}")
    if len(structure) == 0:
        raise InputError(f"{where}: structure has no atoms")


def build_vocabulary(structures) -> list[str]:
    """Sorted (by Z) list of the element symbols present; the model's type vocabulary."""
    from pymatgen.core import Element

    symbols = set()
    for s in structures:
        symbols.update(getattr(e, "element", e).symbol for e in s.composition.elements)
    return sorted(symbols, key=lambda x: Element(x).Z)


def structure_to_item(structure, elements: list[str], tc_K=None, id: str = "?",
                      max_atoms: int | None = None) -> CrystalItem:
    """Niggli-reduce and tensorise one structure; clear errors name the record and element."""
    _check_structure(structure, f"record {id}")
    index = {el: i for i, el in enumerate(elements)}
    reduced = structure.get_reduced_structure("niggli")
    symbols = [getattr(sp, "element", sp).symbol for sp in reduced.species]
    unknown = sorted({s for s in symbols if s not in index})
    if unknown:
        raise InputError(
            f"record {id}: element(s) {', '.join(unknown)} not in the model's vocabulary "
            f"({len(elements)} elements: {' '.join(elements)})"
        )
    if max_atoms is not None and len(reduced) > max_atoms:
        raise InputError(f"record {id}: {len(reduced)} atoms exceeds the model's max_atoms={max_atoms}")
    lat = reduced.lattice
    tc = float("nan") if tc_K is None or (isinstance(tc_K, float) and math.isnan(tc_K)) else float(tc_K)
    return CrystalItem(
        id=str(id),
        types=torch.tensor([index[s] for s in symbols], dtype=torch.long),
        frac=torch.tensor(reduced.frac_coords % 1.0, dtype=torch.float32),
        lengths=torch.tensor(lat.abc, dtype=torch.float32),
        angles=torch.tensor(lat.angles, dtype=torch.float32),
        tc=tc,
    )


def load_structures(source: str | Path, split: str | None = None) -> list[tuple[str, object, float | None]]:
    """``(id, Structure, tc_K | None)`` triples from ``"jarvis"`` (packaged set) or a path."""
    if str(source) == "jarvis":
        from sc_inverse.data import load_jarvis_sc

        out = [(r["jid"], r["structure"], r["tc_K"]) for r in load_jarvis_sc(split)]
    else:
        from sc_inverse.records import load_records

        out = []
        for rec in load_records(source):
            extra = rec.model_extra or {}
            tc = extra.get("tc_K", rec.predictions.get("tc_K"))
            out.append((rec.id, rec.get_structure(), tc))
    if not out:
        raise InputError(f"dataset {source!s}{' split ' + split if split else ''} is empty")
    return out


def to_items(triples, elements: list[str], max_atoms: int | None = None) -> list[CrystalItem]:
    return [structure_to_item(s, elements, tc, rid, max_atoms) for rid, s, tc in triples]


def split_items(items: list, val_fraction: float, seed: int) -> tuple[list, list]:
    """Random train/val split for user data (the JARVIS set comes with its own split)."""
    if len(items) < 2:
        raise InputError(f"dataset has {len(items)} structure(s); need at least 2 to split off validation")
    idx = list(range(len(items)))
    random.Random(seed).shuffle(idx)
    n_val = max(1, int(round(val_fraction * len(items))))
    return [items[i] for i in idx[n_val:]], [items[i] for i in idx[:n_val]]


def collate(items: list[CrystalItem], device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Concatenate items into one batch dict (see :mod:`.graph` for the conventions)."""
    if not items:
        raise InputError("cannot build a batch from zero structures")
    return {
        "types": torch.cat([it.types for it in items]).to(device),
        "frac": torch.cat([it.frac for it in items]).to(device),
        "num_atoms": torch.tensor([len(it.types) for it in items], dtype=torch.long, device=device),
        "lengths": torch.stack([it.lengths for it in items]).to(device),
        "angles": torch.stack([it.angles for it in items]).to(device),
        "tc": torch.tensor([it.tc for it in items], dtype=torch.float32, device=device),
    }


def save_prepared(path: str | Path, train: list[CrystalItem], val: list[CrystalItem],
                  elements: list[str], source: str) -> Path:
    """One torch file with both splits + vocabulary: what ``train.fit_prepared`` reads."""
    path = Path(path)
    torch.save(
        {"elements": elements, "source": source,
         "train": [it.to_dict() for it in train], "val": [it.to_dict() for it in val]},
        path,
    )
    return path


def load_prepared(path: str | Path) -> tuple[list[CrystalItem], list[CrystalItem], list[str], str]:
    data = torch.load(Path(path), weights_only=False)
    return ([CrystalItem(**d) for d in data["train"]], [CrystalItem(**d) for d in data["val"]],
            data["elements"], data.get("source", str(path)))
