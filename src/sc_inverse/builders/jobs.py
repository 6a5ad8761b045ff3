"""The builders as a jobflow job, so a flow can end by refreshing its derived collections."""

from __future__ import annotations

from typing import Any

from jobflow import CURRENT_JOB, Job, JobConfig, job

from sc_inverse.builders import run_builders


@job
def _build(wait_for: list | None = None, entries_file: str | None = None,
           only: list[str] | None = None) -> dict[str, Any]:
    return run_builders(CURRENT_JOB.store, entries_file=entries_file, only=only)


def build_collections(wait_for: list | None = None, entries_file: str | None = None,
                      only: list[str] | None = None) -> Job:
    """A job running :func:`sc_inverse.builders.run_builders` on the job store it runs with,
    into that store's ``superconductors``/``thermo`` collections.

    ``wait_for``: outputs of the jobs that must finish first (e.g. every candidate's elph and
    hull outputs) - passing them creates the flow's dependency edges; their values are unused.
    The job's output is the builders' summaries. The store is the one the flow runs with
    (``expose_store``), not one re-read from settings, so the collections land next to the
    task documents whatever the job's working directory.
    """
    j = _build(wait_for=wait_for, entries_file=entries_file, only=only)
    j.name = "build_collections"
    j.config = JobConfig(expose_store=True)
    return j


__all__ = ["build_collections"]
