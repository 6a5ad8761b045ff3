"""`sc-inverse build` and `sc-inverse query` on the configured (embedded) store."""

from __future__ import annotations

import csv
import io
import json

from click.testing import CliRunner
from pymatgen.core import Structure

from factories import elph_task, scf_task
from sc_inverse.cli import cli
from sc_inverse.thermo.jobs import REFERENCE_ROLE


def _seed(tasks):
    docs = [elph_task(i, candidate_id=f"m{i}") for i in range(6)]
    # scf energies for the hull of every material: m0, m1, m5 above their elements' tie line
    # (E_above_hull 0.5, 0.1, 0.25 eV/atom), the others below it (on the hull: 0)
    for i, energy in enumerate([-6.0, -6.8, -8.5, -9.5, -10.5, -7.5]):
        s = Structure.from_dict(docs[i]["output"]["structure"])
        docs.append(scf_task(s, energy, 100 + i, {"candidate_id": f"m{i}"}))
    for el, e in [("Nb", -4.0), ("N", -3.0), ("V", -4.0), ("Al", -2.0), ("Mg", -1.0), ("Ti", -4.0),
                  ("C", -3.0), ("Zr", -4.0), ("B", -3.0), ("Ta", -5.0), ("P", -3.0)]:
        s = Structure.from_dict(docs[0]["output"]["structure"]).copy()
        s.replace_species({sp: el for sp in s.composition.elements})
        docs.append(scf_task(s, 2 * e, 200, {"hull_role": REFERENCE_ROLE}))
    tasks.update(docs, key=["uuid", "index"])
    return docs


def test_build_then_query_formats_and_filters():
    from sc_inverse.stores import get_job_store

    with get_job_store() as store:
        docs = _seed(store.docs_store)
    r = CliRunner().invoke(cli, ["build"])
    assert r.exit_code == 0, r.output
    assert "TcBuilder: 6 source docs, 0 skipped (malformed), 0 skipped (blobs missing), 6 processed" \
        in r.output
    assert "HullBuilder" in r.output
    r2 = CliRunner().invoke(cli, ["build"])
    assert "6 source docs, 0 skipped (malformed), 0 skipped (blobs missing), 0 processed" in r2.output
    rows = json.loads(CliRunner().invoke(cli, ["query", "--format", "json"]).output)
    assert [r["material_id"] for r in rows] == sorted(
        (f"m{i}" for i in range(6)), key=lambda m: -docs[int(m[1:])]["output"]["tc_K"])
    assert all(r["e_above_hull_eV_per_atom"] >= 0 for r in rows)
    assert sorted(round(r["e_above_hull_eV_per_atom"], 6) for r in rows) == [0, 0, 0, 0.1, 0.25, 0.5]
    tc_min = sorted(r["tc_K"] for r in rows)[3]
    hot = json.loads(CliRunner().invoke(cli, ["query", "--tc-min", str(tc_min), "--format", "json"]).output)
    assert len(hot) == 3 and all(r["tc_K"] >= tc_min for r in hot)
    stable = json.loads(CliRunner().invoke(
        cli, ["query", "--stable-only", "--ehull-max", "100", "--format", "json"]).output)
    assert {r["material_id"] for r in stable} == {r["material_id"] for r in rows if r["dynamically_stable"]}
    assert "m0" not in {r["material_id"] for r in stable}  # m0 has an imaginary mode
    ehull = sorted(r["e_above_hull_eV_per_atom"] for r in rows)[1]
    low = json.loads(CliRunner().invoke(cli, ["query", "--ehull-max", str(ehull), "--format", "json"]).output)
    assert len(low) == sum(r["e_above_hull_eV_per_atom"] <= ehull for r in rows) < len(rows)
    table = CliRunner().invoke(cli, ["query"]).output
    assert table.splitlines()[0].split()[:3] == ["material_id", "formula", "spacegroup"]
    assert "m3" in table
    rows_csv = list(csv.DictReader(io.StringIO(CliRunner().invoke(cli, ["query", "--format", "csv"]).output)))
    assert len(rows_csv) == 6 and float(rows_csv[0]["tc_K"]) == rows[0]["tc_K"]


def test_query_on_empty_store_prints_header_only():
    r = CliRunner().invoke(cli, ["query", "--format", "json"])
    assert r.exit_code == 0 and json.loads(r.output) == []


def test_run_builders_and_query_on_mongodb_stores():
    """The MongoDB path (maggma MemoryStore = mongomock): same helpers, stores passed in."""
    from jobflow import JobStore
    from maggma.stores import MemoryStore

    from sc_inverse.builders import query_results, run_builders

    js = JobStore(MemoryStore("outputs"), additional_stores={"data": MemoryStore("blobs")})
    sc, th = MemoryStore("superconductors"), MemoryStore("thermo")
    js.connect()
    _seed(js.docs_store)
    summary = run_builders(js, sc, th)
    assert summary["TcBuilder"]["processed"] == 6 and summary["HullBuilder"]["errors"] == 0
    rows = query_results(tc_min=0.0, superconductors=sc, thermo=th)
    assert len(rows) == 6 and all(r["e_form_eV_per_atom"] is not None for r in rows)


def test_build_collections_job_at_the_end_of_a_flow():
    from jobflow import Flow, job

    from sc_inverse.builders.jobs import build_collections
    from sc_inverse.execution import run_flow_locally
    from sc_inverse.stores import get_job_store

    @job
    def fake_elph(i: int) -> dict:  # stands for a QE elph job: returns a real ElphTaskDoc dict
        return elph_task(i)["output"]

    jobs = [fake_elph(i) for i in range(3)]
    for i, j in enumerate(jobs):
        j.update_metadata({"candidate_id": f"x{i}", "origin": "generated"})
    b = build_collections(wait_for=[j.output for j in jobs], only=["TcBuilder"])
    store = get_job_store()
    run_flow_locally(Flow([*jobs, b]), store=store, log=False, raise_immediately=True)
    with store:
        summary = store.get_output(b.uuid)
    assert summary["TcBuilder"]["processed"] == 3
    rows = json.loads(CliRunner().invoke(cli, ["query", "--format", "json"]).output)
    assert sorted(r["material_id"] for r in rows) == ["x0", "x1", "x2"]
