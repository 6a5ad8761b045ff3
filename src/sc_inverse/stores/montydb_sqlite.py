"""The one module that touches montydb's private internals: the SQLite file of a collection.

montydb's SQLite storage keeps each collection in ``<db>/<collection>.collection``, a table
``documents`` of ``(k, v)`` rows: ``k`` the BSON-encoded ``_id``, ``v`` the BSON document.
:class:`~sc_inverse.stores.embedded.EmbeddedStore` reads and upserts those rows directly,
bypassing montydb's per-document engine. None of this is montydb's public API, so it is pinned:
:data:`SUPPORTED` is the version range it was written and tested against (``pyproject.toml``
pins the same), and :func:`check_montydb` raises a :class:`StoreError` naming the installed
version and the fix when montydb is outside that range or lacks a name used here.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sqlite3
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import montydb

from sc_inverse.errors import StoreError

#: montydb versions whose internals this module matches: ``low <= version < high``
SUPPORTED: tuple[tuple[int, ...], tuple[int, ...]] = ((2, 5, 6), (2, 6))
#: the same range as a pip requirement (kept equal to the pin in pyproject.toml)
REQUIREMENT = "montydb>=2.5.6,<2.6"

#: private names used below, as ``module:attribute[.attribute]``
PRIVATE_NAMES: tuple[str, ...] = (
    "montydb.storage.sqlite:SQLITE_RECORD_TABLE",
    "montydb.storage.sqlite:SQLiteStorage",
    "montydb.storage.sqlite:SQLiteKVEngine._connect",
    "montydb.storage.sqlite:SQLiteKVEngine.read_all",
    "montydb.storage.sqlite:SQLiteDatabase.collection_exists",
    "montydb.storage.sqlite:SQLiteDatabase.collection_create",
    "montydb.storage.sqlite:SQLiteCollection._encode_doc",
    "montydb.types.bson:__all__",
)


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version)[:3])


def _unsupported(why: str) -> StoreError:
    return StoreError(
        f"montydb {montydb.__version__} is not supported by the embedded store ({why}); it "
        f"needs {REQUIREMENT}, the versions whose SQLite internals it was tested against: "
        f"pip install '{REQUIREMENT}' (or use store: mongo)")


def _resolve(name: str) -> Any:
    module, _, attrs = name.partition(":")
    obj: Any = importlib.import_module(module)
    for attr in attrs.split("."):
        obj = getattr(obj, attr)
    return obj


@cache
def _internals(version: str) -> SimpleNamespace:
    low, high = SUPPORTED
    if not low <= _version_tuple(version) < high:
        raise _unsupported("outside the supported range")
    resolved = {}
    for name in PRIVATE_NAMES:
        try:
            resolved[name] = _resolve(name)
        except (ImportError, AttributeError) as exc:
            raise _unsupported(f"it has no {name.replace(':', '.')}") from exc
    if "id_encode" not in resolved["montydb.types.bson:__all__"]:
        raise _unsupported("it has no montydb.types.bson.id_encode")
    return SimpleNamespace(record_table=resolved["montydb.storage.sqlite:SQLITE_RECORD_TABLE"],
                           storage_cls=resolved["montydb.storage.sqlite:SQLiteStorage"],
                           bson=importlib.import_module("montydb.types.bson"))


def check_montydb() -> None:
    """Raise :class:`StoreError` (naming the fix) unless the installed montydb is in
    :data:`SUPPORTED` and has every private name used here; checked once per version."""
    _internals(montydb.__version__)


#: montydb's table, created if missing in the writer's own transaction: montydb creates a
#: collection by checking for its file and then creating the table, so a second process
#: (two FireWorks workers storing their first outputs at once) saw the new file before its table
#: and failed with "no such table: documents"
_CREATE_TABLE = "CREATE TABLE IF NOT EXISTS [{}] (k text NOT NULL, v text NOT NULL, PRIMARY KEY(k));"


class SqliteTable:
    """The SQLite table of one montydb collection (montydb's collection contractor)."""

    def __init__(self, contractor: Any, internals: SimpleNamespace):
        self._contractor = contractor
        self._internals = internals

    def raw_documents(self) -> Iterator[bytes]:
        """Every stored document as BSON bytes (unordered).

        In a directory this process cannot write (a read-only store), montydb's connection
        fails: reading a WAL-mode SQLite file needs its ``-shm`` index, which SQLite cannot
        create there. The file is then opened ``immutable`` (nobody can write it either)."""
        c = self._contractor
        path = Path(c._col_path)
        if path.is_file() and not os.access(path.parent, os.W_OK):
            uri = f"{path.resolve().as_uri()}?immutable=1"
            with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
                sql = f"SELECT v FROM [{self._internals.record_table}]"
                yield from (raw for (raw,) in conn.execute(sql))
            return
        try:
            rows = c._conn.read_all(c._col_path, 0)
        except sqlite3.OperationalError as exc:  # another process is creating the collection
            if "no such table" in str(exc):
                return
            raise
        for (raw,) in rows:
            yield raw

    def encode(self, doc: dict) -> bytes:
        """BSON bytes of ``doc`` as montydb stores them (raises bson's ``InvalidDocument``,
        ``TypeError`` or ``OverflowError`` on values BSON cannot hold)."""
        return self._contractor._encode_doc(doc)

    def upsert(self, raw_by_id: dict[Any, bytes]) -> None:
        """Insert or replace documents (already encoded) by ``_id``, in one transaction."""
        c = self._contractor
        sql = (f"INSERT INTO [{self._internals.record_table}] (k, v) VALUES (?, ?) "
               "ON CONFLICT(k) DO UPDATE SET v=excluded.v;")
        id_encode = self._internals.bson.id_encode
        with c._conn._connect(c._col_path) as conn, conn:
            conn.execute(_CREATE_TABLE.format(self._internals.record_table))
            conn.executemany(sql, [(id_encode(_id), raw) for _id, raw in raw_by_id.items()])


def storage_configured(repository: str, storage: str) -> bool:
    """Whether montydb's storage config of ``repository`` already names ``storage`` (its
    public ``set_storage`` would only rewrite the same files)."""
    ident = Path(repository) / ".monty.storage"
    try:
        return ident.read_text().strip() == storage and (Path(repository) / "monty.storage.cfg").is_file()
    except OSError:
        return False


def open_client(repository: str, **client_kwargs) -> Any:
    """A ``MontyClient`` of an already configured repository (no config file is written)."""
    return montydb.MontyClient(repository, **client_kwargs)


def sqlite_table(collection: Any, create: bool = True) -> SqliteTable | None:
    """The SQLite table behind a montydb collection (created if missing, unless ``create`` is
    False: then None for a missing one), or None when the collection lives on another storage
    (flatfile, lightning)."""
    internals = _internals(montydb.__version__)
    try:
        storage = collection._storage
        if type(storage) is not internals.storage_cls:
            return None
        contractor = storage
        for inst in collection._components:
            contractor = contractor.contractor_cls(contractor, inst)
        if not contractor._database.collection_exists(contractor._name):
            if not create:
                return None
            try:
                contractor._database.collection_create(contractor._name)
            except sqlite3.OperationalError as exc:  # created by another process meanwhile
                if "already exists" not in str(exc):
                    raise
    except AttributeError as exc:
        raise _unsupported(f"its collections changed: {exc}") from exc
    return SqliteTable(contractor, internals)


__all__ = ["PRIVATE_NAMES", "REQUIREMENT", "SUPPORTED", "SqliteTable", "check_montydb",
           "open_client", "sqlite_table", "storage_configured"]
