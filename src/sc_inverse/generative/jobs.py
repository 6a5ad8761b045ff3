"""jobflow Maker wrapping CDVAE sampling (+ optional latent T_c optimisation, symmetry)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from jobflow import Maker, job
from pydantic import BaseModel, Field

from sc_inverse.records import CandidateRecord
from sc_inverse.settings import get_settings


class GeneratedCandidates(BaseModel):
    """Output document of :class:`GenerateCandidatesMaker` (records go to the data store)."""

    records: list[CandidateRecord] = Field(description="generated crystals, flagged not dropped")
    n_requested: int
    model_hash: str
    seed: int
    flag_counts: dict[str, int] = Field(default_factory=dict)
    settings: dict = Field(default_factory=dict)
    cpu_time_s: float | None = Field(None, description="CPU time of the job's process (all threads).")
    wall_time_s: float | None = None


@dataclass
class GenerateCandidatesMaker(Maker):
    """Sample crystals from a CDVAE checkpoint (``model_dir=None``: the shipped one).

    ``make(n, seed)`` returns a job whose output is a :class:`GeneratedCandidates`; use
    ``job.output.records`` downstream. The records list is stored in the additional store.
    ``symmetrize``/``device`` None: ``settings.symmetrize``/``settings.device`` of the machine
    running the job.
    """

    name: str = "generate candidates"
    model_dir: str | None = None
    steps_per_level: int | None = None  # None = sample.DEFAULT_STEPS_PER_LEVEL
    step_lr: float | None = None
    optimize_tc: bool = False
    opt_steps: int = 20
    opt_lr: float = 0.05
    symmetrize: bool | None = None
    prior: str = "auto"
    device: str | None = None
    batch_size: int = 512
    threads: int = 1  # torch CPU threads (0 = torch's default); 1 is 2x faster on a busy 2-core box
    elements: list[str] | None = None  # chemical space (None: the model's whole vocabulary)

    @job(output_schema=GeneratedCandidates, data=["records"])
    def make(self, n: int, seed: int = 0) -> GeneratedCandidates:
        # torch (via sample) only when the job runs: building a flow must stay light
        import torch

        from sc_inverse.generative.sample import DEFAULT_STEPS_PER_LEVEL, generate_candidates

        cpu0, wall0 = time.process_time(), time.perf_counter()
        if self.threads:
            torch.set_num_threads(self.threads)
        steps = self.steps_per_level or DEFAULT_STEPS_PER_LEVEL
        settings = get_settings()
        symmetrize = settings.symmetrize if self.symmetrize is None else self.symmetrize
        records = generate_candidates(
            n, model_dir=self.model_dir, seed=seed, steps_per_level=steps, step_lr=self.step_lr,
            optimize_tc=self.optimize_tc, opt_steps=self.opt_steps, opt_lr=self.opt_lr,
            symmetrize=symmetrize, batch_size=self.batch_size, device=self.device or settings.device,
            progress=False, prior=self.prior, elements=self.elements,
        )
        return GeneratedCandidates(
            records=records,
            n_requested=n,
            model_hash=records[0].provenance["model_hash"] if records else "",
            seed=seed,
            flag_counts=dict(Counter(f for r in records for f in r.flags)),
            settings={"steps_per_level": steps, "optimize_tc": self.optimize_tc,
                      "symmetrize": symmetrize, "prior": self.prior, "elements": self.elements},
            cpu_time_s=time.process_time() - cpu0,
            wall_time_s=time.perf_counter() - wall0,
        )
