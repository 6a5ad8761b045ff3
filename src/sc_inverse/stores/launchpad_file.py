"""FireWorks' embedded LaunchPad file, made safe for concurrent processes.

Without MongoDB, FireWorks runs on ``mongomock`` persisted by ``mongomock-persistence`` to the
JSON file named by ``MONGOMOCK_SERVERSTORE_FILE``. That package reads the file once, when a
client is created, and writes the process's whole in-memory copy back when the process exits.
Two processes on one file therefore each work on their own snapshot: both check out the same
Firework, and the last one to exit overwrites what the others wrote (Ctrl-C on a ``qlaunch``
wrote its start-up snapshot back, turning 11 COMPLETED Fireworks into 2 WAITING/READY ones).

:class:`LockedServerStore` gives every operation what MongoDB gives it. The operation runs
under an exclusive ``flock`` of ``<file>.lock``, on the file's latest content (re-read whenever
another process changed it), and an operation that may modify data writes the file back
atomically (temporary file renamed over it) before the lock is released. Nothing is written at
exit, so an interrupted or killed process leaves the file as its last completed operation left
it, and the kernel releases a dead process's lock. Read-modify-write operations such as
FireWorks' checkout (``find_one_and_update`` of a READY Firework) are therefore atomic across
processes, and FireWorks' own concurrency rules (it is written for MongoDB) hold again.

The file keeps mongomock-persistence's format, so FireWorks processes without the lock can
still read it; their exit-time write is the one hazard left, and :class:`LockedServerStore`
logs a warning when it sees the file rewritten outside the lock.

This is the only module touching mongomock's internals (``ServerStore._databases``,
``DatabaseStore._collections``, ``CollectionStore._documents`` / ``indexes``; mongomock 4.3).
"""

from __future__ import annotations

import collections
import fcntl
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import bson.json_util
import mongomock
from mongomock.collection import Collection
from mongomock.database import Database
from mongomock.store import CollectionStore, DatabaseStore, ServerStore

from sc_inverse.errors import StoreError

logger = logging.getLogger(__name__)

#: methods that read data: run on the latest file content, write nothing back
_READS = {
    Collection: ("find", "find_one", "count_documents", "estimated_document_count", "distinct",
                 "list_indexes", "index_information", "find_raw_batches", "count"),
    Database: ("list_collection_names", "list_collections"),
    mongomock.MongoClient: ("list_database_names",),
}
#: methods that may modify data: the file is written back before the lock is released
_WRITES = {
    Collection: ("insert_one", "insert_many", "update_one", "update_many", "replace_one",
                 "find_one_and_delete", "find_one_and_replace", "find_one_and_update",
                 "delete_one", "delete_many", "bulk_write", "aggregate", "drop", "rename",
                 "create_index", "create_indexes", "drop_index", "drop_indexes",
                 "insert", "update", "remove", "save", "find_and_modify"),
    Database: ("drop_collection", "create_collection", "rename_collection", "command"),
    mongomock.MongoClient: ("drop_database",),
}
#: ``bson.json_util.dumps`` as a ``json.dumps`` hook: the same text, with the C encoder doing
#: the plain JSON and bson only the ObjectIds and datetimes
_bson_default = functools.partial(bson.json_util.default,
                                  json_options=bson.json_util.DEFAULT_JSON_OPTIONS)
#: how often a file caught mid-write by an unlocked writer is re-read before giving up
_DECODE_RETRIES = 5
_synchronised = False


class LockedServerStore(ServerStore):
    """A mongomock server whose data lives in ``path``, shared safely between processes.

    Use it through :func:`locked_mongo_client`; every operation of a client on this store runs
    inside :meth:`operation`.
    """

    def __init__(self, path: str | Path):
        self._databases: dict[str, DatabaseStore] = {}
        self.path = Path(path).expanduser().resolve()
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open the LaunchPad lock file {self.lock_path} "
                             f"({exc.strerror}): its folder must be writable") from exc
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._dirty = False
        self._generation = -1
        self._stat: tuple[int, int, int] | None = None
        synchronise_mongomock()
        with self.operation(write=False):
            pass  # first read

    def __del__(self):
        fd = getattr(self, "_lock_fd", None)
        if fd is not None:
            with suppress(OSError):
                os.close(fd)

    @contextmanager
    def operation(self, write: bool) -> Iterator[None]:
        """Hold the file lock around one client operation (re-entrant: nested calls of
        mongomock's public methods share the outermost lock, re-read and write)."""
        with self._thread_lock:
            outermost = self._depth == 0
            if outermost:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            self._depth += 1
            try:
                if outermost:
                    self._refresh()
                self._dirty |= write
                yield
            finally:
                self._depth -= 1
                if outermost:
                    try:
                        if self._dirty:
                            self._save()
                    except OSError as exc:
                        self._generation, self._stat = -1, None  # re-read: the file is the truth
                        raise StoreError(f"cannot write the LaunchPad file {self.path} "
                                         f"({exc.strerror}); the last operation was not saved") from exc
                    finally:
                        self._dirty = False
                        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    # -- file state --------------------------------------------------------------------------
    def _file_stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _file_generation(self) -> int:
        raw = os.pread(self._lock_fd, 32, 0).strip()
        return int(raw) if raw.isdigit() else 0

    def _refresh(self) -> None:
        """Re-read the file if another process wrote it since this process last saw it."""
        generation, stat = self._file_generation(), self._file_stat()
        if (generation, stat) == (self._generation, self._stat):
            return
        if generation == self._generation and self._stat is not None:
            logger.warning("%s was rewritten by a process that does not lock it (plain rlaunch, "
                           "qlaunch or lpad?): its exit-time write may have rolled the LaunchPad "
                           "back; run FireWorks commands as `sc-inverse rlaunch|qlaunch|lpad`",
                           self.path)
        self._load(self._read() if stat is not None else {})
        self._generation, self._stat = generation, stat

    def _read(self) -> dict:
        for attempt in range(_DECODE_RETRIES):
            text = self.path.read_text(encoding="utf-8")
            try:
                data = bson.json_util.loads(text) if text.strip() else {}
                if isinstance(data, dict):
                    return data
                raise ValueError(f"top level is a {type(data).__name__}, not an object")
            except ValueError as exc:  # an unlocked writer may be half-way through
                if attempt == _DECODE_RETRIES - 1:
                    raise StoreError(
                        f"{self.path} is not a FireWorks LaunchPad file ({exc}); restore it, or "
                        "start an empty LaunchPad with: echo '{}' > " f"{self.path}") from exc
                time.sleep(0.1)
        raise AssertionError("unreachable")

    def _load(self, data: dict) -> None:
        """Replace the in-memory data by ``data``, keeping the DatabaseStore objects (clients'
        Database/Collection objects hold them) and each collection's in-memory indexes (the
        file format does not store indexes)."""
        for db_name in set(self._databases) - set(data):
            self._databases[db_name]._collections = {}
        for db_name, collections_dict in data.items():
            db = self[db_name]
            old = db._collections
            fresh = {}
            for col_name, col in collections_dict.items():
                store = CollectionStore(col.get("name", col_name))
                store._documents = collections.OrderedDict(
                    (key, doc) for key, doc in col.get("documents", []))
                if col_name in old:
                    store.indexes = old[col_name].indexes
                fresh[col_name] = store
            db._collections = fresh

    def to_dict(self) -> dict:
        """mongomock-persistence's file format: ``{db: {collection: {name, documents}}}``."""
        return {db_name: {col_name: {"name": col.name, "documents": list(col._documents.items())}
                          for col_name, col in db._collections.items()}
                for db_name, db in self._databases.items()}

    def _save(self) -> None:
        """Write the file as a whole: a temporary file renamed over it, so that another process
        reads either the old or the new content. Not fsynced (neither was mongomock-persistence):
        the rename protects against other processes, not against a crash of the machine."""
        text = json.dumps(self.to_dict(), default=_bson_default)  # bson's dumps, ~4x faster
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        self._generation += 1
        os.pwrite(self._lock_fd, f"{self._generation:<20d}\n".encode(), 0)
        self._stat = self._file_stat()


def locked_mongo_client(path: str | Path, *args: Any, **kwargs: Any) -> mongomock.MongoClient:
    """A mongomock client on the LaunchPad file ``path`` (FireWorks' ``MongoClient`` call
    signature after ``path``: host, port and pymongo keyword arguments, all ignored)."""
    kwargs.pop("_store", None)
    return mongomock.MongoClient(*args, _store=LockedServerStore(path), **kwargs)


def _server_store(obj: Any) -> Any:
    if isinstance(obj, Collection):
        obj = obj.database
    if isinstance(obj, Database):
        obj = obj.client
    return getattr(obj, "_store", None)


def _locked(method: Callable, write: bool) -> Callable:
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        store = _server_store(self)
        if not isinstance(store, LockedServerStore):
            return method(self, *args, **kwargs)
        with store.operation(write):
            return method(self, *args, **kwargs)

    wrapper.__sc_inverse_locked__ = True
    return wrapper


def synchronise_mongomock() -> None:
    """Route the data methods of mongomock's client, database and collection classes through
    :meth:`LockedServerStore.operation` (clients on other stores are unaffected). Idempotent."""
    global _synchronised
    if _synchronised:
        return
    for table, write in ((_READS, False), (_WRITES, True)):
        for cls, names in table.items():
            for name in names:
                method = cls.__dict__.get(name)
                if callable(method) and not getattr(method, "__sc_inverse_locked__", False):
                    setattr(cls, name, _locked(method, write))
    _synchronised = True


def in_memory_only() -> None:
    """Undo mongomock-persistence's process-wide patch that backs *every* mongomock client with
    the LaunchPad file (a maggma ``MemoryStore`` would otherwise load it and write its stale copy
    back at exit); only :class:`LockedServerStore` clients then use the file."""

    def __init__(self):
        self._databases = {}

    ServerStore.__init__ = __init__
