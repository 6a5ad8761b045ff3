"""MLIP pre-relaxation: recorded quantities, cached references, failures, and real CHGNet."""

from __future__ import annotations

import json
import math

import pytest
from ase.calculators.emt import EMT
from screening_testutils import cu3al, fcc

from sc_inverse.errors import ModelLoadError
from sc_inverse.screening.relax import ElementalReferences, MlipRelaxer, relax_and_score


def test_relax_records_energy_steps_volume_change():
    strained = fcc("Cu", 3.8)  # EMT Cu relaxes to a ~ 3.59 A
    strained.perturb(0.05)
    r = MlipRelaxer(EMT(), fmax=0.02, steps=300).relax(strained)
    assert r.error is None and r.converged and r.steps > 3
    assert r.volume_change_frac < -0.1  # compressed towards equilibrium
    assert r.energy_per_atom_eV < r.initial_energy_per_atom_eV
    assert math.isclose(r.structure.lattice.a, 3.59, abs_tol=0.05)
    assert set(r.summary()) >= {"energy_eV", "steps", "volume_change_frac", "converged", "seconds"}


def test_failure_is_reported_not_raised():
    class Broken(EMT):
        def calculate(self, *a, **k):
            raise RuntimeError("boom")

    r = MlipRelaxer(Broken()).relax(fcc())
    assert r.structure is None and "boom" in r.error


def test_unknown_calculator_is_model_load_error():
    with pytest.raises(ModelLoadError, match="NotAPotential"):
        _ = MlipRelaxer("NotAPotential").calculator


def test_references_are_computed_once_and_cached(tmp_path):
    cache = tmp_path / "refs.json"
    relaxer = MlipRelaxer(EMT())
    refs = ElementalReferences(relaxer, cache_file=cache)
    e_cu = refs.energy_per_atom("Cu")
    cached = json.loads(cache.read_text())["Cu"]
    assert cached["energy_per_atom_eV"] == e_cu and cached["prototype"]

    class NoCalc(MlipRelaxer):
        def relax(self, *a, **k):  # would be called only if the cache were ignored
            raise AssertionError("reference recomputed")

    again = ElementalReferences(NoCalc(EMT()), cache_file=cache)
    assert again.energy_per_atom("Cu") == e_cu
    # a relaxed element has zero formation energy against its own reference
    out = relax_and_score({"cu": fcc("Cu", 3.59), "cu3al": cu3al()}, relaxer, refs)
    assert abs(out["cu"]["e_form_eV_per_atom"]) < 0.02
    assert out["cu3al"]["e_above_hull_eV_per_atom"] is not None


@pytest.mark.slow
@pytest.mark.ci
def test_chgnet_relaxation_and_formation_energy(tmp_path):
    """Real CHGNet (weights in its wheel): a strained TiN relaxes and has E_form < 0."""
    from pymatgen.core import Lattice, Structure

    tin = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.4), ["Ti", "N"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    relaxer = MlipRelaxer("CHGNet", steps=200)
    refs = ElementalReferences(relaxer, cache_file=tmp_path / "chgnet_refs.json")
    out = relax_and_score({"tin": tin}, relaxer, refs)["tin"]
    r = out["relax"]
    assert r.error is None and r.steps > 0 and r.volume_change_frac < 0  # 4.4 A -> ~4.25 A
    assert -2.5 < out["e_form_eV_per_atom"] < -1.0  # DFT (PBE) ~ -1.8 eV/atom


def test_shipped_chgnet_references_seed_the_cache_only_for_the_default_relaxer(tmp_path):
    from sc_inverse.screening.relax import SHIPPED_REFERENCES

    shipped = json.loads(SHIPPED_REFERENCES.read_text())
    assert {"Al", "Nb", "N", "B", "Mg"} <= set(shipped)

    class NoCalc(MlipRelaxer):
        def relax(self, *a, **k):
            raise AssertionError("a shipped reference was recomputed")

    refs = ElementalReferences(NoCalc("CHGNet"), cache_file=tmp_path / "r.json")
    assert refs.energy_per_atom("Nb") == shipped["Nb"]["energy_per_atom_eV"]
    assert "Nb" not in ElementalReferences(NoCalc("CHGNet", fmax=0.01), cache_file=tmp_path / "s.json").refs
    assert "Nb" not in ElementalReferences(MlipRelaxer(EMT()), cache_file=tmp_path / "t.json").refs


def test_hull_is_built_per_chemical_system(tmp_path):
    """Candidates of different systems must not pull in compounds of the union of elements."""
    from sc_inverse.screening.relax import e_above_hull

    refs = ElementalReferences(MlipRelaxer(EMT()), cache_file=tmp_path / "r.json")
    asked: list[set] = []
    refs.compound_entries = lambda els, max_atoms=24: asked.append(set(els)) or []
    refs.refs.update({el: {"energy_per_atom_eV": 0.0, "prototype": "fcc"} for el in ("Cu", "Al", "Ni")})
    from pymatgen.core import Composition

    out = e_above_hull({"a": (Composition("CuAl"), -0.1), "b": (Composition("Ni"), 0.05)}, refs)
    assert sorted(map(sorted, asked)) == [["Al", "Cu"], ["Ni"]]
    assert out["a"] == 0.0 and abs(out["b"] - 0.05) < 1e-9
