"""Options shared by several commands, built from the real choices (the QE preset registry, the
settings' store kinds) and from the one source of each default (:mod:`sc_inverse.settings`).

An option whose default lives in the settings defaults to ``None`` here and names the setting in
its help; the function or Maker it feeds reads the setting when it runs.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from sc_inverse.qe.sets import PRESETS
from sc_inverse.settings import ELEMENT_SPEC_KEYWORDS, ScInverseSettings, parse_elements

#: the store kinds the settings accept (``settings.store``)
STORE_KINDS: tuple[str, ...] = typing.get_args(ScInverseSettings.model_fields["store"].annotation)


def from_settings(name: str) -> str:
    """Help text naming the setting that supplies an option's default, and its built-in value."""
    return f"default: settings.{name}, {ScInverseSettings.model_fields[name].default}"


class ElementList(click.ParamType):
    """Comma-separated element symbols ('Mg, B,C' -> ['Mg', 'B', 'C']); ``keywords`` (e.g.
    ``auto``, ``all``) pass through as they are."""

    name = "elements"

    def __init__(self, keywords: tuple[str, ...] = ()):
        self.keywords = keywords

    def convert(self, value: Any, param, ctx) -> list[str] | str:
        if not isinstance(value, str):
            return value
        if value.strip().lower() in self.keywords:
            return value.strip().lower()
        return parse_elements(value)


def preset_option(setting: str, help: str = "QE preset") -> Callable:
    """``--preset`` with the presets of :data:`sc_inverse.qe.sets.PRESETS` as choices."""
    return click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None,
                        help=f"{help} ({from_settings(setting)}).")


device_option = click.option("--device", default=None,
                             help=f"torch device, cpu or cuda ({from_settings('device')}).")
pseudo_dir_option = click.option(
    "--pseudo-dir", type=click.Path(path_type=Path), default=None,
    help="Pseudopotential directory (default: settings.pseudo_dir, else the preset's library: "
         "the built PBEsol library for fast/paper, Debian's LDA files for test).")
launchpad_option = click.option(
    "--launchpad", "launchpad_file", type=click.Path(path_type=Path), default=None,
    help="LaunchPad YAML (default: settings.launchpad_file).")
category_option = click.option(
    "--category", default=None,
    help="FireWorks category of QE jobs (default: my_fworker.yaml's, or 'qe').")
run_name_option = click.option("--run-name", default=None,
                               help="Run folder name under <data_dir>/runs.")

epc_unstable_option = click.option(
    "--epc-unstable", is_flag=True,
    help="Run the electron-phonon calculation even when the DFT stability gate (phonons at Γ "
         "and the zone boundary, before the EPC) finds imaginary modes below the threshold.")

#: options of the inverse-design flow, shared by ``run`` and ``submit inverse-design``
INVERSE_DESIGN_OPTIONS = [
    click.option("--n", "n", type=int, default=None,
                 help=f"Crystals to generate ({from_settings('run_n_candidates')})."),
    click.option("--top", "top_k", type=int, default=None,
                 help=f"Survivors validated with QE DFT-PT ({from_settings('run_top_k')})."),
    preset_option("run_qe_preset", "QE preset of the DFT stage"),
    click.option("--seed", type=int, default=0, show_default=True),
    click.option("--optimize-tc", is_flag=True, help="Latent gradient ascent on the T_c head."),
    click.option("--include", type=click.Path(exists=True, path_type=Path), default=None,
                 help="Extra candidate structures (any record format) screened alongside."),
    pseudo_dir_option,
    click.option("--criteria", "criteria_file", type=click.Path(exists=True, path_type=Path),
                 default=None, help="Screening criteria JSON/YAML (default: the paper's three)."),
    click.option("--keep-known", is_flag=True,
                 help="Let candidates with a training structure/composition pass the screen."),
    click.option("--elements", type=ElementList(ELEMENT_SPEC_KEYWORDS), default=None,
                 help="Chemical space of the generator: 'auto' (elements the pseudopotential "
                      "library covers, so survivors can go to DFT), 'all', or e.g. 'Mg,B,C' "
                      f"({from_settings('run_elements')})."),
    epc_unstable_option,
]


def inverse_design_options(f: Callable) -> Callable:
    """Decorate a command with :data:`INVERSE_DESIGN_OPTIONS`."""
    for opt in reversed(INVERSE_DESIGN_OPTIONS):
        f = opt(f)
    return f
