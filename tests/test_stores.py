"""Store selection (embedded MontyStore vs MongoDB + GridFS) and the batched EmbeddedStore."""

from __future__ import annotations

import ast
import logging
import re
from pathlib import Path

import mongomock_ng as mongomock  # the fork maggma's MemoryStore uses (pymongo 4.x API)
import montydb
import montydb.storage.sqlite
import numpy as np
import pytest
from jobflow import Flow, job
from maggma.stores import GridFSStore, MongoStore, MontyStore

import sc_inverse
from sc_inverse.errors import StoreError
from sc_inverse.settings import ScInverseSettings, get_settings
from sc_inverse.stores import (
    EmbeddedStore,
    describe_store,
    get_job_store,
    get_store,
    mongo_fields,
    montydb_sqlite,
)


@job(data=["a2f"])
def big_output(n: int) -> dict:
    """An output with a large array that jobflow must route to the 'data' store."""
    return {"tc_K": 1.5, "a2f": np.linspace(0, 1, n).tolist()}


@job
def add_one(x: float) -> float:
    return x + 1


def _run(flow, store):
    from sc_inverse.execution import run_flow_locally

    return run_flow_locally(flow, store=store, log=False, raise_immediately=True)


# ---------------------------------------------------------------------------------------------
# embedded
# ---------------------------------------------------------------------------------------------
def test_embedded_default_is_montystore_with_data_store(tmp_path):
    store = get_job_store()
    assert isinstance(store.docs_store, EmbeddedStore) and isinstance(store.docs_store, MontyStore)
    assert store.docs_store.storage == "sqlite"
    assert set(store.additional_stores) == {"data"}
    assert str(tmp_path / "sc_inverse_data") in store.docs_store.database_path


def test_embedded_flow_outputs_persist_and_blobs_go_to_data_store():
    j1 = big_output(5000)
    j2 = add_one(j1.output["tc_K"])
    _run(Flow([j1, j2]), get_job_store())
    # a fresh store object (new process in real life) sees the same documents on disk
    store = get_job_store()
    with store:
        assert store.count() == 2
        raw = store.docs_store.query_one({"uuid": j1.uuid})
        assert set(raw["output"]["a2f"]) >= {"blob_uuid", "store"}  # only a reference here
        assert store.additional_stores["data"].count() == 1
        out = store.query_one({"uuid": j1.uuid}, load=True)["output"]
        assert len(out["a2f"]) == 5000
        assert store.get_output(j2.uuid) == 2.5


def test_embedded_update_is_an_upsert_by_key(tmp_path):
    s = EmbeddedStore("c", database_path=str(tmp_path / "db"), key="uuid")
    with s:
        s.update([{"uuid": "a", "index": 1, "x": 1}, {"uuid": "b", "index": 1, "x": 2}],
                 key=["uuid", "index"])
        s.update([{"uuid": "a", "index": 1, "x": 10}, {"uuid": "a", "index": 2, "x": 3},
                  {"uuid": "c", "index": 1, "x": 4}, {"uuid": "c", "index": 1, "x": 5}],
                 key=["uuid", "index"])
        assert s.count() == 4
        assert s.query_one({"uuid": "a", "index": 1})["x"] == 10
        assert s.query_one({"uuid": "c"})["x"] == 5  # last copy in a batch wins
        s.update({"uuid": "d", "x": 7})  # default key, single doc
        assert s.query_one({"uuid": "d"})["x"] == 7
        from pymatgen.core import Lattice, Structure

        al = Structure(Lattice.cubic(4.05), ["Al"], [[0, 0, 0]])
        s.update({"uuid": "e", "x": np.float64(1.5), "s": al})  # non-BSON values: jsanitized
        e = s.query_one({"uuid": "e"})
        assert e["x"] == 1.5 and Structure.from_dict(e["s"]) == al
        with pytest.raises(StoreError, match="key field 'uuid'"):
            s.update([{"x": 1}])


def test_embedded_fast_query_matches_montydb(tmp_path):
    s = EmbeddedStore("c", database_path=str(tmp_path / "db"), key="uuid")
    docs = [{"uuid": f"u{i}", "grp": i % 3, "out": {"v": float(-i), "k": "elph" if i % 2 else "scf"},
             "tags": ["a", f"t{i % 4}"]} for i in range(40)]
    with s:
        s.update(docs)
        slow = MontyStore.query  # montydb's own engine as the reference
        for crit, kw in [({}, {}), ({"grp": 1}, {}), ({"out.k": "elph"}, {"properties": ["uuid", "out.v"]}),
                         ({"grp": 2}, {"sort": {"out.v": 1}, "skip": 2, "limit": 3}),
                         ({"out.v": {"$lt": -30}}, {}), ({"uuid": {"$in": ["u1", "u5", "x"]}}, {}),
                         ({"grp": 0, "uuid": {"$in": ["u3", "u4"]}}, {"properties": ["grp"]}),
                         ({"nope": None}, {}), ({"grp": None}, {}), ({"tags": "t1"}, {}),
                         ({"tags": {"$in": ["t2", "zz"]}}, {}), ({"nope": {"$in": [None]}}, {})]:
            fast = list(s.query(crit, **kw))
            ref = list(slow(s, criteria=crit, **kw))
            if "sort" not in kw:
                fast, ref = (sorted(x, key=lambda d: d["_id"]) for x in (fast, ref))
            assert [d.get("uuid") for d in fast] == [d.get("uuid") for d in ref]
            assert fast == ref
        assert s.distinct("grp") == [0, 1, 2] or sorted(s.distinct("grp")) == [0, 1, 2]


# ---------------------------------------------------------------------------------------------
# montydb internals: pinned, checked, used in one module only
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def fresh_montydb_check():
    montydb_sqlite._internals.cache_clear()
    yield
    montydb_sqlite._internals.cache_clear()


def test_installed_montydb_is_supported_and_pinned_alike():
    montydb_sqlite.check_montydb()
    low, high = montydb_sqlite.SUPPORTED
    assert low <= montydb_sqlite._version_tuple(montydb.__version__) < high
    tomllib = pytest.importorskip("tomllib")
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    assert montydb_sqlite.REQUIREMENT in deps


@pytest.mark.parametrize("version", ["2.6.0", "2.5.5", "3.0.1"])
def test_unsupported_montydb_version_fails_clearly(monkeypatch, tmp_path, fresh_montydb_check,
                                                  version):
    monkeypatch.setattr(montydb, "__version__", version)
    fix = re.escape("pip install 'montydb>=2.5.6,<2.6'")
    with pytest.raises(StoreError, match=rf"montydb {version} is not supported.*{fix}"):
        montydb_sqlite.check_montydb()
    with pytest.raises(StoreError, match="not supported"):
        EmbeddedStore("c", database_path=str(tmp_path / "db")).connect()


def test_montydb_without_a_used_internal_fails_clearly(monkeypatch, fresh_montydb_check):
    monkeypatch.delattr(montydb.storage.sqlite.SQLiteKVEngine, "read_all")
    with pytest.raises(StoreError, match=r"has no montydb\.storage\.sqlite\.SQLiteKVEngine\.read_all"):
        montydb_sqlite.check_montydb()


def test_only_the_compat_module_imports_montydb():
    src = Path(sc_inverse.__file__).parent
    importers = set()
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "montydb" or n.startswith("montydb.") for n in names):
                importers.add(path.relative_to(src).as_posix())
    assert importers == {"stores/montydb_sqlite.py"}


# ---------------------------------------------------------------------------------------------
# MongoDB (mongomock server shared by every client, like a real server)
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def mock_mongo(monkeypatch):
    import maggma.stores.gridfs as mg
    import maggma.stores.mongolike as ml
    from mongomock_ng.gridfs import enable_gridfs_integration
    from mongomock_ng.store import ServerStore

    enable_gridfs_integration()
    server = ServerStore()
    calls = []

    def client(*args, **kwargs):
        calls.append((args, kwargs))
        return mongomock.MongoClient(_store=server)

    monkeypatch.setattr(ml, "MongoClient", client)
    monkeypatch.setattr(mg, "MongoClient", client)
    return calls


def _mongo_env(monkeypatch, **env):
    monkeypatch.setenv("SC_INVERSE_STORE", "mongo")
    for k, v in env.items():
        monkeypatch.setenv(f"SC_INVERSE_{k.upper()}", str(v))
    get_settings.cache_clear()


def test_mongo_selected_by_configuration_only(monkeypatch, mock_mongo, caplog):
    _mongo_env(monkeypatch, mongo_host="db.example.org", mongo_port=27018,
               mongo_username="alice", mongo_password="s3cret-pw", mongo_database="scdb")
    caplog.set_level(logging.DEBUG)
    store = get_job_store()
    assert type(store.docs_store) is MongoStore
    assert isinstance(store.additional_stores["data"], GridFSStore)
    assert store.docs_store.host == "db.example.org" and store.docs_store.database == "scdb"
    j1 = big_output(3000)
    _run(Flow([j1, add_one(j1.output["tc_K"])]), store)
    fresh = get_job_store()
    with fresh:
        assert fresh.count() == 2
        assert len(fresh.query_one({"uuid": j1.uuid}, load=True)["output"]["a2f"]) == 3000
        assert fresh.additional_stores["data"].count() == 1
    assert any(kw.get("password") == "s3cret-pw" for _, kw in mock_mongo)  # credentials used ...
    assert "s3cret-pw" not in caplog.text  # ... never logged
    assert "s3cret-pw" not in describe_store(store)
    assert type(get_store("superconductors")) is MongoStore


def test_mongo_fields_from_launchpad_file(monkeypatch, tmp_path):
    lp = tmp_path / "lp.yaml"
    lp.write_text("host: mongo.cluster\nport: 27019\nname: fwdb\nusername: bob\npassword: pw\n")
    _mongo_env(monkeypatch, launchpad_file=lp)
    f = mongo_fields(get_settings())
    assert f == {"host": "mongo.cluster", "port": 27019, "database": "fwdb", "username": "bob",
                 "password": "pw"}
    lp.write_text("host: mongodb+srv://u:p@x.example.org/fwdb\nuri_mode: true\nname: fwdb\n")
    assert mongo_fields(get_settings())["uri"].startswith("mongodb+srv://")
    # explicit settings win over the launchpad file
    s = ScInverseSettings(store="mongo", launchpad_file=lp, mongo_host="other")
    assert mongo_fields(s)["host"] == "other"


def test_mongo_from_jobflow_yaml(monkeypatch, tmp_path, mock_mongo):
    cfg = tmp_path / "jobflow.yaml"
    cfg.write_text(
        "JOB_STORE:\n  docs_store:\n    type: MongoStore\n    database: jf\n    collection_name: outputs\n"
        "  additional_stores:\n    data:\n      type: GridFSStore\n      database: jf\n"
        "      collection_name: outputs_blobs\n"
    )
    _mongo_env(monkeypatch, jobflow_config=cfg)
    store = get_job_store()
    assert store.docs_store.database == "jf"
    assert isinstance(store.additional_stores["data"], GridFSStore)
    sc = get_store("superconductors")
    assert sc.database == "jf" and sc.collection_name == "superconductors"
    _run(add_one(1.0), store)
    with store:
        assert store.count() == 1


def test_bad_jobflow_config_is_a_store_error(monkeypatch, tmp_path):
    _mongo_env(monkeypatch, jobflow_config=tmp_path / "missing.yaml")
    with pytest.raises(StoreError, match="missing.yaml"):
        get_job_store()
    bad = tmp_path / "bad.yaml"
    bad.write_text("JOB_STORE: {other: 1}\n")
    _mongo_env(monkeypatch, jobflow_config=bad)
    with pytest.raises(StoreError, match="docs_store"):
        get_job_store()
