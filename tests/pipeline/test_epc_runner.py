from sc_inverse.pipeline.epc import epc_summary
from sc_inverse.qe.schemas import ElphTaskDoc, QeInputSummary, SmearingRow


def test_epc_summary_keys():
    doc = ElphTaskDoc(calc_type="elph", dir_name="/x", input=QeInputSummary(preset="test"),
                      lambda_=0.4, omega_log_K=350.0, tc_K=2.0, dynamically_stable=True,
                      smearing_table=[SmearingRow(sigma_Ry=0.01, lambda_=0.4, omega_log_K=350.0,
                                                  tc_K=2.0)])
    s = epc_summary(doc)
    assert s["lambda"] == 0.4 and s["smearing_table"][0]["lambda"] == 0.4
    assert {"omega_log_K", "tc_K", "dynamically_stable"} <= set(s)
