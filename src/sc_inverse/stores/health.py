"""Pre-flight checks of the configured store: reachable, intact, writable — in seconds, before
any computation, with one line that names the place and the fix.

* MongoDB (``store: mongo``, the LaunchPad): one ``ping`` per server with a 5 s server-selection
  timeout (pymongo's default is 30 s, after the calculation); authentication failures are
  reported as such. Messages name ``host:port`` (never the password, never a URI's
  credentials) and where the setting came from.
* Embedded: the data directory must be creatable and writable for commands that write; each
  montydb collection file is checked against its SQLite header (a file shorter than the page
  count its header records was truncated: a full disk, a copy cut short). Commands that only
  read (``query``) neither create nor write anything.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import struct
from pathlib import Path
from typing import Any

from sc_inverse.errors import SettingsError, StoreError
from sc_inverse.settings import ScInverseSettings, get_settings, read_yaml_mapping, setting_source
from sc_inverse.stores import get_job_store
from sc_inverse.stores.montydb_sqlite import storage_configured

logger = logging.getLogger(__name__)

#: server-selection (and connect) timeout of the reachability check
PING_TIMEOUT_S = 5.0
#: suffix of montydb's SQLite collection files
COLLECTION_SUFFIX = ".collection"
_SQLITE_MAGIC = b"SQLite format 3\x00"


def embedded_db_dir(settings: ScInverseSettings) -> Path:
    """Where the embedded store's files live (``<data_dir>/db``)."""
    return Path(settings.data_dir).expanduser().resolve() / "db"


def check_store(settings: ScInverseSettings | None = None, write: bool = True) -> str:
    """Raise :class:`StoreError` unless the configured store can be used now; returns a
    credential-free description of it (for a "results -> ..." line).

    ``write=False`` (read-only commands) checks without creating or writing anything.
    """
    settings = settings or get_settings()
    if settings.store == "embedded":
        db = embedded_db_dir(settings)
        _check_embedded(db, write)
        return f"embedded store {db}"
    lp_file = Path(settings.launchpad_file).expanduser()
    explicit = {"mongo_uri", "mongo_host", "mongo_port", "mongo_username", "mongo_password"}
    if not settings.jobflow_config and not (explicit & settings.model_fields_set) and lp_file.is_file():
        check_launchpad_file(lp_file, ping=False)  # the store's fields come from it
    targets = mongo_targets(settings)
    for where, client_kwargs in targets:
        ping_mongo(where, client_kwargs, fix=_mongo_fix(settings))
    return "MongoDB " + ", ".join(sorted({w for w, _ in targets}))


def _check_embedded(db: Path, write: bool) -> None:
    if write:
        try:
            db.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"embedded store {db}: cannot create it ({exc.strerror}); set "
                             "SC_INVERSE_DATA_DIR to a writable directory") from None
        if not os.access(db, os.W_OK | os.X_OK):
            raise StoreError(f"embedded store {db} is read-only; set SC_INVERSE_DATA_DIR to a "
                             "writable directory (`sc-inverse query` still reads it)")
    if db.is_dir():
        for file in sorted(db.rglob(f"*{COLLECTION_SUFFIX}")):
            check_collection_file(file)


def embedded_store_exists(settings: ScInverseSettings) -> bool:
    """Whether the embedded store has ever been written (reading a store that does not exist
    would create montydb's config files)."""
    return storage_configured(str(embedded_db_dir(settings)), "sqlite")


def check_collection_file(file: Path) -> None:
    """Raise :class:`StoreError` when a montydb SQLite collection file is not an SQLite
    database or is shorter than its header says (truncated). O(1): reads the 100-byte header."""
    size = file.stat().st_size
    if size == 0:
        return  # created, never written: SQLite treats it as an empty database
    with file.open("rb") as fh:
        header = fh.read(100)
    name = file.name[: -len(COLLECTION_SUFFIX)]
    fix = ("run `sc-inverse build` to rebuild it after moving the file away" if name in
           ("superconductors", "thermo") else "restore it from a backup or move it away "
           "(its documents are lost)")
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise StoreError(f"embedded store file {file} is not an SQLite database (corrupt); {fix}")
    page_size = struct.unpack(">H", header[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    n_pages, = struct.unpack(">I", header[28:32])
    change, valid_for = struct.unpack(">I", header[24:28])[0], struct.unpack(">I", header[92:96])[0]
    wal = file.with_name(file.name + "-wal")
    checkpointing = wal.is_file() and wal.stat().st_size > 0  # header may run ahead of the file
    if n_pages and change == valid_for and not checkpointing and size < n_pages * page_size:
        raise StoreError(f"embedded store file {file} is truncated ({size} of "
                         f"{n_pages * page_size} bytes; disk full or an interrupted copy?); {fix}")


def _mongo_fix(settings: ScInverseSettings) -> str:
    if settings.jobflow_config:
        return f"start MongoDB or fix JOB_STORE in {settings.jobflow_config}"
    if settings.mongo_uri:
        return f"start MongoDB or fix mongo_uri ({setting_source('mongo_uri')})"
    return ("start MongoDB (mongod), fix mongo_host/mongo_port or the LaunchPad file, or use "
            "SC_INVERSE_STORE=embedded")


def mongo_targets(settings: ScInverseSettings) -> list[tuple[str, dict[str, Any]]]:
    """``(host:port description, MongoClient kwargs)`` of every MongoDB server the job store
    uses (docs store and additional stores)."""
    store = get_job_store(settings)
    out: dict[str, dict[str, Any]] = {}
    for s in [store.docs_store, *store.additional_stores.values()]:
        uri = getattr(s, "uri", None)
        if uri:
            out.setdefault(_uri_hosts(uri), {"host": uri, "database": s.database})
        elif hasattr(s, "host"):
            kw = {"host": s.host, "port": int(s.port), "database": s.database}
            if getattr(s, "username", ""):
                kw.update(username=s.username, password=s.password)
                if getattr(s, "auth_source", None):
                    kw["authSource"] = s.auth_source
            out.setdefault(f"{s.host}:{s.port}", kw)
    return list(out.items())


def _uri_hosts(uri: str) -> str:
    """host:port list of a MongoDB URI without its credentials."""
    from pymongo.uri_parser import parse_uri

    try:
        nodes = parse_uri(uri, connect_timeout=PING_TIMEOUT_S)["nodelist"]
    except Exception:  # noqa: BLE001 - a malformed URI (or SRV lookup failure) is named, not shown
        rest = uri.split("://", 1)[-1]
        return rest.rsplit("@", 1)[-1].split("/", 1)[0].split("?", 1)[0] or "(unparsable URI)"
    return ",".join(f"{h}:{p}" for h, p in nodes)


def ping_mongo(where: str, client_kwargs: dict[str, Any], fix: str,
               timeout_s: float = PING_TIMEOUT_S) -> None:
    """One ``ping`` within ``timeout_s``; :class:`StoreError` naming ``where`` and ``fix``."""
    from pymongo import MongoClient
    from pymongo.errors import ConfigurationError, OperationFailure, PyMongoError

    ms = int(timeout_s * 1000)
    kwargs = dict(client_kwargs)
    database = kwargs.pop("database", None)
    if "port" in kwargs:  # a refused port fails in milliseconds (pymongo retries until its timeout)
        try:
            socket.create_connection((kwargs["host"], kwargs["port"]), timeout=timeout_s).close()
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise StoreError(f"MongoDB at {where} not reachable ({why}); {fix}") from None
    try:
        client = MongoClient(serverSelectionTimeoutMS=ms, connectTimeoutMS=ms,
                             socketTimeoutMS=ms, **kwargs)
    except (ConfigurationError, ValueError, TypeError) as exc:
        raise StoreError(f"MongoDB at {where}: invalid connection settings "
                         f"({_first_line(exc)}); {fix}") from None
    try:
        client.admin.command("ping")
        if database and (kwargs.get("username") or "@" in str(kwargs.get("host", ""))):
            client[database].list_collection_names()  # credentials are checked on first use
    except OperationFailure as exc:
        raise StoreError(f"MongoDB at {where} refused access ({_first_line(exc)}); check the "
                         "username/password settings") from None
    except PyMongoError as exc:
        why = re.split(r" \(configured timeouts|, Timeout: ", _first_line(exc))[0][:120]
        raise StoreError(f"MongoDB at {where} not reachable within {timeout_s:g} s ({why}); "
                         f"{fix}") from None
    finally:
        client.close()


#: fields FireWorks' LaunchPad.from_dict reads, and their types
LAUNCHPAD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "host": str, "port": int, "name": str, "username": str, "password": str, "logdir": str,
    "strm_lvl": str, "user_indices": list, "wf_user_indices": list, "authsource": str,
    "uri_mode": bool, "mongoclient_kwargs": dict,
}


_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list",
               dict: "a mapping"}


def check_launchpad_file(file: Path | str, ping: bool = True) -> str:
    """Validate a FireWorks LaunchPad YAML (syntax, field types, ``host`` present) and, with
    ``ping``, reach its MongoDB within 5 s; returns a description without credentials.

    Unknown fields are logged (FireWorks ignores them; a typo there silently uses a default).
    With ``MONGOMOCK_SERVERSTORE_FILE`` set FireWorks keeps the LaunchPad in that file
    (embedded mode): nothing is pinged.
    """
    file = Path(file).expanduser()
    if not file.is_file():
        raise SettingsError(f"LaunchPad file {file} does not exist (create it from the README's "
                            "my_launchpad.yaml, or pass --launchpad)")
    data, lines = read_yaml_mapping(file, "LaunchPad file")
    for key, value in data.items():
        expected = LAUNCHPAD_FIELDS.get(str(key))
        at = f"LaunchPad file {file} line {lines.get(str(key), '?')}"
        if expected is None:
            logger.warning("%s: unknown field %r (FireWorks ignores it)", at, key)
        elif value is not None and (not isinstance(value, expected)
                                    or (expected is int and isinstance(value, bool))):
            raise SettingsError(f"{at}: field {key} = {value!r} must be {_TYPE_NAMES[expected]}")
    if not data.get("host"):
        raise SettingsError(f"LaunchPad file {file}: no 'host' field (the MongoDB host, or a "
                            "mongodb:// URI with uri_mode: true)")
    mock = os.environ.get("MONGOMOCK_SERVERSTORE_FILE")
    if mock:
        return f"embedded LaunchPad (MONGOMOCK_SERVERSTORE_FILE={mock})"
    if data.get("uri_mode"):
        where, kwargs = _uri_hosts(data["host"]), {"host": data["host"], "database": data.get("name")}
    else:
        where = f"{data['host']}:{data.get('port') or 27017}"
        kwargs = {"host": data["host"], "port": int(data.get("port") or 27017),
                  "database": data.get("name")}
        if data.get("username"):
            kwargs.update(username=data["username"], password=data.get("password") or "")
            if data.get("authsource"):
                kwargs["authSource"] = data["authsource"]
    if ping:
        ping_mongo(where, kwargs, fix=f"start MongoDB or fix host/port in {file}")
    return f"LaunchPad {where}/{data.get('name') or 'fireworks'}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


__all__ = ["LAUNCHPAD_FIELDS", "PING_TIMEOUT_S", "check_collection_file", "check_launchpad_file",
           "check_store", "embedded_db_dir", "embedded_store_exists", "mongo_targets",
           "ping_mongo"]
