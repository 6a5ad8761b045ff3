from sc_inverse.pipeline.chemical_space import covered_elements, resolve_chemical_space


def test_chemical_space_from_the_pseudopotential_library(tmp_path):
    from sc_inverse.generative.model import load_model  # torch

    for name in ("Mg.pz-n-vbc.UPF", "B.pz-vbc.UPF", "N.pbe-kjpaw.UPF"):
        (tmp_path / name).write_text("stub")  # only the file names matter here
    assert covered_elements(["Mg", "B", "N", "C"], "test", str(tmp_path)) == ["Mg", "B"]
    vocab = load_model()[0].cfg.elements
    space = resolve_chemical_space("auto", "test", str(tmp_path))
    assert sorted(space) == ["B", "Mg"] and all(e in vocab for e in space)
    assert resolve_chemical_space("all", "test", str(tmp_path)) is None
    assert resolve_chemical_space("Mg, B,C", "test") == ["Mg", "B", "C"]
    # no library at all: no restriction (DFT then reports the missing pseudopotentials)
    assert resolve_chemical_space("auto", "test", str(tmp_path / "missing")) is None
    assert resolve_chemical_space(["Mg", "B"], "test") == ["Mg", "B"]
