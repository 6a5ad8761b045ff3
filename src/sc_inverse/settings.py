"""The single settings object of sc-inverse, and the one source of every configurable default.

Values come, in increasing priority, from defaults, an optional YAML file (``SC_INVERSE_CONFIG``
or ``~/.sc_inverse.yaml``), and environment variables prefixed ``SC_INVERSE_``
(e.g. ``SC_INVERSE_PSEUDO_DIR=/path``). Command-line options override all of these.

A function or Maker argument that defaults to ``None`` takes its value from here when it runs,
so that a command, a Maker and a function share one default. Code that needs other values passes
a settings object (``get_settings().model_copy(update=...)``) down instead of editing the
environment.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from sc_inverse.errors import InputError

DEFAULT_CONFIG_FILE = Path("~/.sc_inverse.yaml").expanduser()

#: keywords of a chemical-space spec besides an element list (see ``run_elements``)
ELEMENT_SPEC_KEYWORDS = ("auto", "all")


def parse_elements(text: str) -> list[str]:
    """'Mg, B,C' -> ['Mg', 'B', 'C'] (validation happens where the vocabulary is known)."""
    return [e.strip() for e in text.split(",") if e.strip()]


def parse_element_spec(spec: Any) -> Any:
    """A chemical-space spec: 'auto' / 'all' as they are, a comma-separated string as a list."""
    if isinstance(spec, str) and spec.strip().lower() in ELEMENT_SPEC_KEYWORDS:
        return spec.strip().lower()
    return parse_elements(spec) if isinstance(spec, str) else spec


class _YamlSource(PydanticBaseSettingsSource):
    """Reads settings from the YAML file named by ``SC_INVERSE_CONFIG`` (if any)."""

    def get_field_value(self, field, field_name):  # pragma: no cover - unused by pydantic here
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("SC_INVERSE_CONFIG")
        file = Path(path).expanduser() if path else DEFAULT_CONFIG_FILE
        if not file.is_file():
            if path:
                raise InputError(f"SC_INVERSE_CONFIG points to {file}, which does not exist")
            return {}
        data = yaml.safe_load(file.read_text()) or {}
        if not isinstance(data, dict):
            raise InputError(f"settings file {file} must hold a mapping, got {type(data).__name__}")
        return {k.lower(): v for k, v in data.items()}


class ScInverseSettings(BaseSettings):
    """Everything configurable in one place (paths, executables, stores, devices)."""

    model_config = SettingsConfigDict(env_prefix="SC_INVERSE_", extra="ignore")

    # --- storage -------------------------------------------------------------------------
    data_dir: Path = Field(
        Path("sc_inverse_data"), description="Project data directory (embedded store, runs)."
    )
    store: Literal["embedded", "mongo"] = Field(
        "embedded", description="'embedded' = on-disk MontyStore; 'mongo' = MongoDB + GridFS."
    )
    jobflow_config: Path | None = Field(
        None, description="jobflow.yaml with a JOB_STORE section (mongo store); overrides below."
    )
    mongo_host: str = "localhost"
    mongo_port: int = 27017
    mongo_database: str = "sc_inverse"
    mongo_username: str | None = None
    mongo_password: str | None = Field(None, repr=False)
    mongo_uri: str | None = Field(None, repr=False, description="Full URI; wins over host/port.")
    launchpad_file: Path = Field(Path("my_launchpad.yaml"), description="FireWorks LaunchPad.")
    fworker_file: Path = Field(Path("my_fworker.yaml"), description="FireWorks FWorker.")

    # --- Quantum ESPRESSO ----------------------------------------------------------------
    pw_cmd: str = "pw.x"
    ph_cmd: str = "ph.x"
    q2r_cmd: str = "q2r.x"
    matdyn_cmd: str = "matdyn.x"
    lambda_cmd: str = "lambda.x"
    mpi_prefix: str = Field("", description="e.g. 'mpirun -np 4' or 'srun'; empty = serial.")
    pseudo_dir: Path | None = Field(
        None, description="Pseudopotential directory of the presets without one of their own "
        "(fast, paper), e.g. a GBRV or SSSP library; None = the PBEsol library built on install "
        "(~/.local/share/sc-inverse/pseudos/pbesol[-low], see `sc-inverse pseudos list`). The "
        "test preset keeps Debian's LDA files unless --pseudo-dir is given."
    )
    pseudo_pattern: str | None = Field(
        None, description="Per-element filename glob ({el} = symbol; matched case-insensitively) "
        "in pseudo_dir; None = the preset's ('{el}.pbesol-*.UPF' for the built library)."
    )
    qe_preset: str = Field(
        "paper", description="QE preset (a name in sc_inverse.qe.sets.PRESETS) of `epc`, "
        "`submit epc` and the QE Makers."
    )

    # --- machine learning ----------------------------------------------------------------
    device: str = Field("cpu", description="torch device for training/inference: cpu or cuda.")
    symmetrize: bool = Field(
        False, description="Recover symmetry of generated crystals with spglib (`generate`, "
        "GenerateCandidatesMaker, generate_candidates); the inverse-design run uses run_symmetrize."
    )
    generator_model: Path | None = Field(None, description="CDVAE checkpoint dir; None = shipped.")
    tc_model: str | None = Field(
        None, description="T_c model: a local model dir (ALIGNN, feature model or ensemble) or an "
        "ALIGNN registry name; None = the shipped ensemble."
    )

    # --- inverse-design run (`run`, `submit inverse-design`, InverseDesignMaker) -----------
    run_n_candidates: int = Field(300, description="Crystals generated per run.")
    run_top_k: int = Field(1, description="Screen survivors validated with QE DFT-PT per run.")
    run_qe_preset: str = Field(
        "fast", description="QE preset of the run's DFT stage: 'fast' (PBEsol, relaxed, cutoffs "
        "from the library, fixed k density), cheaper than qe_preset because a run validates many "
        "unknown cells; 'test' only when asked (CI plumbing, LDA, grids scaled from fcc Al)."
    )
    run_symmetrize: bool = Field(
        True, description="Recover symmetry of the run's generated crystals before screening."
    )
    run_elements: Literal["auto", "all"] | list[str] = Field(
        "auto", description="Chemical space of the run's generator: 'auto' (the elements the "
        "pseudopotential library covers), 'all', or element symbols ('Mg,B,C' or a list)."
    )

    @field_validator("run_elements", mode="before")
    @classmethod
    def _element_spec(cls, v: Any) -> Any:
        return parse_element_spec(v)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls,
        init_settings,
        env_settings,
        dotenv_settings,
        file_secret_settings,
    ):
        return (init_settings, env_settings, _YamlSource(settings_cls), file_secret_settings)


@lru_cache(maxsize=1)
def get_settings() -> ScInverseSettings:
    """Process-wide settings (cached; call ``get_settings.cache_clear()`` in tests)."""
    return ScInverseSettings()

