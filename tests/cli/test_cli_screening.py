"""CLI commands ``predict``, ``screen``, ``train-predictor`` with real models (the shipped
single ALIGNN, a CHGNet-feature model trained here)."""

from __future__ import annotations

import csv
import json

from click.testing import CliRunner
from pymatgen.core import Lattice, Structure

from sc_inverse.cli import cli

#: the shipped ALIGNN T_c model (one network: cheaper than the shipped ensemble)
ALIGNN = "alignn_tc_jarvis_sc"
FCC = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]


def _write_inputs(path):
    """Cu3Al, B2 CuAl (as POSCAR), one isolated atom (no graph edges: rejected), fcc Cu."""
    recs = [
        {"id": "a", "structure": Structure(Lattice.cubic(3.7), ["Al", "Cu", "Cu", "Cu"], FCC).as_dict()},
        {"jid": "b", "poscar": Structure(Lattice.cubic(2.95), ["Cu", "Al"],
                                         [[0, 0, 0], [0.5, 0.5, 0.5]]).to(fmt="poscar")},
        {"id": "c", "structure": Structure(Lattice.cubic(20.0), ["Cu"], [[0, 0, 0]]).as_dict()},
        {"id": "d", "structure": Structure(Lattice.cubic(3.6), ["Cu"] * 4, FCC).as_dict()},
    ]
    path.write_text(json.dumps(recs))
    return path


def test_predict_command(tmp_path):
    inp = _write_inputs(tmp_path / "in.json")
    out = tmp_path / "preds.json"
    res = CliRunner().invoke(cli, ["predict", str(inp), "--model", ALIGNN, "--out", str(out)])
    assert res.exit_code == 0, res.output
    recs = json.loads(out.read_text())
    assert [r["id"] for r in recs] == ["a", "b", "c", "d"]
    assert all(isinstance(r["predictions"]["tc_K"], float) for r in recs if r["id"] != "c")
    assert recs[2]["predictions"]["tc_K"] is None and "graph rejected" in recs[2]["errors"]["tc_K"]
    assert "1 with errors" in res.output


def test_screen_command_with_criteria_file(tmp_path):
    inp = _write_inputs(tmp_path / "in.json")
    crit = tmp_path / "crit.yaml"
    crit.write_text(f"- {{predictor: '{ALIGNN}', key: tc_K, comparison: '>', threshold: -1000}}\n"
                    "- {predictor: mlip, key: e_form_eV_per_atom, comparison: '<', threshold: 0}\n")
    out = tmp_path / "screened.json"
    res = CliRunner().invoke(cli, ["screen", str(inp), "--criteria", str(crit), "--no-relax", "--top", "1",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    recs = json.loads(out.read_text())
    assert [r["id"] for r in recs] == ["a", "b", "c", "d"]
    assert all(r["verdicts"]["e_form_eV_per_atom < 0"] == "not_evaluated" for r in recs)
    assert "NOT EVALUATED" in res.output
    summary = json.loads((tmp_path / "screened.summary.json").read_text())
    assert summary["n_input"] == 4
    rows = list(csv.DictReader((tmp_path / "screened.csv").open()))
    assert [r["id"] for r in rows] == ["a", "b", "c", "d"] and "verdict:tc_K > -1000" in rows[0]


def test_bad_criteria_file_is_one_clear_error(tmp_path):
    inp = _write_inputs(tmp_path / "in.json")
    crit = tmp_path / "crit.json"
    crit.write_text(json.dumps([{"key": "tc_K", "comparison": "~", "threshold": 1}]))
    from sc_inverse.errors import InputError

    res = CliRunner().invoke(cli, ["screen", str(inp), "--criteria", str(crit), "--out", str(tmp_path / "o.json")])
    assert isinstance(res.exception, InputError) and "crit.json[0]" in str(res.exception)
    assert not (tmp_path / "o.json").exists()


def test_predict_with_registry_model_offline_fails_clearly(tmp_path, monkeypatch):
    import socket

    def refuse(*a, **k):
        raise OSError("network disabled by test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    inp = _write_inputs(tmp_path / "in.json")
    res = CliRunner().invoke(cli, ["predict", str(inp), "--model", "tc_supercon_radius", "--out",
                                   str(tmp_path / "p.json")])
    from sc_inverse.errors import ModelLoadError

    assert isinstance(res.exception, ModelLoadError) and "tc_supercon_radius" in str(res.exception)
    assert not (tmp_path / "p.json").exists()


def test_train_predictor_kind_chgnet_hgb_then_predict(tmp_path):
    """`train-predictor --kind chgnet-hgb` writes a feature-model dir that `predict` loads."""
    from sc_inverse.data import load_jarvis_sc

    recs = [{"id": f"{split}-{r['jid']}", "structure": r["structure"].as_dict(), "split": split,
             "tc_K": r["tc_K"]}
            for split, rows in (("train", load_jarvis_sc("train")[:20]), ("val", load_jarvis_sc("val")[:4]))
            for r in rows]
    data = tmp_path / "data.json"
    data.write_text(json.dumps(recs))
    out = tmp_path / "feat"
    res = CliRunner().invoke(cli, ["train-predictor", "--kind", "chgnet-hgb", "--data", str(data),
                                   "--out", str(out), "--seed", "1"])
    assert res.exit_code == 0, res.output
    assert (out / "feature_model.json").is_file() and "val MAE" in (out / "MODEL_CARD.md").read_text()
    assert json.loads((out / "metrics.json").read_text())["n_train"] == 20
    inp = _write_inputs(tmp_path / "in.json")
    res = CliRunner().invoke(cli, ["predict", str(inp), "--model", str(out), "--out", str(tmp_path / "p.json")])
    assert res.exit_code == 0, res.output
    preds = json.loads((tmp_path / "p.json").read_text())
    assert isinstance(preds[0]["predictions"]["tc_K"], float) and preds[2]["predictions"]["tc_K"] is None
