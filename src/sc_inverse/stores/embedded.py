"""The embedded backend: a maggma MontyStore (montydb, SQLite) with batched, key-addressed
upserts and a fast query path.

montydb has no indexes: every ``find``/``replace_one`` scans the whole collection, so maggma's
per-document ``MontyStore.update`` is quadratic. :class:`EmbeddedStore` keeps the MontyStore
format but gives each document a deterministic ``_id`` derived from its key fields and writes
batches straight to the SQLite key-value table (one keys read, one ``INSERT``, one ``UPDATE``),
which is what makes the builders reach thousands of documents per second. Everything that
touches montydb's internals is in :mod:`sc_inverse.stores.montydb_sqlite`.
"""

from __future__ import annotations

import errno
import json
import logging
import sqlite3
from collections.abc import Mapping
from typing import Any

import bson
from bson.errors import InvalidDocument
from bson.raw_bson import RawBSONDocument
from maggma.stores import MontyStore
from monty.json import jsanitize

from sc_inverse.errors import StoreError
from sc_inverse.stores.montydb_sqlite import (
    SqliteTable,
    check_montydb,
    open_client,
    sqlite_table,
    storage_configured,
)

logger = logging.getLogger(__name__)


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
    if isinstance(v, RawBSONDocument):
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

    def connect(self, force_reset: bool = False) -> None:
        """Connect; first fail clearly on a montydb whose internals this store does not know.

        maggma's MontyStore rewrites montydb's storage config files on every connect; when
        they already name this storage that write is skipped, so reading works on a
        read-only store (``sc-inverse query``)."""
        check_montydb()
        if (not self._coll or force_reset) and storage_configured(self.database_path, self.storage):
            client = open_client(self.database_path, **self.client_kwargs)
            self._coll = client[self.database_name][self.collection_name]
            return
        super().connect(force_reset=force_reset)

    def query(self, criteria=None, properties=None, sort=None, hint=None, skip=0, limit=0, **kw):
        """Fast path for equality/``$in`` criteria: raw SQLite scan, C BSON decoding (lazy when
        filtering on top-level fields), Python filter/sort/projection - about 10x montydb's
        query engine. Anything else goes to montydb."""
        fast = _fast_criteria(criteria or {})
        # create=False: a query must not write (a missing collection is read by montydb: empty)
        sq = sqlite_table(self._collection, create=False) \
            if fast is not None and not hint and not kw else None
        if sq is None:
            yield from super().query(criteria=criteria, properties=properties, sort=sort,
                                     hint=hint, skip=skip, limit=limit, **kw)
            return
        if isinstance(properties, dict):
            properties = [k for k, v in properties.items() if v]
        # bson's C decoder on the whole document beats lazy (pure-Python) partial decoding
        # unless the criteria discard most documents on a top-level field
        lazy = bool(fast) and all("." not in k for k in fast)
        docs = ((RawBSONDocument(raw) if lazy else bson.decode(raw))
                for raw in sq.raw_documents())
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
        sq = sqlite_table(self._collection)
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
        try:
            if sq is None:  # flatfile/lightning storages: montydb's own (slow) upsert
                for d in batch.values():
                    d = jsanitize(d, allow_bson=True, recursive_msonable=True)
                    self._collection.replace_one({"_id": d["_id"]}, d, upsert=True)
                return
            sq.upsert(batch)
        except (sqlite3.Error, OSError) as exc:
            raise write_error(self, len(batch), exc) from exc

    @property
    def location(self) -> str:
        """Where this collection lives on disk (for messages)."""
        return f"{self.database_path}/{self.database_name}/{self.collection_name}.collection"


def write_error(store: EmbeddedStore, n_docs: int, exc: BaseException) -> StoreError:
    """One-line :class:`StoreError` for a failed write, naming the collection file and, when
    the disk is full or read-only, what to do about it."""
    text = str(exc)
    if getattr(exc, "errno", None) == errno.ENOSPC or "disk is full" in text:
        hint = "the disk is full: free space there or set SC_INVERSE_DATA_DIR to a larger disk"
    elif getattr(exc, "errno", None) in (errno.EROFS, errno.EACCES) or "readonly" in text:
        hint = "the store is read-only: use a writable SC_INVERSE_DATA_DIR"
    else:
        hint = f"{type(exc).__name__}: {text}"
    return StoreError(f"could not write {n_docs} document(s) to the embedded store "
                      f"{store.location} ({hint}); nothing of this batch was stored")


def _encode(sq: SqliteTable, doc: dict) -> bytes:
    """BSON bytes of ``doc`` as montydb stores them; monty's ``jsanitize`` first only when
    the document holds non-BSON objects (MSONable, numpy, ...)."""
    try:
        return sq.encode(doc)
    except (InvalidDocument, TypeError, OverflowError):
        return sq.encode(jsanitize(doc, allow_bson=True, recursive_msonable=True))


__all__ = ["EmbeddedStore"]
