import pytest

from sc_inverse.errors import InputError
from sc_inverse.settings import ScInverseSettings


def test_env_overrides_yaml(tmp_path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("pw_cmd: /opt/qe/pw.x\nmpi_prefix: mpirun -np 2\n")
    monkeypatch.setenv("SC_INVERSE_CONFIG", str(cfg))
    monkeypatch.setenv("SC_INVERSE_MPI_PREFIX", "srun")
    s = ScInverseSettings()
    assert s.pw_cmd == "/opt/qe/pw.x"
    assert s.mpi_prefix == "srun"


def test_missing_config_file_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("SC_INVERSE_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(InputError, match="missing.yaml"):
        ScInverseSettings()


@pytest.mark.parametrize("raw, expected", [("auto", "auto"), ("All", "all"), ("Mg, B,C", ["Mg", "B", "C"]),
                                           ('["Mg", "B"]', ["Mg", "B"])])
def test_run_elements_from_the_environment(monkeypatch, raw, expected):
    monkeypatch.setenv("SC_INVERSE_RUN_ELEMENTS", raw)
    assert ScInverseSettings().run_elements == expected


def test_run_defaults_differ_from_the_single_structure_defaults_on_purpose():
    s = ScInverseSettings()
    assert (s.qe_preset, s.symmetrize) == ("paper", False)  # epc, generate
    assert (s.run_qe_preset, s.run_symmetrize, s.run_n_candidates, s.run_top_k, s.run_elements) == (
        "fast", True, 300, 1, "auto")  # `run` uses the test preset only when asked
