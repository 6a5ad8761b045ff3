"""Executing project flows: locally (``run_locally``) or on a cluster through FireWorks.

* :func:`run_flow_locally` - jobflow ``run_locally`` on the configured store.
* :func:`flow_to_fireworks` / :func:`submit_flow` - jobflow's ``flow_to_workflow`` with the
  project's store reference and per-job FireWorks categories (QE jobs: ``qe``, so that the
  cluster's ``my_fworker.yaml`` with ``category: qe`` pulls them with ``qlaunch``; see
  :func:`sc_inverse.metadata.set_categories`), added to the LaunchPad of ``my_launchpad.yaml``
  (:func:`load_launchpad`).
* :func:`recover_lost_runs` - a killed rocket leaves its Firework RUNNING; mark it lost and
  re-run it. Job outputs are upserted by ``(uuid, index)``, so a re-run never duplicates them.

The store travels *by reference*: every Firework carries a :class:`SettingsJobStore`, which the
worker resolves with its own settings (``SC_INVERSE_*`` env / config file / ``jobflow.yaml``), so
credentials never enter the LaunchPad and the worker decides embedded vs MongoDB. The
``SC_INVERSE_*`` entries of the FWorker's ``env`` (``my_fworker.yaml``) are applied before each
job (:class:`ApplyFWorkerEnv`), which is how a cluster sets QE commands and the pseudo dir.

Embedded LaunchPad (``MONGOMOCK_SERVERSTORE_FILE``, no MongoDB): FireWorks' own scripts keep a
private snapshot of the file and write it back at exit, so concurrent processes run Fireworks
twice and roll each other back. :func:`lock_embedded_launchpad` makes every LaunchPad of this
process operate on the file under a lock (:mod:`sc_inverse.stores.launchpad_file`);
:func:`run_fireworks_script` (``sc-inverse rlaunch|qlaunch|lpad``) runs FireWorks' scripts that
way (rapidfire stops when nothing is left for it, not earlier), and a plain ``rlaunch``/``qlaunch``/``lpad`` that loads one of our Fireworks (or our queue
adapter) on an embedded LaunchPad is stopped before it has written anything
(:func:`refuse_unlocked_fireworks_script`).
"""

from __future__ import annotations

import collections
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml
from fireworks import FiretaskBase, LaunchPad, Workflow, explicit_serialize
from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter
from jobflow import Flow, Job, JobStore, run_locally
from jobflow.managers.fireworks import flow_to_workflow

from sc_inverse.errors import InputError, StoreError
from sc_inverse.metadata import set_categories
from sc_inverse.qe.categories import QE_CATEGORY, qe_category_rules
from sc_inverse.settings import get_settings
from sc_inverse.stores import AtomicJobStore, get_job_store
from sc_inverse.stores.launchpad_file import in_memory_only, locked_mongo_client

logger = logging.getLogger(__name__)


class SettingsJobStore(AtomicJobStore):
    """A JobStore that re-creates itself from the *running* machine's settings.

    Serialised it is only ``{"data_dir": ...}`` (no host, no password); deserialised on a
    worker it becomes :func:`sc_inverse.stores.get_job_store` of that worker's settings, with
    ``data_dir`` (when given) pointing an embedded store at the submitter's directory.
    """

    def __init__(self, data_dir: str | None = None):
        refuse_unlocked_fireworks_script()  # every Firework of ours carries one: loaded = checked
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
    settings = get_settings()
    if settings.store == "embedded":
        return SettingsJobStore(str(Path(settings.data_dir).expanduser().resolve()))
    return SettingsJobStore(None)


@explicit_serialize
class ApplyFWorkerEnv(FiretaskBase):
    """Copy the FWorker's ``SC_INVERSE_*`` env entries into ``os.environ`` (then re-read settings).

    The one place sc-inverse writes the environment, on purpose: the job that runs next in this
    worker process reads its settings (QE commands, pseudo dir, store) through
    :func:`get_settings` deep inside concern code that the Firework cannot hand a settings
    object to, and ``my_fworker.yaml``'s ``env`` section is FireWorks' way to configure a worker.
    """

    def run_task(self, fw_spec):
        env = fw_spec.get("_fw_env") or {}
        changed = False
        for k, v in env.items():
            if str(k).upper().startswith("SC_INVERSE_") and v is not None:
                os.environ[str(k).upper()] = str(v)
                changed = True
        if changed:
            get_settings.cache_clear()


def flow_to_fireworks(
    flow: Flow | Job,
    categories: Mapping[str | type, str] | None = None,
    qe_category: str | None = QE_CATEGORY,
    store: JobStore | None = None,
    name: str | None = None,
) -> Workflow:
    """A FireWorks ``Workflow`` of ``flow`` (categories set, store by reference).

    ``categories`` maps a job-name substring or a Maker class to a category and wins over
    ``qe_category``, which every QE job gets (none when empty).
    """
    set_categories(flow, {**qe_category_rules(qe_category), **(categories or {})})
    wf = flow_to_workflow(flow, store=store or store_reference(), **({"name": name} if name else {}))
    for fw in wf.fws:
        fw.tasks.insert(0, ApplyFWorkerEnv())
    return wf


def load_launchpad(path: str | Path | None = None) -> LaunchPad:
    """The LaunchPad of ``path`` > settings.launchpad_file (if present) > FireWorks' auto-load
    (on the embedded file: locked, :func:`lock_embedded_launchpad`)."""
    file = Path(path) if path else Path(get_settings().launchpad_file).expanduser()
    if path and not file.is_file():
        raise InputError(f"LaunchPad file {file} does not exist")
    lock_embedded_launchpad()
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
    file = Path(path) if path else Path(get_settings().fworker_file).expanduser()
    if not file.is_file():
        return QE_CATEGORY
    data = yaml.safe_load(file.read_text()) or {}
    cat = data.get("category") if isinstance(data, dict) else None
    if isinstance(cat, list):
        cat = next((c for c in cat if c and c != "__none__"), None)
    return cat if isinstance(cat, str) and cat and cat != "__none__" else QE_CATEGORY


# ---------------------------------------------------------------------------------------------
# embedded LaunchPad: one locked file shared by every process
# ---------------------------------------------------------------------------------------------
#: FireWorks' command-line scripts as ``argv[0]`` names them (console script or module file)
FIREWORKS_SCRIPTS = frozenset({"rlaunch", "qlaunch", "lpad", "mlaunch",
                               "rlaunch_run", "qlaunch_run", "lpad_run", "mlaunch_run"})
#: Firework states that keep a ``sc-inverse rlaunch|qlaunch rapidfire`` waiting for work: a
#: running (or reserved) Firework may complete and unlock WAITING ones, or create Fireworks at
#: run time (the q-point fan-out, the DFT stage's QE jobs) ...
BUSY_STATES = ("RUNNING", "RESERVED")
#: ... and with ``--until-idle`` also a READY Firework of another category, which a worker of
#: that category started alongside will run
IDLE_WAIT_STATES = ("READY", *BUSY_STATES)

def embedded_launchpad_file() -> Path | None:
    """The file of FireWorks' embedded LaunchPad (``MONGOMOCK_SERVERSTORE_FILE`` in the
    environment, else in FireWorks' ``FW_config.yaml``); None when FireWorks uses MongoDB."""
    from fireworks import fw_config

    name = os.environ.get("MONGOMOCK_SERVERSTORE_FILE") or fw_config.MONGOMOCK_SERVERSTORE_FILE
    return Path(name).expanduser().resolve() if name else None


def _launchpad_client(*args: Any, **kwargs: Any):
    """FireWorks' ``MongoClient`` once :func:`lock_embedded_launchpad` ran: the locked file
    while ``MONGOMOCK_SERVERSTORE_FILE`` is set, pymongo otherwise."""
    path = embedded_launchpad_file()
    if path is None:
        import pymongo

        return pymongo.MongoClient(*args, **kwargs)
    return locked_mongo_client(path, *args, **kwargs)


def lock_embedded_launchpad() -> Path | None:
    """Make every LaunchPad this process creates from now on work on the embedded file under its
    lock: one operation at a time across processes, on the file's latest content, written back
    atomically, nothing written at exit (:mod:`sc_inverse.stores.launchpad_file`). Other
    mongomock clients (maggma ``MemoryStore``) stay in memory. Returns the file, None on MongoDB.
    A LaunchPad created before this call keeps FireWorks' unsafe snapshot."""
    import fireworks.core.launchpad as launchpad_module
    from fireworks import fw_config

    launchpad_module.MongoClient = fw_config.MongoClient = _launchpad_client
    in_memory_only()
    return embedded_launchpad_file()


def embedded_launchpad_locked() -> bool:
    """Whether LaunchPads of this process use the locked embedded file."""
    import fireworks.core.launchpad as launchpad_module

    return launchpad_module.MongoClient is _launchpad_client


def refuse_unlocked_fireworks_script() -> None:
    """Stop a plain FireWorks script (``rlaunch``, ``qlaunch``, ``lpad``) working on the embedded
    LaunchPad without the lock, with one line on stderr and exit status 2.

    Called when such a script loads one of our Fireworks (:class:`SettingsJobStore`) or our
    queue adapter: it has written nothing yet (mongomock-persistence writes only at exit, which
    ``os._exit`` skips), so its checkout is forgotten, no Firework runs twice and nothing is
    rolled back. An exception would instead unwind to that exit-time write.
    """
    script = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else ""
    if script not in FIREWORKS_SCRIPTS or embedded_launchpad_locked():
        return
    path = embedded_launchpad_file()
    if path is None:
        return
    name = script.removesuffix("_run")
    sys.stdout.flush()
    sys.stderr.write(
        f"sc-inverse: refusing plain `{name}` on the embedded LaunchPad {path}: it works on a "
        "private copy and writes it back at exit (concurrent workers would run Fireworks twice "
        f"and roll each other back); run `sc-inverse {name}` with the same arguments\n")
    sys.stderr.flush()
    os._exit(2)


def active_fireworks(lp: LaunchPad, states: Sequence[str] = BUSY_STATES) -> collections.Counter:
    """``(state, category)`` counts of the LaunchPad's Fireworks in ``states``."""
    docs = lp.fireworks.find({"state": {"$in": list(states)}}, {"state": 1, "spec._category": 1})
    return collections.Counter((d["state"], d.get("spec", {}).get("_category") or "no category")
                               for d in docs)


def _stop_rule(states: Sequence[str]):
    """A ``LaunchPad.future_run_exists`` for ``rapidfire``: work for ``fworker`` is READY, or may
    still appear while any Firework is in ``states`` (logged, so a waiting worker says why)."""

    def future_run_exists(self: LaunchPad, fworker: Any = None) -> bool:
        if self.run_exists(fworker):
            return True
        active = active_fireworks(self, states)
        if active:
            self.m_logger.info(
                "waiting for work: " + ", ".join(f"{n} {state} ({category})" for
                                                 (state, category), n in sorted(active.items()))
                + " (a Firework left RUNNING by a killed worker: `sc-inverse submit recover`)")
        return bool(active)

    return future_run_exists


class ScInverseQueueAdapter(CommonAdapter):
    """FireWorks' ``CommonAdapter`` (SLURM, PBS, SGE, ...) that also refuses a plain ``qlaunch``
    on the embedded LaunchPad, which loads no Firework before it submits queue jobs
    (``my_qadapter.yaml``: ``_fw_name: "{{sc_inverse.execution.ScInverseQueueAdapter}}"``)."""

    _fw_name = "{{sc_inverse.execution.ScInverseQueueAdapter}}"

    def __init__(self, *args: Any, **kwargs: Any):
        refuse_unlocked_fireworks_script()
        super().__init__(*args, **kwargs)


def run_fireworks_script(name: str, argv: Sequence[str], until_idle: bool = False) -> int:
    """FireWorks' ``rlaunch``, ``qlaunch`` or ``lpad`` with ``argv``, on the locked embedded
    LaunchPad when there is one (:func:`lock_embedded_launchpad`); returns the exit status.

    ``rlaunch``/``qlaunch rapidfire`` with ``--nlaunches 0`` (FireWorks' default) stops when no
    Firework is READY for the worker and none is RUNNING or RESERVED (:data:`BUSY_STATES`), and
    with ``until_idle`` when none is READY for any worker either (:data:`IDLE_WAIT_STATES`).
    FireWorks' own rule (stop unless a RUNNING Firework of the worker's category has WAITING
    children) cannot see Fireworks created at run time: a ``qlaunch`` stopped while the EPC
    flow's elph job was creating its q-point jobs. ``until_idle`` is for workers of several
    categories started together: the inverse-design flow's QE Fireworks appear only after jobs
    of no category ran; such a worker waits as long as READY work of another category is left.
    """
    from fireworks.scripts import lpad_run, qlaunch_run, rlaunch_run

    mains = {"rlaunch": rlaunch_run.rlaunch, "qlaunch": qlaunch_run.qlaunch, "lpad": lpad_run.lpad}
    if name not in mains:
        raise InputError(f"unknown FireWorks script {name!r} (one of {', '.join(mains)})")
    if until_idle and name == "lpad":
        raise InputError("--until-idle applies to rlaunch and qlaunch, not lpad")
    lock_embedded_launchpad()
    if name != "lpad":
        LaunchPad.future_run_exists = _stop_rule(IDLE_WAIT_STATES if until_idle else BUSY_STATES)
    return mains[name](list(argv)) or 0


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


def _as_utc(value: Any) -> datetime | None:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def rerun_orphaned_checkouts(lp: LaunchPad, expiration_secs: float) -> list[int]:
    """Re-run Fireworks a worker left RESERVED when it died inside FireWorks' checkout.

    ``checkout_fw`` marks the Firework RESERVED first and writes its launch afterwards, so a
    worker killed (or Ctrl-C'd) in between leaves a RESERVED Firework without a launch, which
    ``detect_lostruns`` never sees and which keeps ``--until-idle`` workers waiting. A queue
    reservation (``qlaunch -r``) has a RESERVED launch and is left alone (``lpad
    detect_unreserved`` handles those). Only Fireworks not updated for ``expiration_secs``.
    """
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=expiration_secs)
    fw_ids = []
    for fw in lp.fireworks.find({"state": "RESERVED"}, {"fw_id": 1, "launches": 1, "updated_on": 1}):
        if lp.launches.count_documents({"launch_id": {"$in": fw.get("launches", [])},
                                        "state": "RESERVED"}):
            continue
        updated = _as_utc(fw.get("updated_on"))
        if updated is None or updated <= cutoff:
            lp.rerun_fw(fw["fw_id"])
            fw_ids.append(fw["fw_id"])
    return fw_ids


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
    fw_ids = list(lost_fw_ids) + rerun_orphaned_checkouts(lp, expiration_secs)
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
    store = store or get_job_store()
    root = Path(root_dir) if root_dir else Path(get_settings().data_dir) / "runs"
    root.mkdir(parents=True, exist_ok=True)
    return run_locally(flow, store=store, create_folders=True, root_dir=root.resolve(), log=log,
                       raise_immediately=raise_immediately)
