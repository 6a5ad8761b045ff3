"""Shared options come from the real choices, and commands leave defaults to the settings."""

from __future__ import annotations

import json
import os

import click
import pytest
from click.testing import CliRunner
from jobflow import Flow

from sc_inverse.cli import cli
from sc_inverse.cli.options import STORE_KINDS, ElementList, preset_option
from sc_inverse.qe.sets import PRESETS
from sc_inverse.settings import ScInverseSettings, get_settings


def test_choices_come_from_the_registries():
    @click.command()
    @preset_option("qe_preset")
    def cmd(preset):
        click.echo(repr(preset))

    (opt,) = [p for p in cmd.params if p.name == "preset"]
    assert list(opt.type.choices) == sorted(PRESETS)
    assert "settings.qe_preset, paper" in opt.help
    assert CliRunner().invoke(cmd, []).output.strip() == "None"  # resolved by the Maker
    assert STORE_KINDS == ("embedded", "mongo")
    defaults = ScInverseSettings.model_fields
    assert {defaults["qe_preset"].default, defaults["run_qe_preset"].default} <= set(PRESETS)


@pytest.mark.parametrize("text, keywords, expected", [
    ("Mg, B,C", (), ["Mg", "B", "C"]),
    ("auto", ("auto", "all"), "auto"),
    (" ALL ", ("auto", "all"), "all"),
    ("auto", (), ["auto"]),  # `generate` has no keywords: the vocabulary check rejects 'auto'
    ("", (), []),
])
def test_element_list(text, keywords, expected):
    assert ElementList(keywords).convert(text, None, None) == expected


def test_run_leaves_defaults_to_the_settings_and_hands_the_store_down(monkeypatch):
    from sc_inverse.cli import run as run_module

    seen = {}

    def fake_flow(run_dir, *args, **kwargs):
        seen.update(args=args, kwargs=kwargs, run_dir=run_dir)
        return Flow([], name="fake")

    def fake_run(flow, store, root_dir, log):
        seen["job_store_settings"] = store
        (root_dir.parent / "funnel.json").write_text(json.dumps({"counts": {"generated": 0}}))
        return {}

    monkeypatch.setattr(run_module, "make_inverse_design_flow", fake_flow)
    monkeypatch.setattr(run_module, "run_flow_locally", fake_run)
    monkeypatch.setattr(run_module, "get_job_store", lambda settings: settings)
    monkeypatch.setattr(run_module, "check_store", lambda settings: f"{settings.store} store")
    res = CliRunner().invoke(cli, ["run", "--store", "mongo", "--run-name", "x"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert seen["args"] == (None, None, None, 0, False, None)  # n, top, preset: the run_* settings
    assert seen["kwargs"]["elements"] is None and "store" not in seen["kwargs"]
    assert seen["job_store_settings"].store == "mongo"  # the flow's job store = the builders'
    assert "DFT results of this run" in res.output and "(none)" in res.output
    assert "SC_INVERSE_STORE" not in os.environ and get_settings().store == "embedded"
    # the run folder says how the run was started (the campaign report's header)
    manifest = json.loads((seen["run_dir"] / "run.json").read_text())
    assert manifest["options"]["store"] == "mongo" and manifest["options"]["top_k"] is None
    assert manifest["flow_uuid"] and manifest["command"][0] == "sc-inverse"


@pytest.mark.parametrize("command", [["epc"], ["run"], ["submit", "epc"],
                                     ["submit", "inverse-design"]])
def test_epc_unstable_flag_on_every_epc_command(command):
    res = CliRunner().invoke(cli, [*command, "--help"])
    assert res.exit_code == 0 and "--epc-unstable" in res.output and "stability gate" in res.output


def test_run_hands_epc_unstable_to_the_flow(monkeypatch):
    from sc_inverse.cli import run as run_module

    seen = {}

    def fake_flow(run_dir, *args, **kwargs):
        seen.update(kwargs)
        return Flow([], name="fake")

    def fake_run(flow, store, root_dir, log):
        (root_dir.parent / "funnel.json").write_text(json.dumps({"counts": {"generated": 0}}))
        return {}

    monkeypatch.setattr(run_module, "make_inverse_design_flow", fake_flow)
    monkeypatch.setattr(run_module, "run_flow_locally", fake_run)
    monkeypatch.setattr(run_module, "get_job_store", lambda settings: settings)
    monkeypatch.setattr(run_module, "check_store", lambda settings: "store")
    for argv, expected in ((["--epc-unstable"], True), ([], False)):
        res = CliRunner().invoke(cli, ["run", "--run-name", f"x{expected}", *argv],
                                 catch_exceptions=False)
        assert res.exit_code == 0, res.output
        assert seen["epc_unstable"] is expected
        manifest = json.loads((get_settings().data_dir / "runs" / f"x{expected}" / "run.json")
                              .read_text())
        assert manifest["options"]["epc_unstable"] is expected
