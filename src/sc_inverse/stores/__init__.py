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

Two rules keep results trustworthy:

* **Derived collections live next to the job documents** (:func:`collection_store`): the
  builders and every command that prints results derive ``superconductors``/``thermo`` from the
  ``JobStore`` the jobs wrote to, never from settings re-read later (jobflow runs each job in
  its own folder, so a relative ``data_dir`` read inside a job pointed somewhere else).
* **A document is published only after its blobs** (:class:`AtomicJobStore`): jobflow writes a
  job's document first and its additional-store blobs second, so a failed blob write (disk
  full) left a document pointing at nothing; here the blobs go first and the document is
  written only when they are stored.
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


class _HeldDocuments:
    """Stands in for a JobStore's docs store during :meth:`AtomicJobStore.update`: keeps the
    documents jobflow writes before their blobs, to be written after them."""

    def __init__(self) -> None:
        self.writes: list[tuple[Any, Any]] = []

    def update(self, docs: Any, key: Any = None) -> None:
        self.writes.append((docs, key))


class AtomicJobStore(JobStore):
    """A jobflow ``JobStore`` that stores a job's blobs before publishing its document.

    jobflow's ``JobStore.update`` writes the documents, then the additional-store blobs; when a
    blob write fails (disk full, lost connection) the document is already visible and points at
    a blob that does not exist. Here the documents are held back until every blob is stored, so
    a failure leaves at most an orphaned blob, never a document without its data.
    """

    def update(self, docs, key=None, save=None):
        if not self.additional_stores:
            return super().update(docs, key=key, save=save)
        docs_store, held = self.docs_store, _HeldDocuments()
        self.docs_store = held  # jobflow's update writes blobs after "publishing" to this
        try:
            super().update(docs, key=key, save=save)
        finally:
            self.docs_store = docs_store
        for batch, batch_key in held.writes:
            docs_store.update(batch, key=batch_key)
        return None


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


def collection_store(job_store: JobStore, collection: str) -> Store:
    """The project collection ``collection`` in the database of ``job_store``'s documents.

    Same class and connection as the docs store (embedded: the same SQLite directory, resolved
    when the job store was made; MongoDB: the same server and database), so the builders write
    where the jobs wrote and a command reads back what it built, whatever the current working
    directory. An in-memory job store keeps one in-memory collection per name.
    """
    docs = job_store.docs_store
    if type(docs) is MemoryStore:  # (MontyStore subclasses MemoryStore: it is on disk)
        derived = vars(docs).setdefault("_sc_inverse_collections", {})
        return derived.setdefault(collection, MemoryStore(collection))
    if isinstance(docs, (MontyStore, MongoStore)):
        spec = {k: v for k, v in docs.as_dict().items() if not k.startswith("@") and k != "key"}
        spec["collection_name"] = collection
        return type(docs)(**spec)
    raise StoreError(f"cannot place the {collection!r} collection next to a "
                     f"{type(docs).__name__} job store (use an embedded or MongoDB store)")


def get_store(collection: str, settings: ScInverseSettings | None = None) -> Store:
    """A maggma store for one project collection (``superconductors``, ``thermo``, ...)
    in the database of the configured JobStore (see :func:`collection_store`)."""
    return collection_store(get_job_store(settings, quiet=True), collection)


def get_job_store(settings: ScInverseSettings | None = None, quiet: bool = False) -> JobStore:
    """The jobflow ``JobStore`` chosen by settings (see module docstring), an
    :class:`AtomicJobStore`; ``quiet``: do not log which one."""
    settings = settings or get_settings()
    if settings.store == "embedded":
        store = AtomicJobStore(
            _embedded(settings, OUTPUTS), additional_stores={DATA_STORE: _embedded(settings, BLOBS)}
        )
    elif settings.jobflow_config:
        path = Path(settings.jobflow_config).expanduser()
        try:
            store = AtomicJobStore.from_dict_spec(_jobflow_spec(path))
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"jobflow config {path}: invalid JOB_STORE ({exc})") from exc
    else:
        store = AtomicJobStore(
            _mongo(settings, OUTPUTS),
            additional_stores={DATA_STORE: _mongo(settings, BLOBS, gridfs=True)},
        )
    if not quiet:
        logger.info("job store: %s", describe_store(store))
    return store


def blob_references(doc: Any) -> list[tuple[str, str]]:
    """``(store name, blob_uuid)`` of every additional-store reference jobflow left in ``doc``
    (a dict with ``blob_uuid`` and ``store`` where the large object was)."""
    refs: list[tuple[str, str]] = []
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "blob_uuid" in item and "store" in item:
                refs.append((str(item["store"]), str(item["blob_uuid"])))
                continue
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return refs


def stored_blob_uuids(blobs: Store, uuids: list[str]) -> set[str]:
    """Which of ``uuids`` are in the additional store ``blobs`` (reads ids only)."""
    if not uuids:
        return set()
    criteria = {"blob_uuid": {"$in": list(uuids)}}
    if isinstance(blobs, GridFSStore):  # ids from the files collection, not the file contents
        return {str(u) for u in blobs.distinct("blob_uuid", criteria)}
    return {str(d["blob_uuid"]) for d in blobs.query(criteria, properties=["blob_uuid"])}


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
    "AtomicJobStore",
    "EmbeddedStore",
    "blob_references",
    "collection_store",
    "describe_store",
    "get_job_store",
    "get_store",
    "mongo_fields",
    "stored_blob_uuids",
]
