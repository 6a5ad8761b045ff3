"""GenerateCandidatesMaker runs as a real jobflow job; records land in the additional store."""

from __future__ import annotations

from jobflow import JobStore, run_locally
from maggma.stores import MemoryStore

from sc_inverse.generative.jobs import GenerateCandidatesMaker
from sc_inverse.records import CandidateRecord


def test_maker_runs_locally():
    store = JobStore(MemoryStore(), additional_stores={"data": MemoryStore()})
    job = GenerateCandidatesMaker(steps_per_level=1, symmetrize=True).make(n=3, seed=2)
    responses = run_locally(job, store=store, ensure_success=True)
    out = responses[job.uuid][1].output
    records = [r if isinstance(r, CandidateRecord) else CandidateRecord.model_validate(r) for r in out.records]
    assert len(records) == 3 and out.n_requested == 3
    assert all(r.symmetry is not None for r in records)
    stored = store.query_one({"uuid": job.uuid}, load=False)
    assert "blob_uuid" in str(stored["output"]["records"])  # large output went to the data store
