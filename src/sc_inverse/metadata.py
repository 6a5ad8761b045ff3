"""What the project writes onto jobflow jobs besides their inputs: the identity of the candidate a
job belongs to (``metadata``, read back by the builders) and the FireWorks category that routes a
job to a worker (``manager_config["_category"]``).

Plain jobflow operations, usable by every layer: the pipeline tags the jobs it creates at run
time, the FireWorks execution tags the jobs it submits.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from jobflow import Flow, Job


def tag_candidate(
    flow: Flow | Job,
    candidate_id: str,
    origin: str = "generated",
    predictions: Mapping[str, float | None] | None = None,
    **extra: Any,
) -> Flow | Job:
    """Put the candidate's identity on every job's metadata (in place).

    The builders read it back: ``candidate_id`` groups a material's tasks, ``origin``
    (generated/training/user) and the screening-time ML ``predictions`` (e.g. ``tc_K``,
    ``e_form_eV_per_atom``) go into ``superconductors``/``thermo`` with DFT − ML differences.
    """
    meta = {"candidate_id": str(candidate_id), "origin": origin,
            "predictions": {k: v for k, v in (predictions or {}).items() if v is not None},
            **extra}
    flow.update_metadata(meta)
    return flow


def iter_jobs(flow: Flow | Job) -> Iterator[Job]:
    """Every job of ``flow``, depth first through nested flows."""
    if isinstance(flow, Flow):
        for item in flow.jobs:
            yield from iter_jobs(item)
    else:
        yield flow


def set_categories(flow: Flow | Job, rules: Mapping[str | type, str]) -> Flow | Job:
    """Set the FireWorks ``_category`` of the jobs that ``rules`` select, in place.

    ``rules`` maps a job-name substring or a Maker class to a category; later rules win. Jobs a
    job creates at run time (e.g. q-point jobs) inherit it through jobflow's ``pass_manager_config``.
    """
    for job in iter_jobs(flow):
        maker = getattr(job.function, "__self__", None)
        for selector, category in rules.items():
            hit = (selector in (job.name or "")) if isinstance(selector, str) \
                else isinstance(maker, selector)
            if hit:
                job.config.manager_config = {**job.config.manager_config, "_category": category}
    return flow
