from jobflow import Flow

from sc_inverse.generative.jobs import GenerateCandidatesMaker
from sc_inverse.pipeline.maker import InverseDesignMaker
from sc_inverse.settings import get_settings


def _stages(flow: Flow):
    gen, collect, screen, dft = flow.jobs
    return gen, dft


def test_flow_wiring(tmp_path):
    flow = InverseDesignMaker(n_candidates=3, top_k=1).make(tmp_path / "run")
    assert isinstance(flow, Flow)
    assert [j.name for j in flow.jobs] == ["generate candidates", "collect_candidates",
                                           "screen candidates", "dft_stage"]
    gen, dft = _stages(flow)
    assert gen.function_args[0] == 3 and dft.function_args[2:4] == (1, "fast")


def test_defaults_come_from_the_run_settings_when_made(tmp_path, monkeypatch):
    """`run` and the Maker share one source: None fields read the run_* settings in make()."""
    gen, dft = _stages(InverseDesignMaker().make(tmp_path / "a"))
    assert gen.function_args[0] == 300 and dft.function_args[2:4] == (1, "fast")  # never test
    assert gen.function.__self__.symmetrize is True  # run_symmetrize
    assert "store" not in dft.function_kwargs  # the finalize job builds its own job store's
    monkeypatch.setenv("SC_INVERSE_RUN_N_CANDIDATES", "7")
    monkeypatch.setenv("SC_INVERSE_RUN_QE_PRESET", "paper")
    monkeypatch.setenv("SC_INVERSE_RUN_SYMMETRIZE", "false")
    get_settings.cache_clear()
    gen, dft = _stages(InverseDesignMaker().make(tmp_path / "b"))
    assert gen.function_args[0] == 7 and dft.function_args[3] == "paper"
    assert gen.function.__self__.symmetrize is False
    # explicit values win over the settings
    maker = InverseDesignMaker(n_candidates=2, preset="test",
                               generate_maker=GenerateCandidatesMaker(symmetrize=True))
    gen, dft = _stages(maker.make(tmp_path / "c"))
    assert gen.function_args[0] == 2 and dft.function_args[3] == "test"
    assert gen.function.__self__.symmetrize is True
