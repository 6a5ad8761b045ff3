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

montydb has no indexes: every ``find``/``replace_one`` scans the whole collection, so maggma's
per-document ``MontyStore.update`` is quadratic. :class:`EmbeddedStore` keeps the MontyStore
format but gives each document a deterministic ``_id`` derived from its key fields and writes
batches straight to the SQLite key-value table (one keys read, one ``INSERT``, one ``UPDATE``),
which is what makes the builders reach thousands of documents per second.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maggma.stores import GridFSStore, MemoryStore, MongoStore, MontyStore
from monty.json import jsanitize

from sc_inverse.errors import StoreError

if TYPE_CHECKING:
    from jobflow import JobStore
    from maggma.core import Store

    from sc_inverse.settings import ScInverseSettings

logger = logging.getLogger(__name__)

#: Collection names shared by every part of the project.
OUTPUTS = "outputs"
BLOBS = "outputs_blobs"
SUPERCONDUCTORS = "superconductors"
THERMO = "thermo"
#: Name of jobflow's additional store for large objects (atomate2 convention).
DATA_STORE = "data"


def _doc_id(doc: dict, keys: list[str]) -> str:
    """Deterministic ``_id`` from the key fields, so an upsert is a primary-key write."""
    values = []
    for k in keys:
        v: Any = doc
        for part in k.split("."):
            if not isinstance(v, dict) or part not in v:
                raise StoreError(f"document has no key field {k!r} (needed for the upsert)")
            v = v[part]
        values.append(v)
    if len(values) == 1 and isinstance(values[0], str):
        return values[0]
    return json.dumps(values, default=str, separators=(",", ":"))


_MISSING = object()


def _materialize(v: Any) -> Any:
    """Turn lazily decoded BSON (RawBSONDocument, lists of them) into plain Python."""
    from bson.raw_bson import RawBSONDocument

    if isinstance(v, RawBSONDocument):
        import bson

        return bson.decode(v.raw)
    if isinstance(v, list):
        return [_materialize(x) for x in v]
    return v


def _get_path(doc: Mapping, path: str) -> Any:
    """Value at a dotted path (plain or raw BSON document); ``_MISSING`` if absent."""
    v: Any = doc
    for part in path.split("."):
        if not isinstance(v, Mapping) or part not in v:
            return _MISSING
        v = v[part]
    return _materialize(v)


def _matches(doc: Mapping, criteria: dict) -> bool:
    """MongoDB semantics for equality and ``$in`` (arrays match by any element, None matches
    a missing field)."""
    for k, want in criteria.items():
        have = _get_path(doc, k)
        if isinstance(want, dict):  # {"$in": set}
            values = have if isinstance(have, list) else [None if have is _MISSING else have]
            if not any(_hashable(v) and v in want["$in"] for v in values):
                return False
        elif want is None:
            if have is not _MISSING and have is not None:
                return False
        elif have != want and not (isinstance(have, list) and want in have):
            return False
    return True


def _hashable(v: Any) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


def _fast_criteria(criteria: dict) -> dict | None:
    """Criteria the fast path handles (equality, ``$in``) with ``$in`` lists made sets; else None."""
    out = {}
    for k, v in criteria.items():
        if k.startswith("$") or isinstance(v, list):
            return None
        if isinstance(v, dict):
            if set(v) != {"$in"} or not isinstance(v["$in"], (list, tuple, set)):
                return None
            try:
                v = {"$in": set(v["$in"])}
            except TypeError:  # unhashable members
                return None
        out[k] = v
    return out


def _project(doc: Mapping, properties: list[str]) -> dict:
    out: dict = {"_id": _get_path(doc, "_id")}
    for p in properties:
        v = _get_path(doc, p)
        if v is _MISSING:
            continue
        parts = p.split(".")
        d = out
        for part in parts[:-1]:
            d = d.setdefault(part, {})
        d[parts[-1]] = v
    return out


class EmbeddedStore(MontyStore):
    """A :class:`MontyStore` (SQLite storage) with batched, key-addressed upserts."""

    def _sqlite_collection(self):
        """montydb's SQLite contractor for this collection (None for other storages)."""
        coll = self._collection
        storage = coll._storage
        if type(storage).__name__ != "SQLiteStorage":
            return None
        contractor = storage
        for inst in coll._components:
            contractor = contractor.contractor_cls(contractor, inst)
        if not contractor._database.collection_exists(contractor._name):
            contractor._database.collection_create(contractor._name)
        return contractor

    def query(self, criteria=None, properties=None, sort=None, hint=None, skip=0, limit=0, **kw):
        """Fast path for equality/``$in`` criteria: raw SQLite scan, C BSON decoding (lazy when
        filtering on top-level fields), Python filter/sort/projection - about 10x montydb's
        query engine. Anything else goes to montydb."""
        fast = _fast_criteria(criteria or {})
        sq = self._sqlite_collection() if fast is not None and not hint and not kw else None
        if sq is None:
            yield from super().query(criteria=criteria, properties=properties, sort=sort,
                                     hint=hint, skip=skip, limit=limit, **kw)
            return
        import bson
        from bson.raw_bson import RawBSONDocument

        if isinstance(properties, dict):
            properties = [k for k, v in properties.items() if v]
        # bson's C decoder on the whole document beats lazy (pure-Python) partial decoding
        # unless the criteria discard most documents on a top-level field
        lazy = bool(fast) and all("." not in k for k in fast)
        docs = ((RawBSONDocument(raw) if lazy else bson.decode(raw))
                for (raw,) in sq._conn.read_all(sq._col_path, 0))
        docs = [d for d in docs if _matches(d, fast)] if fast else list(docs)
        try:
            for field, direction in reversed(list((sort or {}).items())):
                docs.sort(key=lambda d, f=field: (_get_path(d, f) is not _MISSING,
                                                  _get_path(d, f)),
                          reverse=int(getattr(direction, "value", direction)) < 0)
        except TypeError:  # mixed types: let montydb define the order
            yield from super().query(criteria=criteria, properties=properties, sort=sort,
                                     skip=skip, limit=limit)
            return
        docs = docs[skip:skip + limit] if limit else docs[skip:]
        for doc in docs:
            if properties:
                yield _project(doc, properties)
            else:
                yield bson.decode(doc.raw) if isinstance(doc, RawBSONDocument) else doc

    def ensure_index(self, key: str, unique: bool | None = False) -> bool:
        """montydb has no indexes (every query is a scan); report that none was made."""
        return False

    def update(self, docs: list[dict] | dict, key: list | str | None = None) -> None:
        """Upsert ``docs`` by ``key`` (default ``self.key``): each document is BSON-encoded
        once and the batch goes to SQLite as one ``INSERT ... ON CONFLICT DO UPDATE``."""
        if not isinstance(docs, list):
            docs = [docs]
        if not docs:
            return
        keys = key or self.key
        keys = keys if isinstance(keys, list) else [keys]
        sq = self._sqlite_collection()
        batch: dict[str, Any] = {}
        for d in docs:
            d = {k: v for k, v in d.items() if k != "_id"}
            d["_id"] = _doc_id(d, keys)
            if self.validator and not self.validator.is_valid(d):
                if self.validator.strict:
                    raise StoreError(str(self.validator.validation_errors(d)))
                logger.error("%s: document failed validation, not stored", self.collection_name)
                continue
            batch[d["_id"]] = d if sq is None else _encode(sq, d)  # last copy of a key wins
        if sq is None:  # flatfile/lightning storages: montydb's own (slow) upsert
            for d in batch.values():
                d = jsanitize(d, allow_bson=True, recursive_msonable=True)
                self._collection.replace_one({"_id": d["_id"]}, d, upsert=True)
            return
        from montydb.storage.sqlite import SQLITE_RECORD_TABLE
        from montydb.types import bson as mbson

        sql = (f"INSERT INTO [{SQLITE_RECORD_TABLE}] (k, v) VALUES (?, ?) "
               "ON CONFLICT(k) DO UPDATE SET v=excluded.v;")
        with sq._conn._connect(sq._col_path) as conn, conn:
            conn.executemany(sql, [(mbson.id_encode(_id), raw) for _id, raw in batch.items()])


def _encode(sq, doc: dict) -> bytes:
    """BSON bytes of ``doc`` as montydb stores them; monty's ``jsanitize`` first only when
    the document holds non-BSON objects (MSONable, numpy, ...)."""
    from bson.errors import InvalidDocument

    try:
        return sq._encode_doc(doc)
    except (InvalidDocument, TypeError, OverflowError):
        return sq._encode_doc(jsanitize(doc, allow_bson=True, recursive_msonable=True))


def _embedded(settings: ScInverseSettings, collection: str, **kw) -> EmbeddedStore:
    path = Path(settings.data_dir).expanduser().resolve() / "db"
    path.mkdir(parents=True, exist_ok=True)
    return EmbeddedStore(collection, database_path=str(path), storage="sqlite", **kw)


def _read_yaml(path: Path, what: str) -> dict:
    import yaml

    if not path.is_file():
        raise StoreError(f"{what} {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise StoreError(f"{what} {path} is not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise StoreError(f"{what} {path} must hold a mapping")
    return data


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
    from sc_inverse.settings import get_settings

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
    from jobflow import JobStore

    from sc_inverse.settings import get_settings

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
    from jobflow import JobStore

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
