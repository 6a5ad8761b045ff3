"""Read the header of a UPF pseudopotential file and refuse truncated or empty ones.

Only the header is parsed (element, functional, type, valence, suggested cutoffs): that is what a
library listing and the choice of plane-wave cutoffs need, and it keeps the check fast for files
of several MB. Both UPF v2 (``<PP_HEADER .../>`` attributes) and the older v1 (a text block) are
understood, so user-supplied libraries (GBRV, SSSP, Debian's files) can be listed as well.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

from sc_inverse.errors import ParseError

_V2_HEADER = re.compile(r"<PP_HEADER\b([^>]*?)/?>", re.S)
_ATTRIBUTE = re.compile(r"([A-Za-z_]+)\s*=\s*\"([^\"]*)\"")
_V1_HEADER = re.compile(r"<PP_HEADER>(.*?)</PP_HEADER>", re.S)
# sections whose closing tag proves a v1 file was written to the end
_V1_REQUIRED = ("</PP_MESH>", "</PP_LOCAL>", "</PP_NONLOCAL>", "</PP_RHOATOM>")


@dataclass(frozen=True)
class UpfHeader:
    """What a library listing needs from one UPF file (cutoffs ``None`` when not suggested)."""

    file: str
    element: str
    functional: str
    pseudo_type: str
    z_valence: float
    ecutwfc_Ry: float | None
    ecutrho_Ry: float | None
    upf_version: str

    def as_dict(self) -> dict:
        return asdict(self)


def _cutoff(value: str | None) -> float | None:
    """A suggested cutoff in Ry, ``None`` when the file gives none (absent or 0)."""
    if value is None:
        return None
    x = float(value.lower().replace("d", "e"))
    return round(x, 2) if x > 0 else None


def _v2_header(path: Path, text: str) -> UpfHeader:
    m = _V2_HEADER.search(text)
    if m is None:
        raise ParseError(f"{path}: UPF v2 file without a PP_HEADER element")
    attrs = {k.lower(): v.strip() for k, v in _ATTRIBUTE.findall(m.group(1))}
    missing = [k for k in ("element", "pseudo_type", "functional", "z_valence") if k not in attrs]
    if missing:
        raise ParseError(f"{path}: PP_HEADER lacks {', '.join(missing)}")
    if "</UPF>" not in text[-200:]:
        raise ParseError(f"{path}: truncated UPF file (no closing </UPF> tag)")
    version = re.search(r'<UPF\s+version="([^"]+)"', text)
    return UpfHeader(
        file=path.name, element=attrs["element"], functional=attrs["functional"],
        pseudo_type=attrs["pseudo_type"], z_valence=float(attrs["z_valence"].lower().replace("d", "e")),
        ecutwfc_Ry=_cutoff(attrs.get("wfc_cutoff")), ecutrho_Ry=_cutoff(attrs.get("rho_cutoff")),
        upf_version=version.group(1) if version else "2",
    )


def _v1_header(path: Path, text: str) -> UpfHeader:
    """UPF v1: one value per line, in a fixed order, each followed by its description."""
    m = _V1_HEADER.search(text)
    if m is None:
        raise ParseError(f"{path}: not a UPF file (no PP_HEADER)")
    missing = [tag for tag in _V1_REQUIRED if tag not in text]
    if missing:
        raise ParseError(f"{path}: truncated UPF file (missing {', '.join(missing)})")
    lines = [ln.split() for ln in m.group(1).strip().splitlines()]
    try:
        functional = " ".join(
            w for w in lines[4] if not w.startswith(("Exchange", "Correlation", "functional"))
        )
        cutoffs = [_cutoff(x) for x in lines[7][:2]] if "Suggested" in lines[7] else [None, None]
        return UpfHeader(
            file=path.name, element=lines[1][0], functional=functional.replace("Exchange-", ""),
            pseudo_type=lines[2][0], z_valence=float(lines[5][0].lower().replace("d", "e")),
            ecutwfc_Ry=cutoffs[0], ecutrho_Ry=cutoffs[1], upf_version="1",
        )
    except (IndexError, ValueError) as exc:
        raise ParseError(f"{path}: unreadable UPF v1 header ({exc})") from exc


def check_upf(path: str | Path) -> UpfHeader:
    """Header of a UPF file that exists, is not empty and was written to the end.

    Raises:
        ParseError: naming the file, when it is missing, empty, truncated or has no readable
            header.
    """
    path = Path(path)
    if not path.is_file():
        raise ParseError(f"{path}: pseudopotential file not found")
    text = path.read_text(errors="replace")
    if not text.strip():
        raise ParseError(f"{path}: empty pseudopotential file")
    if re.search(r"<UPF\s+version=", text[:500]):
        return _v2_header(path, text)
    return _v1_header(path, text)
