"""What a property predictor is, and where model directories come from.

:class:`Predictor` is the interface every predictor kind implements (ALIGNN, CHGNet-feature
regressor, mean ensemble; see :mod:`sc_inverse.screening.predictors`). :func:`resolve_model`
turns a name or directory into a model directory: a local directory, a model shipped in
``screening/models``, or an ALIGNN2 registry name (downloaded once, then cached).
Kept apart from :mod:`~sc_inverse.screening.predictors` so the predictor kinds can import it
without importing each other.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from sc_inverse.errors import ModelLoadError
from sc_inverse.settings import get_settings

log = logging.getLogger(__name__)

#: the default T_c model (trained on the packaged JARVIS-SC train split, shipped in ``screening/models``)
SHIPPED_TC_MODEL = "tc_ensemble_jarvis_sc"
#: the shipped single ALIGNN T_c model (also a member of the ensemble)
SHIPPED_ALIGNN_TC_MODEL = "alignn_tc_jarvis_sc"
#: files whose presence makes a directory a model directory, by predictor kind
MODEL_MARKERS = ("ensemble.json", "feature_model.json", "config.json")

#: registry-name prefix -> our prediction key (units in names)
REGISTRY_KEYS = {
    "tc_supercon_hydride": "tc_hydride_K",
    "Tc_supercon_hydride": "tc_hydride_K",
    "tc_supercon": "tc_K",
    "Tc_supercon": "tc_K",
    "formation_energy_peratom": "e_form_eV_per_atom",
    "optb88vdw_bandgap": "gap_eV",
    "mbj_bandgap": "gap_mbj_eV",
    "ehull": "e_above_hull_eV_per_atom",
}


def shipped_models_dir() -> Path:
    return Path(str(resources.files("sc_inverse.screening").joinpath("models")))


def is_model_dir(path: Path) -> bool:
    return any((path / m).is_file() for m in MODEL_MARKERS)


def shipped_model_names() -> list[str]:
    d = shipped_models_dir()
    return sorted(p.name for p in d.iterdir() if is_model_dir(p)) if d.is_dir() else []


def registry_key(name: str) -> str | None:
    for prefix, key in REGISTRY_KEYS.items():
        if name.startswith(prefix):
            return key
    return None


@contextlib.contextmanager
def stdout_to_log(name: str) -> Iterator[None]:
    """Route what a library ``print``s while loading a model (CHGNet: "initialized with N
    parameters", "will run on cpu") to the DEBUG log: stdout is for a command's results."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        for line in buffer.getvalue().splitlines():
            if line.strip():
                log.debug("%s: %s", name, line.strip())


def download_failure(exc: BaseException) -> str:
    """A download error in a few words: requests/urllib3 nest the real cause (no DNS, refused,
    timeout) several exceptions deep in a multi-line message."""
    text = str(exc)
    host = re.search(r"host='([^']+)'", text)
    where = f" {host.group(1)}" if host else ""
    for pattern, words in (("NameResolution|Name or service not known|getaddrinfo", "no network: cannot resolve"),
                           ("Connection refused", "connection refused by"),
                           ("timed out|Timeout", "timed out reaching"),
                           ("Max retries exceeded|ConnectionError", "cannot connect to")):
        if re.search(pattern, text) or re.search(pattern, type(exc).__name__):
            return f"{words}{where}"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first[:120]}"


def fetch_registry_model(name: str, cache_dir: str | Path | None = None) -> Path:
    """Download (once) an ALIGNN2 registry model; a clear ModelLoadError names it on failure."""
    # lazy: alignn imports torch, which a predictor-free import path must not pay for
    from alignn.pretrained import ALIGNN2_MODELS, get_alignn2_model

    if name not in ALIGNN2_MODELS:
        close = sorted(k for k in ALIGNN2_MODELS if k.split("_")[0] == name.split("_")[0])[:8]
        raise ModelLoadError(
            f"ALIGNN model {name!r} is neither a local directory, a shipped model "
            f"({', '.join(shipped_model_names()) or 'none'}) nor an ALIGNN2 registry name"
            + (f"; similar registry names: {', '.join(close)}" if close else "")
        )
    if cache_dir is None:
        cache_dir = Path(get_settings().data_dir) / "alignn2_models"
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    url = ALIGNN2_MODELS[name].get("url", "figshare")
    try:
        files = get_alignn2_model(name, download=True, cache_dir=str(cache_dir))
    except Exception as exc:  # noqa: BLE001 - network/HTTP/zip errors all mean "not available"
        raise ModelLoadError(
            f"cannot download ALIGNN2 registry model {name!r} ({download_failure(exc)}); without "
            "internet, copy its config.json + best_model.pt into a directory and pass that directory"
        ) from exc
    if "config.json" not in files or "best_model.pt" not in files:
        raise ModelLoadError(f"ALIGNN2 registry model {name!r}: download from {url} lacks config.json/best_model.pt")
    return Path(files["config.json"]).parent


def resolve_model(name_or_dir: str | Path | None) -> tuple[Path, str]:
    """``(directory, label)`` of a model: local dir, shipped name, or registry name (downloaded)."""
    if name_or_dir is None:
        name_or_dir = get_settings().tc_model or SHIPPED_TC_MODEL
    p = Path(name_or_dir).expanduser()
    if p.is_dir():
        return p, str(p)
    shipped = shipped_models_dir() / str(name_or_dir)
    if is_model_dir(shipped):
        return shipped, f"shipped:{name_or_dir}"
    if any(sep in str(name_or_dir) for sep in ("/", "\\")):
        raise ModelLoadError(f"ALIGNN model directory {name_or_dir} does not exist")
    return fetch_registry_model(str(name_or_dir)), f"alignn2:{name_or_dir}"


class Predictor(ABC):
    """Anything that maps structures to one number each (ALIGNN, feature model, ensemble).

    Subclasses implement :meth:`predict_with_errors` (values with NaN + a message per failed
    structure); ``predict`` is the values alone.
    """

    key: str  # prediction name in records, e.g. "tc_K"
    source: str  # where the model came from (dir, registry name)

    @abstractmethod
    def predict_with_errors(
        self,
        structures: Sequence[Structure],
        batch_size: int = 64,
        device: str | None = None,
        progress: bool = False,
    ) -> tuple[np.ndarray, list[str | None]]: ...

    def predict(
        self, structures: Sequence[Structure], batch_size: int = 64, device: str | None = None
    ) -> np.ndarray:
        return self.predict_with_errors(structures, batch_size=batch_size, device=device)[0]
