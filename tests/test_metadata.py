from pathlib import Path

from jobflow import Flow, job

from sc_inverse.metadata import iter_jobs, set_categories, tag_candidate
from sc_inverse.qe.categories import QE_MAKERS, qe_category_rules
from sc_inverse.qe.flows import ElectronPhononTcMaker
from sc_inverse.qe.jobs import QeScfMaker
from sc_inverse.records import load_structure

AL = load_structure(Path(__file__).parents[1] / "examples" / "al_fcc" / "Al.pwi")[0]


@job
def noop(x: float) -> float:
    return x


def test_set_categories_by_maker_class_and_name():
    flow = ElectronPhononTcMaker(preset="test", relax=True).make(AL)
    set_categories(flow, qe_category_rules())
    assert {j.config.manager_config.get("_category") for j in flow.jobs} == {"qe"}
    nested = Flow([noop(1.0), Flow([QeScfMaker(preset="test").make(AL)])])
    set_categories(nested, {QeScfMaker: "scf-nodes", "noop": "cpu"})
    assert [j.config.manager_config.get("_category") for j in iter_jobs(nested)] == ["cpu", "scf-nodes"]
    assert qe_category_rules(None) == {} and set(qe_category_rules("x")) == set(QE_MAKERS)


def test_tag_candidate_drops_missing_predictions():
    j = noop(1.0)
    tag_candidate(j, 7, origin="user", predictions={"tc_K": 3.0, "e_gap_eV": None}, note="x")
    assert j.metadata == {"candidate_id": "7", "origin": "user", "predictions": {"tc_K": 3.0},
                          "note": "x"}
