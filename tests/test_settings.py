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
