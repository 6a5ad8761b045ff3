from collections import Counter

import pytest

from sc_inverse.data import load_jarvis_sc
from sc_inverse.errors import InputError


def test_split_sizes_and_withheld_test_tc():
    recs = load_jarvis_sc()
    assert len(recs) == 1056
    assert Counter(r["split"] for r in recs) == {"train": 846, "val": 105, "test": 105}
    assert all(r["tc_K"] is None for r in recs if r["split"] == "test")
    assert all(r["tc_K"] is not None for r in recs if r["split"] == "train")


def test_structures_parse_and_match_formula():
    for r in load_jarvis_sc("val"):
        assert r["structure"].composition.reduced_formula
        assert len(r["structure"]) > 0


def test_unknown_split():
    with pytest.raises(InputError, match="unknown split"):
        load_jarvis_sc("training")
