"""The builders as a jobflow job, so a flow can end by refreshing its derived collections."""

from __future__ import annotations

from typing import Any

from jobflow import job

from sc_inverse.builders import run_builders


@job
def build_collections(wait_for: list | None = None, entries_file: str | None = None,
                      only: list[str] | None = None) -> dict[str, Any]:
    """Run :func:`sc_inverse.builders.run_builders` on the *configured* store.

    ``wait_for``: outputs of the jobs that must finish first (e.g. every candidate's elph and
    hull outputs) - passing them creates the flow's dependency edges; their values are unused.
    Returns the builders' summaries. The flow must write to the configured store (the default
    of :func:`sc_inverse.execution.run_flow_locally` and of FireWorks runs).
    """
    return run_builders(entries_file=entries_file, only=only)


__all__ = ["build_collections"]
