"""Where results live: one settings object picks the jobflow ``JobStore``.

* ``store: embedded`` (default) - maggma :class:`~maggma.stores.MontyStore` (montydb, SQLite
  files) under ``<data_dir>/db``: collection ``outputs`` for job documents, ``outputs_blobs``
  for the large objects jobflow routes to the additional store ``"data"`` (α²F arrays,
  dynamical matrices, generated batches), and the derived ``superconductors``/``thermo``.
  No server needed.
* ``store: mongo`` - MongoDB (:class:`~maggma.stores.MongoStore`) with a
  :class:`~maggma.stores.GridFSStore` ``"data"`` store, configured from (first match):
  ``jobflow_config`` (a ``jobflow.yaml`` with a ``JOB_STORE`` section, or a bare JobStore spec),
  ``mongo_uri``, explicitly set ``mongo_host``/``mongo_port``/..., or the fields of
  ``my_launchpad.yaml`` (``host``, ``port``, ``name``, ``username``, ``password``,
  ``uri_mode``) so that FireWorks and jobflow share one database.

Switching is configuration only. Credentials come from config/env and are never logged
(:func:`describe_store` prints host/database only; maggma's ``Store.name`` can embed a URI).
The embedded backend's fast store is :class:`~sc_inverse.stores.embedded.EmbeddedStore`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobflow import JobStore
from maggma.stores import GridFSStore, MemoryStore, MongoStore, MontyStore

from sc_inverse.errors import StoreError
from sc_inverse.settings import ScInverseSettings, get_settings, read_yaml_mapping
from sc_inverse.stores.embedded import EmbeddedStore

if TYPE_CHECKING:
    from maggma.core import Store

logger = logging.getLogger(__name__)

#: Collection names shared by every part of the project.
OUTPUTS = "outputs"
BLOBS = "outputs_blobs"
SUPERCONDUCTORS = "superconductors"
THERMO = "thermo"
#: Name of jobflow's additional store for large objects (atomate2 convention).
DATA_STORE = "data"


def _embedded(settings: ScInverseSettings, collection: str, **kw) -> EmbeddedStore:
    path = Path(settings.data_dir).expanduser().resolve() / "db"
    path.mkdir(parents=True, exist_ok=True)
    return EmbeddedStore(collection, database_path=str(path), storage="sqlite", **kw)


def _read_yaml(path: Path, what: str) -> dict:
    if not path.is_file():
        raise StoreError(f"{what} {path} does not exist")
    return read_yaml_mapping(path, what)[0]  # errors name the file, line and column


def mongo_fields(settings: ScInverseSettings) -> dict[str, Any]:
    """Connection fields for MongoDB: ``mongo_uri`` > explicit ``mongo_*`` > my_launchpad.yaml."""
    explicit = {"mongo_uri", "mongo_host", "mongo_port", "mongo_username", "mongo_password"}
    lp_file = Path(settings.launchpad_file).expanduser()
    if settings.mongo_uri:
        return {"uri": settings.mongo_uri, "database": settings.mongo_database}
    if not (explicit & settings.model_fields_set) and lp_file.is_file():
        lp = _read_yaml(lp_file, "LaunchPad file")
        if lp.get("uri_mode"):
            return {"uri": lp.get("host"), "database": lp.get("name") or settings.mongo_database}
        return {
            "host": lp.get("host") or "localhost",
            "port": int(lp.get("port") or 27017),
            "database": lp.get("name") or settings.mongo_database,
            "username": lp.get("username") or "",
            "password": lp.get("password") or "",
            **({"auth_source": lp["authsource"]} if lp.get("authsource") else {}),
        }
    return {
        "host": settings.mongo_host,
        "port": settings.mongo_port,
        "database": settings.mongo_database,
        "username": settings.mongo_username or "",
        "password": settings.mongo_password or "",
    }


def _mongo(settings: ScInverseSettings, collection: str, gridfs: bool = False, **kw) -> Store:
    fields = mongo_fields(settings)
    cls = GridFSStore if gridfs else MongoStore
    if "uri" in fields:
        return cls(fields["database"], collection, uri=fields["uri"], **kw)
    return cls(collection_name=collection, **fields, **kw)


def _jobflow_spec(path: Path) -> dict:
    data = _read_yaml(path, "jobflow config")
    spec = data.get("JOB_STORE", data)
    if not isinstance(spec, dict) or "docs_store" not in spec:
        raise StoreError(f"jobflow config {path}: no JOB_STORE section with a 'docs_store'")
    return spec


def get_store(collection: str, settings: ScInverseSettings | None = None) -> Store:
    """A maggma store for one project collection (``superconductors``, ``thermo``, ...)
    on the configured backend (same database as the JobStore)."""
    settings = settings or get_settings()
    if settings.store == "embedded":
        return _embedded(settings, collection)
    if settings.jobflow_config:
        spec = dict(_jobflow_spec(Path(settings.jobflow_config).expanduser())["docs_store"])
        spec.pop("type", None)
        spec["collection_name"] = collection
        spec.pop("key", None)
        return MongoStore(**spec)
    return _mongo(settings, collection)


def get_job_store(settings: ScInverseSettings | None = None) -> JobStore:
    """The jobflow ``JobStore`` chosen by settings (see module docstring)."""
    settings = settings or get_settings()
    if settings.store == "embedded":
        store = JobStore(
            _embedded(settings, OUTPUTS), additional_stores={DATA_STORE: _embedded(settings, BLOBS)}
        )
    elif settings.jobflow_config:
        path = Path(settings.jobflow_config).expanduser()
        try:
            store = JobStore.from_dict_spec(_jobflow_spec(path))
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"jobflow config {path}: invalid JOB_STORE ({exc})") from exc
    else:
        store = JobStore(
            _mongo(settings, OUTPUTS),
            additional_stores={DATA_STORE: _mongo(settings, BLOBS, gridfs=True)},
        )
    logger.info("job store: %s", describe_store(store))
    return store


def describe_store(store: Store) -> str:
    """Human description without credentials (never use ``store.name`` in logs)."""
    if isinstance(store, JobStore):
        extra = ", ".join(f"{k}={describe_store(v)}" for k, v in store.additional_stores.items())
        return f"JobStore(docs={describe_store(store.docs_store)}" + (f", {extra})" if extra else ")")
    if isinstance(store, MontyStore):
        return f"monty:{store.database_path}/{store.collection_name}"
    if isinstance(store, MemoryStore):
        return f"memory:{store.collection_name}"
    if isinstance(store, (MongoStore, GridFSStore)):
        where = "uri" if getattr(store, "uri", None) else f"{store.host}:{store.port}"
        return f"{type(store).__name__}({where}/{store.database}/{store.collection_name})"
    return type(store).__name__


__all__ = [
    "BLOBS",
    "DATA_STORE",
    "OUTPUTS",
    "SUPERCONDUCTORS",
    "THERMO",
    "EmbeddedStore",
    "describe_store",
    "get_job_store",
    "get_store",
    "mongo_fields",
]
