"""jobflow interface of the screen: :class:`ScreenCandidatesMaker`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobflow import Maker, job
from pydantic import BaseModel, Field

from sc_inverse.records import CandidateRecord, record_from_dict
from sc_inverse.screening.screen import screen_records


class ScreenOutput(BaseModel):
    """Output document of a screening job."""

    records: list[CandidateRecord] = Field(description="one per input, same order")
    summary: dict[str, Any] = Field(default_factory=dict, description="counts, criteria status, timings")
    passed_ids: list[str] = Field(default_factory=list, description="ids of survivors, best first")
    selected_ids: list[str] = Field(default_factory=list, description="ids within top_k, best first")


def _as_record(rec: CandidateRecord | dict, where: str) -> CandidateRecord:
    """A record as is, a dumped record validated as such, any other dict normalised (jid, poscar, cif)."""
    if isinstance(rec, CandidateRecord):
        return rec
    if isinstance(rec, dict) and "id" in rec and "structure" in rec:
        return CandidateRecord.model_validate(rec)
    return record_from_dict(rec, where)


@dataclass
class ScreenCandidatesMaker(Maker):
    """Screen candidate records (see :func:`sc_inverse.screening.screen.screen_records`).

    ``criteria``: list of dicts ``{predictor, key, comparison, threshold}`` (None = the paper's).
    """

    name: str = "screen candidates"
    criteria: list[dict] | None = None
    top_k: int | None = None
    relax: bool = True
    calculator: str = "CHGNet"
    exclude_known: bool = True
    strict: bool = False
    batch_size: int = 64
    device: str | None = None
    screen_kwargs: dict = field(default_factory=dict)

    @job(output_schema=ScreenOutput)
    def make(self, records: list[CandidateRecord | dict]) -> ScreenOutput:
        """``records``: CandidateRecords, or dicts in any record format (``{id|jid,
        structure|poscar|cif}``, see :func:`sc_inverse.records.record_from_dict`)."""
        recs = [_as_record(r, f"records[{i}]") for i, r in enumerate(records)]
        out, summary = screen_records(
            recs, criteria=self.criteria, top_k=self.top_k, relax=self.relax, calculator=self.calculator,
            exclude_known=self.exclude_known, strict=self.strict, batch_size=self.batch_size,
            device=self.device, **self.screen_kwargs,
        )
        ranked = sorted((r for r in out if r.rank is not None), key=lambda r: r.rank)
        return ScreenOutput(
            records=out,
            summary=summary,
            passed_ids=[r.id for r in ranked],
            selected_ids=[r.id for r in ranked if r.selected],
        )
