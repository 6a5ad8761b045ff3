"""The whole inverse-design pipeline as one jobflow Flow (see :mod:`sc_inverse.pipeline.jobs`
for its stages)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from jobflow import Flow, Maker

from sc_inverse.generative.jobs import GenerateCandidatesMaker
from sc_inverse.pipeline.chemical_space import resolve_chemical_space
from sc_inverse.pipeline.jobs import collect_candidates, dft_stage
from sc_inverse.records import load_records
from sc_inverse.screening.criteria import load_criteria
from sc_inverse.screening.jobs import ScreenCandidatesMaker
from sc_inverse.settings import get_settings


@dataclass
class InverseDesignMaker(Maker):
    """generate → collect → screen → DFT (+hull) fan-out → finalize/builders, as one Flow.

    ``make(run_dir)`` returns the Flow; its output is the finalize document (funnel counts,
    timings, Table-1 rows, builder summaries). ``extra_records``: user-supplied candidates
    (CandidateRecord dicts) screened and validated alongside the generated ones.

    ``None`` fields take the ``run_*`` settings when :meth:`make` runs (``n_candidates`` ←
    ``run_n_candidates``, ``top_k`` ← ``run_top_k``, ``preset`` ← ``run_qe_preset``, the generate
    maker's ``symmetrize`` ← ``run_symmetrize``). The finalize job builds the collections of
    the job store the flow runs with.
    """

    name: str = "inverse design"
    n_candidates: int | None = None
    top_k: int | None = None
    preset: str | None = None
    seed: int = 0
    pseudo_dir: str | None = None
    pseudo_pattern: str | None = None
    hull: bool = True
    build: bool = True
    generate_maker: GenerateCandidatesMaker = field(default_factory=GenerateCandidatesMaker)
    screen_maker: ScreenCandidatesMaker = field(default_factory=ScreenCandidatesMaker)
    extra_records: list[dict] = field(default_factory=list)
    qe_category: str | None = None
    epc_unstable: bool = False  # run the EPC of candidates the stability gate finds unstable

    def make(self, run_dir: str | Path) -> Flow:
        settings = get_settings()
        # paths made absolute here: every job of the flow runs in its own folder
        run_dir = str(Path(run_dir).resolve())
        pseudo_dir = str(Path(self.pseudo_dir).expanduser().resolve()) if self.pseudo_dir else None
        started = time.time()
        generate_maker = self.generate_maker
        if generate_maker.symmetrize is None:
            generate_maker = replace(generate_maker, symmetrize=settings.run_symmetrize)
        n = settings.run_n_candidates if self.n_candidates is None else self.n_candidates
        gen = generate_maker.make(n, seed=self.seed)
        collect = collect_candidates(gen.output.records, run_dir, self.extra_records)
        screen = self.screen_maker.make(collect.output["records"])
        dft = dft_stage(
            screen.output, run_dir,
            settings.run_top_k if self.top_k is None else self.top_k,
            self.preset or settings.run_qe_preset, pseudo_dir, self.pseudo_pattern,
            hull=self.hull, build=self.build, started_at=started,
            collected_at=collect.output["completed_at"], qe_category=self.qe_category,
            epc_unstable=self.epc_unstable,
        )
        return Flow([gen, collect, screen, dft], output=dft.output, name=self.name)


def make_inverse_design_flow(
    run_dir: str | Path,
    n: int | None = None,
    top_k: int | None = None,
    preset: str | None = None,
    seed: int = 0,
    optimize_tc: bool = False,
    include: Path | None = None,
    relax: bool = True,
    pseudo_dir: str | None = None,
    qe_category: str | None = None,
    criteria_file: Path | None = None,
    keep_known: bool = False,
    elements: str | Sequence[str] | None = None,
    epc_unstable: bool = False,
) -> Flow:
    """The flow ``run`` and ``submit inverse-design`` build from their options.

    ``None`` takes the ``run_*`` settings (``elements`` ← ``run_elements``: ``auto``, ``all`` or
    symbols; ``preset`` ← ``run_qe_preset``, needed here already because ``auto`` asks which
    elements the preset's pseudopotentials cover).
    """
    settings = get_settings()
    preset = preset or settings.run_qe_preset
    # a bad --include record is reported and skipped by the screen, not fatal to the run
    extra = [r.model_dump(mode="json") for r in load_records(include, keep_unreadable=True)] \
        if include else []
    criteria = [c.model_dump() for c in load_criteria(criteria_file)] if criteria_file else None
    space = resolve_chemical_space(settings.run_elements if elements is None else elements,
                                   preset, pseudo_dir)
    return InverseDesignMaker(
        n_candidates=n, top_k=top_k, preset=preset, seed=seed, pseudo_dir=pseudo_dir,
        generate_maker=GenerateCandidatesMaker(optimize_tc=optimize_tc, elements=space),
        screen_maker=ScreenCandidatesMaker(relax=relax, criteria=criteria, exclude_known=not keep_known,
                                           screen_kwargs={"progress": True}),
        extra_records=extra, qe_category=qe_category, epc_unstable=epc_unstable,
    ).make(run_dir)
