"""jobflow interface of the screen: :class:`ScreenCandidatesMaker`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobflow import Maker, job
from pydantic import BaseModel, Field, field_validator

from sc_inverse.records import CandidateRecord, record_from_dict


class ScreenOutput(BaseModel):
    """Output document of a screening job."""

    records: list[dict] = Field(description="CandidateRecord dicts, one per input, same order")
    summary: dict[str, Any] = Field(default_factory=dict, description="counts, criteria status, timings")
    passed_ids: list[str] = Field(default_factory=list, description="ids of survivors, best first")
    selected_ids: list[str] = Field(default_factory=list, description="ids within top_k, best first")
    selected_structures: list[dict] = Field(
        default_factory=list, description="pymatgen dicts of the selected (MLIP-relaxed) structures"
    )

    @field_validator("selected_structures", mode="before")
    @classmethod
    def _as_dicts(cls, v):
        """jobflow/monty decode stored structure dicts into Structures; keep dicts."""
        return [x.as_dict() if hasattr(x, "as_dict") else x for x in (v or [])]


def _as_record(r: Any, i: int) -> CandidateRecord:
    if isinstance(r, CandidateRecord):
        return r
    if isinstance(r, dict):
        return CandidateRecord.model_validate(r) if "structure" in r and "id" in r else record_from_dict(
            r, f"records[{i}]")
    raise TypeError(f"records[{i}]: expected CandidateRecord or dict, got {type(r).__name__}")


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
    def make(self, records: list | dict) -> ScreenOutput:
        """``records``: CandidateRecords or dicts (``{id|jid, structure|poscar}``), or a document
        with a ``records`` list (e.g. the generator's output)."""
        from sc_inverse.screening.screen import screen_records

        if isinstance(records, dict) and "records" in records:  # a generate output document
            records = records["records"]
        elif hasattr(records, "records"):
            records = records.records
        recs = [_as_record(r, i) for i, r in enumerate(records)]
        out, summary = screen_records(
            recs, criteria=self.criteria, top_k=self.top_k, relax=self.relax, calculator=self.calculator,
            exclude_known=self.exclude_known, strict=self.strict, batch_size=self.batch_size,
            device=self.device, **self.screen_kwargs,
        )
        ranked = sorted((r for r in out if r.rank is not None), key=lambda r: r.rank)
        selected = [r for r in ranked if (r.model_extra or {}).get("selected")]
        return ScreenOutput(
            records=[r.model_dump(mode="json") for r in out],
            summary=summary,
            passed_ids=[r.id for r in ranked],
            selected_ids=[r.id for r in selected],
            selected_structures=[r.structure for r in selected],
        )
