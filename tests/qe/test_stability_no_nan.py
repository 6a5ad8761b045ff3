"""No NaN in any output: what cannot be computed is null, with the reason beside it.

bcc Nb is the real case: after the acoustic sum rule its acoustic modes at Γ are exactly 0, and
QE 6.7's matdyn.x then writes NaN for the whole phonon DOS and every a2F.dosN (0/0 in its
tetrahedron weights), while lambda.x prints NaN for ω_log (it takes √ω² of ph.x's raw, imaginary
acoustic modes). The McMillan T_c, NaN before, now has a Θ_D from the q-grid second moment.
"""

from __future__ import annotations

import json
import math

import pytest
from qe_testutils import QE_DATA

from sc_inverse.pipeline.epc import epc_summary
from sc_inverse.qe.schemas import ElphTaskDoc, SmearingRow
from sc_inverse.qe.sets import PAPER
from sc_inverse.runs import RunDir, finite_json

NB = QE_DATA / "stability" / "nb_bcc_paper"


def _no_nan(obj) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_no_nan(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(_no_nan(v) for v in obj)
    return True


def test_nb_document_with_nan_in_qe_outputs_serialises_without_nan():
    assert "NaN" in (NB / "phonon.dos").read_text() and "NaN" in (NB / "lambda.dat").read_text()
    doc = ElphTaskDoc.from_directory(NB, PAPER, (14, 14, 14))
    assert doc.tc_mcmillan_K == pytest.approx(13.1, abs=0.1)  # NaN before: Θ_D read matdyn's DOS
    assert doc.debye_temperature_K == pytest.approx(267.8, abs=0.5)
    assert doc.a2f.phonon_dos is None and "dos_gam" in doc.a2f.undefined_reasons["phonon_dos"]
    assert doc.a2f.matdyn_a2f is None and "matdyn_a2f" in doc.a2f.undefined_reasons
    row = doc.smearing_table[0]
    assert row.omega_log_lambdax_K is None and "√ω²" in row.undefined_reasons["omega_log_lambdax_K"]
    assert row.lambda_lambdax == pytest.approx(1.347, abs=1e-3)  # lambda.x's plain sum is fine
    dumped = doc.model_dump(mode="json")
    assert _no_nan(dumped)
    for data in (dumped, epc_summary(doc)):  # allow_nan=False raises on NaN/inf; so would loads
        json.loads(json.dumps(data, allow_nan=False), parse_constant=_reject)


def _reject(token: str):
    raise AssertionError(f"{token} in JSON")


def test_non_finite_values_become_null_with_a_reason():
    """The safety net: a NaN that slips into an optional field is nulled and explained; in a
    field that cannot be null it is an error, not a silent NaN."""
    doc = ElphTaskDoc(calc_type="elph", dir_name="/x", input={"preset": "test"},
                      tc_mcmillan_K=float("nan"), omega_log_K=float("inf"))
    assert doc.tc_mcmillan_K is None and doc.omega_log_K is None
    assert set(doc.undefined_reasons) == {"tc_mcmillan_K", "omega_log_K"}
    json.dumps(doc.model_dump(mode="json"), allow_nan=False)
    with pytest.raises(ValueError, match="finite"):
        SmearingRow(sigma_Ry=0.01, lambda_=float("nan"))
    with pytest.raises(ValueError, match="finite"):
        ElphTaskDoc(calc_type="elph", dir_name="/x", input={"preset": "test"},
                    imaginary_threshold_cm1=float("nan"))


def test_run_folder_json_has_null_for_nan(tmp_path):
    """A failed ML prediction is NaN in memory (its record says why in ``errors``); the run
    folder's JSON gets null, never the invalid token NaN."""
    run = RunDir(tmp_path)
    rows = [{"id": "a", "predictions": {"tc_K": float("nan"), "e": -1.5}, "x": [float("inf"), 1.0]}]
    path = run.write_json(run.screened, rows)
    assert json.loads(path.read_text()) == [{"id": "a", "predictions": {"tc_K": None, "e": -1.5},
                                             "x": [None, 1.0]}]
    assert finite_json((1.0, float("-inf"))) == [1.0, None]
