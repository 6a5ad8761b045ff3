"""Which jobs run Quantum ESPRESSO, so that a cluster's QE worker (``category: qe`` in
``my_fworker.yaml``) picks them up under FireWorks."""

from __future__ import annotations

from sc_inverse.qe.gate import QeGatedElphMaker, QeStabilityGateMaker
from sc_inverse.qe.jobs import (
    QeElphMaker,
    QeElphMergeMaker,
    QeQPointMaker,
    QeRelaxMaker,
    QeScfMaker,
)

#: FireWorks category of Quantum ESPRESSO jobs (matches ``category`` in my_fworker.yaml).
QE_CATEGORY = "qe"

#: every Maker whose job runs a QE executable, and the gated EPC job (it creates the scf/elph
#: jobs at run time, which inherit its category through jobflow's pass_manager_config)
QE_MAKERS: tuple[type, ...] = (QeRelaxMaker, QeScfMaker, QeElphMaker, QeQPointMaker,
                               QeElphMergeMaker, QeStabilityGateMaker, QeGatedElphMaker)


def qe_category_rules(category: str | None = QE_CATEGORY) -> dict[type, str]:
    """Rules for :func:`sc_inverse.metadata.set_categories` putting every QE job in ``category``
    (none when ``category`` is empty)."""
    return {cls: category for cls in QE_MAKERS} if category else {}
