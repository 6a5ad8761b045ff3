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


def test_data_dir_is_per_user_and_follows_xdg(monkeypatch, tmp_path):
    from sc_inverse.settings import default_data_dir

    monkeypatch.delenv("SC_INVERSE_DATA_DIR")
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert ScInverseSettings().data_dir == tmp_path / "home" / ".local" / "share" / "sc-inverse"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert ScInverseSettings().data_dir == default_data_dir() == tmp_path / "xdg" / "sc-inverse"


def test_old_working_directory_store_gets_a_one_line_notice(monkeypatch, tmp_path):
    from sc_inverse.settings import legacy_data_dir_notice

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SC_INVERSE_DATA_DIR")
    assert legacy_data_dir_notice(ScInverseSettings()) is None
    (tmp_path / "sc_inverse_data" / "db").mkdir(parents=True)
    note = legacy_data_dir_notice(ScInverseSettings())
    assert note and "\n" not in note and f"SC_INVERSE_DATA_DIR={tmp_path / 'sc_inverse_data'}" in note
    monkeypatch.setenv("SC_INVERSE_DATA_DIR", str(tmp_path / "sc_inverse_data"))
    assert legacy_data_dir_notice(ScInverseSettings()) is None


@pytest.mark.parametrize("text, words", [
    ("store: embedded\npw_cmd: [pw.x\n", ["line 3", "not valid YAML", "line 2"]),
    ("mongo_port: 0\n", ["mongo_port", "line 1", "greater than or equal to 1"]),
    ("pw_command: pw.x\n", ["unknown setting 'pw_command'", "did you mean 'pw_cmd'"]),
    ("- a\n- b\n", ["must hold a mapping"]),
])
def test_settings_file_errors_are_one_line_naming_file_and_line(tmp_path, monkeypatch, text, words):
    from sc_inverse.errors import SettingsError
    from sc_inverse.settings import get_settings

    cfg = tmp_path / "settings.yaml"
    cfg.write_text(text)
    monkeypatch.setenv("SC_INVERSE_CONFIG", str(cfg))
    get_settings.cache_clear()
    with pytest.raises(SettingsError) as err:
        get_settings()
    msg = str(err.value)
    assert "\n" not in msg and str(cfg) in msg
    for w in words:
        assert w in msg, (w, msg)


def test_bad_environment_value_names_the_variable(monkeypatch):
    from sc_inverse.errors import SettingsError
    from sc_inverse.settings import get_settings

    monkeypatch.setenv("SC_INVERSE_RUN_TOP_K", "-1")
    with pytest.raises(SettingsError, match="run_top_k = '-1' from environment variable SC_INVERSE_RUN_TOP_K"):
        get_settings()
