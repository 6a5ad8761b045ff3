"""Running project flows: locally (``run_locally``) or on a cluster through FireWorks.

* :func:`run_flow_locally` - jobflow ``run_locally`` on the configured store.
* :func:`flow_to_fireworks` / :func:`submit_flow` - jobflow's ``flow_to_workflow`` with the
  project's store reference and per-job FireWorks categories, added to the LaunchPad of
  ``my_launchpad.yaml`` (:func:`load_launchpad`).
* :func:`set_categories` - tag jobs (by name substring or Maker class) with ``_category`` so that
  the cluster's ``my_fworker.yaml`` (``category: qe``) pulls QE jobs with ``qlaunch``.
* :func:`recover_lost_runs` - a killed rocket leaves its Firework RUNNING; mark it lost and
  re-run it. Job outputs are upserted by ``(uuid, index)``, so a re-run never duplicates them.

The store travels *by reference*: every Firework carries a :class:`SettingsJobStore`, which the
worker resolves with its own settings (``SC_INVERSE_*`` env / config file / ``jobflow.yaml``), so
credentials never enter the LaunchPad and the worker decides embedded vs MongoDB. The
``SC_INVERSE_*`` entries of the FWorker's ``env`` (``my_fworker.yaml``) are applied before each
job (:class:`ApplyFWorkerEnv`), which is how a cluster sets QE commands and the pseudo dir.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from fireworks import FiretaskBase, explicit_serialize
from jobflow import JobStore

from sc_inverse.errors import InputError, StoreError

if TYPE_CHECKING:
    from fireworks import LaunchPad, Workflow
    from jobflow import Flow, Job

logger = logging.getLogger(__name__)

#: FireWorks category of Quantum ESPRESSO jobs (matches ``category`` in my_fworker.yaml).
QE_CATEGORY = "qe"


def _qe_maker_classes() -> tuple[type, ...]:
    from sc_inverse.qe import jobs as qe_jobs

    names = ("QeRelaxMaker", "QeScfMaker", "QeElphMaker", "QeQPointMaker", "QeElphMergeMaker")
    return tuple(getattr(qe_jobs, n) for n in names if hasattr(qe_jobs, n))


class SettingsJobStore(JobStore):
    """A JobStore that re-creates itself from the *running* machine's settings.

    Serialised it is only ``{"data_dir": ...}`` (no host, no password); deserialised on a
    worker it becomes :func:`sc_inverse.stores.get_job_store` of that worker's settings, with
    ``data_dir`` (when given) pointing an embedded store at the submitter's directory.
    """

    def __init__(self, data_dir: str | None = None):
        from sc_inverse.settings import get_settings
        from sc_inverse.stores import get_job_store

        self.data_dir = data_dir
        settings = get_settings()
        if data_dir is not None:
            settings = settings.model_copy(update={"data_dir": Path(data_dir)})
        real = get_job_store(settings)
        super().__init__(real.docs_store, real.additional_stores, save=real.save, load=real.load)

    def as_dict(self) -> dict:
        return {"@module": type(self).__module__, "@class": type(self).__name__,
                "data_dir": self.data_dir}

    @classmethod
    def from_dict(cls, d: dict) -> SettingsJobStore:
        return cls(d.get("data_dir"))


def store_reference() -> SettingsJobStore:
    """The store reference put into Fireworks (embedded: this machine's absolute data_dir)."""
    from sc_inverse.settings import get_settings

    settings = get_settings()
    if settings.store == "embedded":
        return SettingsJobStore(str(Path(settings.data_dir).expanduser().resolve()))
    return SettingsJobStore(None)


@explicit_serialize
class ApplyFWorkerEnv(FiretaskBase):
    """Copy the FWorker's ``SC_INVERSE_*`` env entries into ``os.environ`` (then re-read settings)."""

    def run_task(self, fw_spec):
        from sc_inverse.settings import get_settings

        env = fw_spec.get("_fw_env") or {}
        changed = False
        for k, v in env.items():
            if str(k).upper().startswith("SC_INVERSE_") and v is not None:
                os.environ[str(k).upper()] = str(v)
                changed = True
        if changed:
            get_settings.cache_clear()


def tag_candidate(
    flow: Flow | Job,
    candidate_id: str,
    origin: str = "generated",
    predictions: Mapping[str, float | None] | None = None,
    **extra: Any,
) -> Flow | Job:
    """Put the candidate's identity on every job's metadata (in place).

    The builders read it back: ``candidate_id`` groups a material's tasks, ``origin``
    (generated/training/user) and the screening-time ML ``predictions`` (e.g. ``tc_K``,
    ``e_form_eV_per_atom``) go into ``superconductors``/``thermo`` with DFT − ML differences.
    """
    meta = {"candidate_id": str(candidate_id), "origin": origin,
            "predictions": {k: v for k, v in (predictions or {}).items() if v is not None},
            **extra}
    flow.update_metadata(meta)
    return flow


def set_categories(
    flow: Flow | Job,
    categories: Mapping[str | type, str] | None = None,
    qe_category: str | None = QE_CATEGORY,
) -> Flow | Job:
    """Set FireWorks ``_category`` per job, in place.

    ``categories`` maps a job-name substring or a Maker class to a category; ``qe_category``
    (default ``"qe"``) is applied to every QE Maker job (relax, scf, elph, q-point, merge) -
    dynamically added q-point jobs inherit it through jobflow's ``pass_manager_config``.
    """
    rules: dict[str | type, str] = {}
    if qe_category:
        rules.update({cls: qe_category for cls in _qe_maker_classes()})
    rules.update(categories or {})
    for job in _iter_jobs(flow):
        maker = getattr(job.function, "__self__", None)
        for selector, category in rules.items():
            hit = (selector in (job.name or "")) if isinstance(selector, str) \
                else isinstance(maker, selector)
            if hit:
                job.config.manager_config = {**job.config.manager_config, "_category": category}
    return flow


def _iter_jobs(flow: Flow | Job):
    from jobflow import Flow

    if isinstance(flow, Flow):
        for item in flow.jobs:
            yield from _iter_jobs(item)
    else:
        yield flow


def flow_to_fireworks(
    flow: Flow | Job,
    categories: Mapping[str | type, str] | None = None,
    qe_category: str | None = QE_CATEGORY,
    store: JobStore | None = None,
    name: str | None = None,
) -> Workflow:
    """A FireWorks ``Workflow`` of ``flow`` (categories set, store by reference)."""
    from jobflow.managers.fireworks import flow_to_workflow

    set_categories(flow, categories, qe_category)
    wf = flow_to_workflow(flow, store=store or store_reference(), **({"name": name} if name else {}))
    for fw in wf.fws:
        fw.tasks.insert(0, ApplyFWorkerEnv())
    return wf


def load_launchpad(path: str | Path | None = None) -> LaunchPad:
    """The LaunchPad of ``path`` > settings.launchpad_file (if present) > FireWorks' auto-load."""
    from fireworks import LaunchPad

    from sc_inverse.settings import get_settings

    file = Path(path) if path else Path(get_settings().launchpad_file).expanduser()
    if path and not file.is_file():
        raise InputError(f"LaunchPad file {file} does not exist")
    try:
        return LaunchPad.from_file(str(file)) if file.is_file() else LaunchPad.auto_load()
    except Exception as exc:  # noqa: BLE001 - pymongo/yaml raise many types; no credentials shown
        raise StoreError(f"cannot load the FireWorks LaunchPad from {file}: {type(exc).__name__}") from exc


def ensure_initialized(lp: LaunchPad) -> None:
    """Initialise a never-used LaunchPad database (FireWorks' id counters + indexes), as
    ``lpad reset`` would, but only when it holds no workflows - nothing is ever wiped."""
    if lp.fw_id_assigner.count_documents({}) == 0 and lp.workflows.count_documents({}) == 0:
        lp._restart_ids(1, 1)
        lp.tuneup()
        logger.info("initialised an empty LaunchPad database")


def fworker_category(path: str | Path | None = None) -> str:
    """The QE category named in ``my_fworker.yaml`` (``qe`` when absent or a list)."""
    import yaml

    from sc_inverse.settings import get_settings

    file = Path(path) if path else Path(get_settings().fworker_file).expanduser()
    if not file.is_file():
        return QE_CATEGORY
    data = yaml.safe_load(file.read_text()) or {}
    cat = data.get("category") if isinstance(data, dict) else None
    if isinstance(cat, list):
        cat = next((c for c in cat if c and c != "__none__"), None)
    return cat if isinstance(cat, str) and cat and cat != "__none__" else QE_CATEGORY


def submit_flow(
    flow: Flow | Job,
    launchpad: LaunchPad | str | Path | None = None,
    categories: Mapping[str | type, str] | None = None,
    qe_category: str | None = None,
    name: str | None = None,
) -> dict[int, int]:
    """Add ``flow`` to the LaunchPad; returns FireWorks' ``{old fw_id: new fw_id}`` map."""
    lp = launchpad if launchpad is not None and not isinstance(launchpad, (str, Path)) \
        else load_launchpad(launchpad)
    wf = flow_to_fireworks(flow, categories, qe_category or fworker_category(), name=name)
    ensure_initialized(lp)
    ids = lp.add_wf(wf)
    logger.info("submitted workflow %r: %d fireworks", wf.name, len(wf.fws))
    return ids


def recover_lost_runs(
    launchpad: LaunchPad | str | Path | None = None,
    expiration_secs: float = 4 * 3600,
    rerun_fizzled: bool = False,
) -> list[int]:
    """Re-run Fireworks whose rocket died (no ping for ``expiration_secs``); optionally also
    every FIZZLED one. Returns the fw_ids set back to READY."""
    lp = launchpad if launchpad is not None and not isinstance(launchpad, (str, Path)) \
        else load_launchpad(launchpad)
    _, lost_fw_ids, _ = lp.detect_lostruns(expiration_secs=expiration_secs, rerun=True)
    fw_ids = list(lost_fw_ids)
    if rerun_fizzled:
        for fw_id in lp.get_fw_ids({"state": "FIZZLED"}):
            lp.rerun_fw(fw_id)
            fw_ids.append(fw_id)
    return sorted(set(fw_ids))


def run_flow_locally(
    flow: Flow | Job,
    store: JobStore | None = None,
    root_dir: str | Path | None = None,
    raise_immediately: bool = False,
    log: bool = True,
) -> dict[str, Any]:
    """jobflow ``run_locally`` on the configured store, one folder per job under
    ``root_dir`` (default ``<data_dir>/runs``). Returns jobflow's responses."""
    from jobflow import run_locally

    from sc_inverse.settings import get_settings
    from sc_inverse.stores import get_job_store

    store = store or get_job_store()
    root = Path(root_dir) if root_dir else Path(get_settings().data_dir) / "runs"
    root.mkdir(parents=True, exist_ok=True)
    return run_locally(flow, store=store, create_folders=True, root_dir=root.resolve(), log=log,
                       raise_immediately=raise_immediately)


# ---------------------------------------------------------------------------------------------
# CLI: sc-inverse submit ...
# ---------------------------------------------------------------------------------------------
_lp_option = click.option("--launchpad", "launchpad_file", type=click.Path(path_type=Path),
                          default=None, help="LaunchPad YAML (default: settings.launchpad_file).")
_cat_option = click.option("--category", default=None,
                           help="FireWorks category of QE jobs (default: my_fworker.yaml's, or 'qe').")


#: extra ``submit`` subcommands defined elsewhere (imported on use): name -> "module:attribute"
SUBMIT_COMMANDS: dict[str, str] = {"inverse-design": "sc_inverse.flows:submit_inverse_design"}


class _SubmitGroup(click.Group):
    """``submit`` group whose extra subcommands live in other modules (lazy, like the main CLI)."""

    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *SUBMIT_COMMANDS})

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        if cmd is not None or name not in SUBMIT_COMMANDS:
            return cmd
        import importlib

        module, attr = SUBMIT_COMMANDS[name].split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            why = f"submit {name} is not available: {exc}"

        def unavailable() -> None:
            raise click.ClickException(why)

        return click.Command(name, help=f"({why})", callback=unavailable)


@click.group("submit", cls=_SubmitGroup)
def submit() -> None:
    """Submit flows to the FireWorks LaunchPad (run them with rlaunch/qlaunch)."""


@submit.command("epc")
@click.argument("structure_file", metavar="STRUCTURE", type=click.Path(path_type=Path))
@click.option("--preset", type=click.Choice(["test", "paper"]), default=None)
@click.option("--pseudo-dir", type=click.Path(path_type=Path), default=None)
@click.option("--pseudo-pattern", default=None)
@click.option("--fanout/--no-fanout", default=False, help="One Firework per irreducible q-point.")
@click.option("--relax/--no-relax", default=None)
@_lp_option
@_cat_option
def submit_epc(structure_file, preset, pseudo_dir, pseudo_pattern, fanout, relax,
               launchpad_file, category):
    """The QE electron-phonon T_c flow of STRUCTURE (relax → scf → ph/q2r/matdyn → T_c)."""
    from sc_inverse.qe.cli import load_structure
    from sc_inverse.qe.flows import ElectronPhononTcMaker
    from sc_inverse.settings import get_settings

    structure, sid = load_structure(structure_file)
    flow = ElectronPhononTcMaker(
        preset=preset or get_settings().qe_preset,
        pseudo_dir=str(pseudo_dir.resolve()) if pseudo_dir else None,
        pseudo_pattern=pseudo_pattern, fanout=fanout, relax=relax,
    ).make(structure)
    tag_candidate(flow, sid, origin="user")
    ids = submit_flow(flow, launchpad_file, qe_category=category, name=f"epc {sid}")
    click.echo(f"submitted {len(ids)} fireworks for {sid} (fw_ids {sorted(ids.values())})")


@submit.command("flow")
@click.argument("flow_file", type=click.Path(path_type=Path))
@_lp_option
@_cat_option
def submit_flow_file(flow_file, launchpad_file, category):
    """Any jobflow Flow/Job serialised to JSON/YAML (monty ``dumpfn(flow, FILE)``)."""
    from jobflow import Flow, Job
    from monty.serialization import loadfn

    if not flow_file.is_file():
        raise InputError(f"{flow_file}: no such file")
    try:
        flow = loadfn(flow_file)
    except Exception as exc:  # noqa: BLE001 - monty/json raise many types
        raise InputError(f"{flow_file}: not a serialised jobflow Flow ({exc})") from exc
    if not isinstance(flow, (Flow, Job)):
        raise InputError(f"{flow_file}: holds a {type(flow).__name__}, not a jobflow Flow or Job")
    ids = submit_flow(flow, launchpad_file, qe_category=category)
    click.echo(f"submitted {len(ids)} fireworks (fw_ids {sorted(ids.values())})")


@submit.command("recover")
@click.option("--expiration-secs", type=float, default=4 * 3600, show_default=True,
              help="A RUNNING Firework without a ping for this long is lost.")
@click.option("--fizzled/--no-fizzled", default=False, help="Also re-run FIZZLED Fireworks.")
@_lp_option
def submit_recover(expiration_secs, fizzled, launchpad_file):
    """Re-run Fireworks of killed rockets (and optionally fizzled ones)."""
    ids = recover_lost_runs(launchpad_file, expiration_secs, fizzled)
    click.echo(f"re-running {len(ids)} fireworks: {ids}")


__all__ = [
    "QE_CATEGORY",
    "SUBMIT_COMMANDS",
    "ApplyFWorkerEnv",
    "SettingsJobStore",
    "flow_to_fireworks",
    "ensure_initialized",
    "fworker_category",
    "load_launchpad",
    "recover_lost_runs",
    "run_flow_locally",
    "set_categories",
    "store_reference",
    "submit",
    "submit_flow",
    "tag_candidate",
]
