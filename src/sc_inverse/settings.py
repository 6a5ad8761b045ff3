"""The single settings object of sc-inverse, and the one source of every configurable default.

Values come, in increasing priority, from defaults, an optional YAML file (``SC_INVERSE_CONFIG``
or ``~/.sc_inverse.yaml``), and environment variables prefixed ``SC_INVERSE_``
(e.g. ``SC_INVERSE_PSEUDO_DIR=/path``). Command-line options override all of these.

A bad value, a key the settings do not have, or a file that is not YAML raises
:class:`~sc_inverse.errors.SettingsError` with one line naming where the value came from (the
environment variable, or the file and line) and what is wrong, never a pydantic traceback.

Results live in one per-user data directory (``data_dir``, default
``$XDG_DATA_HOME/sc-inverse`` or ``~/.local/share/sc-inverse``), so ``query`` finds them from any
working directory. Versions before issue 12 wrote ``./sc_inverse_data`` relative to the working
directory: it is not read any more, and :func:`legacy_data_dir_notice` tells the user how to keep
using it (``SC_INVERSE_DATA_DIR``) instead of silently showing an empty store.

A function or Maker argument that defaults to ``None`` takes its value from here when it runs,
so that a command, a Maker and a function share one default. Code that needs other values passes
a settings object (``get_settings().model_copy(update=...)``) down instead of editing the
environment.
"""

from __future__ import annotations

import difflib
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from sc_inverse.errors import SettingsError

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


#: the data directory of versions before issue 12, relative to the working directory
LEGACY_DATA_DIR = Path("sc_inverse_data")


def default_data_dir() -> Path:
    """The per-user data directory: ``$XDG_DATA_HOME/sc-inverse`` or ``~/.local/share/sc-inverse``."""
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg and Path(xdg).is_absolute() else Path("~/.local/share").expanduser()
    return base / "sc-inverse"


def config_file() -> Path | None:
    """The settings file in use: ``SC_INVERSE_CONFIG`` or ``~/.sc_inverse.yaml`` (None: neither)."""
    path = os.environ.get("SC_INVERSE_CONFIG")
    if path:
        file = Path(path).expanduser()
        if not file.is_file():
            raise SettingsError(f"SC_INVERSE_CONFIG points to {file}, which does not exist "
                                "(create it or unset SC_INVERSE_CONFIG)")
        return file
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def read_yaml_mapping(file: Path, what: str) -> tuple[dict[str, Any], dict[str, int]]:
    """A YAML file holding a mapping, and the line (1-based) of each top-level key.

    Raises :class:`SettingsError` naming the file, line and column of a syntax error.
    """
    try:
        text = file.read_text()
    except OSError as exc:
        raise SettingsError(f"{what} {file} cannot be read ({exc.strerror})") from exc
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        opened = getattr(exc, "context_mark", None)
        if opened is not None and mark is not None and opened.line != mark.line:
            problem += f", {exc.context} at line {opened.line + 1}"
        raise SettingsError(f"{what} {file}{where}: not valid YAML ({problem}); fix that line") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise SettingsError(f"{what} {file} must hold a mapping (key: value lines), "
                            f"not a {type(data).__name__}")
    lines = {str(k.value): k.start_mark.line + 1 for k, _ in getattr(node, "value", [])
             if isinstance(k, yaml.ScalarNode)}
    return data, lines


class _YamlSource(PydanticBaseSettingsSource):
    """Reads settings from the YAML file named by ``SC_INVERSE_CONFIG`` (or the default file)."""

    def get_field_value(self, field, field_name):  # pragma: no cover - unused by pydantic here
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        file = config_file()
        if file is None:
            return {}
        data, lines = read_yaml_mapping(file, "settings file")
        known = set(self.settings_cls.model_fields)
        for key in data:
            if str(key).lower() not in known:
                close = difflib.get_close_matches(str(key).lower(), known, n=1)
                hint = f"did you mean {close[0]!r}?" if close else "see `sc_inverse.settings`"
                raise SettingsError(f"settings file {file} line {lines.get(str(key), '?')}: unknown "
                                    f"setting {key!r} ({hint})")
        return {str(k).lower(): v for k, v in data.items()}


def setting_source(name: str) -> str:
    """Where the value of setting ``name`` comes from: the environment variable, the settings
    file and line, or the built-in default (for messages that tell the user what to fix)."""
    env = f"SC_INVERSE_{name}".upper()
    if any(k.upper() == env for k in os.environ):
        return f"environment variable {env}"
    try:
        file = config_file()
        if file is not None:
            data, lines = read_yaml_mapping(file, "settings file")
            for key in data:
                if str(key).lower() == name:
                    return f"{file} line {lines.get(str(key), '?')}"
    except SettingsError:
        pass
    return f"the default (set {env} or '{name}:' in {DEFAULT_CONFIG_FILE})"


def _validation_message(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    name = str(first["loc"][0]) if first.get("loc") else "?"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return (f"setting {name} = {first.get('input')!r} from {setting_source(name)}: "
            f"{first['msg']}{more}")


class ScInverseSettings(BaseSettings):
    """Everything configurable in one place (paths, executables, stores, devices)."""

    model_config = SettingsConfigDict(env_prefix="SC_INVERSE_", extra="ignore")

    # --- storage -------------------------------------------------------------------------
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Per-user data directory (embedded store, runs, caches); default "
        "$XDG_DATA_HOME/sc-inverse or ~/.local/share/sc-inverse.",
    )
    store: Literal["embedded", "mongo"] = Field(
        "embedded", description="'embedded' = on-disk MontyStore; 'mongo' = MongoDB + GridFS."
    )
    jobflow_config: Path | None = Field(
        None, description="jobflow.yaml with a JOB_STORE section (mongo store); overrides below."
    )
    mongo_host: str = "localhost"
    mongo_port: int = Field(27017, ge=1, le=65535)
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
    epc_stability_gate: bool = Field(
        True, description="Run the DFT stability gate (scf + phonons at Γ and the zone boundary "
        "of the q grid) before every electron-phonon run, and skip the EPC of a candidate it "
        "finds unstable (unless --epc-unstable)."
    )
    epc_rescue_rounds: int = Field(
        1, ge=0, description="Soft-mode rescue rounds of a candidate the stability gate finds "
        "unstable at Γ or the zone boundary (freeze the mode in, vc-relax, gate again; each round "
        "costs a vc-relax + gate of a cell of ≤ 16 atoms; docs/rescue.md); 0 = off."
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
    run_n_candidates: int = Field(300, ge=1, description="Crystals generated per run.")
    run_top_k: int = Field(1, ge=0, description="Screen survivors validated with QE DFT-PT per run.")
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
    """Process-wide settings (cached; call ``get_settings.cache_clear()`` in tests).

    Raises :class:`SettingsError` (one line: setting, value, where it came from, why) instead of
    pydantic's multi-line ``ValidationError``.
    """
    try:
        return ScInverseSettings()
    except ValidationError as exc:
        raise SettingsError(_validation_message(exc)) from None


def legacy_data_dir_notice(settings: ScInverseSettings) -> str | None:
    """One line for a user upgrading from a version that kept results in ``./sc_inverse_data``:
    when that folder exists here and is not the configured data dir (None otherwise)."""
    legacy = LEGACY_DATA_DIR.resolve()
    if not (legacy / "db").is_dir() and not (legacy / "runs").is_dir():
        return None
    if Path(settings.data_dir).expanduser().resolve() == legacy:
        return None
    return (f"note: {legacy} holds results of an older sc-inverse, which no longer reads it; the "
            f"data dir is now {Path(settings.data_dir).expanduser()}. To keep using the old one: "
            f"export SC_INVERSE_DATA_DIR={legacy}")
