"""Criteria: parsing, defaults, verdicts (a missing value is never a pass), cost order."""

from __future__ import annotations

import json

import pytest

from sc_inverse.errors import InputError
from sc_inverse.screening.criteria import (
    Criterion,
    default_criteria,
    load_criteria,
    order_by_cost,
    parse_criteria,
)


def test_default_is_the_papers_screen():
    crit = {c.label: c for c in default_criteria()}
    assert set(crit) == {"tc_K > 5", "gap_eV < 0.05", "e_form_eV_per_atom < 0", "mlip_dynamically_stable"}
    assert [c.label for c in default_criteria() if c.mode == "advisory"] == ["mlip_dynamically_stable"]
    assert crit["e_form_eV_per_atom < 0"].stage == "mlip"
    assert crit["tc_K > 5"].stage == "ml"


@pytest.mark.parametrize(
    ("comparison", "value", "expected"),
    [(">", 6.0, "pass"), (">", 5.0, "fail"), (">=", 5.0, "pass"), ("<", 4.0, "pass"), ("<=", 5.1, "fail"),
     (">", float("nan"), "not_evaluated"), (">", None, "not_evaluated"), ("<", float("inf"), "not_evaluated")],
)
def test_verdicts(comparison, value, expected):
    assert Criterion(key="tc_K", comparison=comparison, threshold=5.0).verdict(value) == expected


def test_aliases_and_files(tmp_path):
    items = [{"model": "tc_supercon_radius", "key": "tc_K", "op": "gt", "threshold": 3},
             {"predictor": "mlip", "key": "e_above_hull_eV_per_atom", "comparison": "<=", "threshold": 0.1}]
    (tmp_path / "c.json").write_text(json.dumps(items))
    (tmp_path / "c.yaml").write_text("criteria:\n" + "".join(
        f"  - {{predictor: {i.get('model', i.get('predictor'))}, key: {i['key']}, comparison: "
        f"'{'>' if i.get('op') else '<='}', threshold: {i['threshold']}}}\n" for i in items))
    for f in ("c.json", "c.yaml"):
        crit = load_criteria(tmp_path / f)
        assert [c.label for c in crit] == ["tc_K > 3", "e_above_hull_eV_per_atom <= 0.1"]
        assert [c.stage for c in crit] == ["ml", "mlip"]


@pytest.mark.parametrize(
    "bad",
    [[], [{"key": "tc_K", "comparison": "==", "threshold": 1}],
     [{"key": "tc_K", "comparison": ">"}],
     [{"predictor": "mlip", "key": "tc_K", "comparison": ">", "threshold": 1}],
     [{"key": "tc_K", "comparison": ">", "threshold": 1}, {"key": "tc_K", "comparison": ">", "threshold": 1}]],
)
def test_invalid_criteria_are_input_errors(bad):
    with pytest.raises(InputError):
        parse_criteria(bad)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_criteria(tmp_path / "x.yaml")


def test_cheapest_first():
    crit = parse_criteria([{"predictor": "mlip", "comparison": "<", "threshold": 0},
                           {"key": "tc_K", "comparison": ">", "threshold": 5}])
    assert [c.stage for c in order_by_cost(crit)] == ["ml", "mlip"]
