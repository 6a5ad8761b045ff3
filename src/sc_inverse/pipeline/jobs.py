"""The whole inverse-design pipeline as one jobflow Flow, and the ``sc-inverse run`` command.

generate (CDVAE, optional latent T_c optimisation, symmetry recovery)
  → collect (+ user-supplied structures; writes ``candidates.json``)
  → screen (ALIGNN criteria, CHGNet pre-relaxation, triage, ranking)
  → DFT fan-out (``Response(replace=...)``): for the top-K survivors that the pseudopotential
    library can run, QE elemental references + one :class:`ElectronPhononTcMaker` flow and one
    convex-hull job per candidate; survivors lacking a pseudopotential are recorded as skipped
  → finalize: ``dft.json`` + ``funnel.json`` in the run folder, then the maggma builders.

Every stage writes its result into the run folder (:mod:`sc_inverse.runs`) as soon as it has it,
so a failure later never loses what was computed. A failed QE candidate does not stop the
others: the finalize job accepts missing outputs.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from jobflow import Flow, Job, JobConfig, Maker, OnMissing, Response, job
from pymatgen.core import Structure

from sc_inverse.funnel import funnel_counts, select_for_dft
from sc_inverse.generative.jobs import GenerateCandidatesMaker
from sc_inverse.records import CandidateRecord
from sc_inverse.runs import RunDir
from sc_inverse.screening.jobs import ScreenCandidatesMaker

logger = logging.getLogger(__name__)

#: k-point length (Å) of the ``test`` preset's fcc-Al phonon grid (8 × 2.81 Å = 22.4 Å, rounded down so Al keeps 8), reused to size
#: the grids of arbitrary candidate cells in the inverse-design flow
TEST_K_LENGTH_A = 22.0


def _records(items: list) -> list[CandidateRecord]:
    return [r if isinstance(r, CandidateRecord) else CandidateRecord.model_validate(r) for r in items]


def scaled_test_preset(structure: Structure, base: Any = "test"):
    """The ``test`` preset with k/q grids sized for ``structure`` instead of fcc Al.

    The fixed 8³/16³/4³ grids of the Al example would be far too dense for a larger generated
    cell; here n_k = ceil(L/a) with L = :data:`TEST_K_LENGTH_A`, la2F and matdyn grids twice
    that, and q the largest divisor of n_k not above ceil(n_k/4) (ph.x needs q | k; a coarse q
    grid keeps ph.x cheap).
    """
    from sc_inverse.qe.sets import get_preset

    preset = get_preset(base)
    if preset.kpoints_grid is None:  # paper preset: automatic k convergence already adapts
        return preset
    k = tuple(max(1, math.ceil(TEST_K_LENGTH_A / a)) for a in structure.lattice.abc)
    dense = tuple(2 * n for n in k)
    q = tuple(max(d for d in range(1, n + 1) if n % d == 0 and d <= math.ceil(n / 4)) for n in k)
    # same name: energies stay comparable with references of this preset (same functional,
    # cutoffs and pseudopotentials; k grids always differ between cells)
    return preset.with_updates(
        kpoints_grid=k, la2f_kpoints_grid=dense, qpoints_grid=q,
        matdyn_nk=dense,
    )


@job(data=["records"])
def collect_candidates(generated: list, run_dir: str, extra: list | None = None) -> dict:
    """Generated + user-supplied records → ``candidates.json``; records go on to screening."""
    records = [r.model_dump(mode="json") for r in _records(generated) + _records(extra or [])]
    run = RunDir(Path(run_dir))
    run.write_json(run.candidates, records)
    logger.info("collected %d candidates (%d user-supplied)", len(records), len(extra or []))
    return {"records": records, "n": len(records), "completed_at": time.time()}


@job
def dft_stage(
    screen_output: Any,
    run_dir: str,
    top_k: int,
    preset: str,
    pseudo_dir: str | None = None,
    pseudo_pattern: str | None = None,
    hull: bool = True,
    build: bool = True,
    started_at: float | None = None,
    collected_at: float | None = None,
    qe_category: str | None = None,
) -> Response:
    """Choose the DFT set and replace this job by the QE + hull fan-out and a finalize job.

    ``qe_category``: FireWorks category put on the QE jobs created here (they are born at run
    time, after ``submit`` tagged the static jobs), so a cluster's QE worker picks them up.
    """
    from sc_inverse.errors import MissingPseudopotentialError
    from sc_inverse.qe.flows import ElectronPhononTcMaker
    from sc_inverse.qe.pseudos import find_pseudopotentials
    from sc_inverse.qe.sets import get_preset
    from sc_inverse.workflows import tag_candidate

    out = screen_output.model_dump() if hasattr(screen_output, "model_dump") else dict(screen_output)
    records = _records(out["records"])
    run = RunDir(Path(run_dir))
    run.write_json(run.screened, [r.model_dump(mode="json") for r in records])
    screened_at = time.time()
    pattern = pseudo_pattern or get_preset(preset).pseudo_pattern

    def missing(rec: CandidateRecord) -> list[str]:
        try:
            find_pseudopotentials(rec.get_structure(), pseudo_dir, pattern)
        except MissingPseudopotentialError as exc:
            return exc.elements
        return []

    chosen, skipped = select_for_dft(records, top_k, missing)
    logger.info("DFT stage: %d chosen, %d skipped (no pseudopotential)", len(chosen), len(skipped))
    jobs: list[Flow | Job] = []
    epc_outputs, hull_outputs, ids = [], [], []
    refs = None
    if chosen and hull:
        from sc_inverse.thermo.jobs import QeElementalReferenceMaker

        elements = sorted({el.symbol for r in chosen for el in r.get_structure().composition.elements})
        refs = QeElementalReferenceMaker(
            preset=preset, pseudo_dir=pseudo_dir, pseudo_pattern=pseudo_pattern
        ).make(elements)
        jobs.append(refs)
    for rec in chosen:
        structure = rec.get_structure()
        maker = ElectronPhononTcMaker(
            preset=scaled_test_preset(structure, preset) if preset == "test" else preset,
            pseudo_dir=pseudo_dir, pseudo_pattern=pseudo_pattern,
        )
        epc = maker.make(structure)
        sym = rec.symmetry
        tag_candidate(
            epc, rec.id, origin=rec.origin, predictions=rec.predictions,
            spacegroup_before=sym.spacegroup_before if sym else None,
            spacegroup_after=sym.spacegroup_after if sym else None,
        )
        jobs.append(epc)
        epc_outputs.append(epc.output)
        ids.append(rec.id)
        if hull:
            from sc_inverse.thermo.jobs import ConvexHullMaker

            hull_job = ConvexHullMaker(use_store_references=False).make(
                task_doc=scf_output(epc), references=refs.output, entry_id=rec.id
            )
            tag_candidate(hull_job, rec.id, origin=rec.origin, predictions=rec.predictions)
            jobs.append(hull_job)
            hull_outputs.append(hull_job.output)
        else:
            hull_outputs.append(None)
    fin = finalize_run(
        run_dir, ids, epc_outputs, hull_outputs, skipped, build=build,
        timestamps={"start": started_at, "collected": collected_at, "screened": screened_at},
        screen_summary=out.get("summary", {}),
    )
    fin.config = JobConfig(on_missing_references=OnMissing.NONE, expose_store=True)
    jobs.append(fin)
    replacement = Flow(jobs, output=fin.output, name="DFT validation")
    if qe_category:
        from sc_inverse.workflows import set_categories

        set_categories(replacement, qe_category=qe_category)
    return Response(replace=replacement)


def scf_output(epc_flow: Flow):
    """Output of the EPC flow's scf job: the pw.x energy and inputs the hull compares.

    The elph document carries the scf energy too, but its ``input`` is ph.x's, so the hull's
    settings check (functional, cutoffs) must read the scf document.
    """
    from sc_inverse.qe.jobs import QeScfMaker

    for j in epc_flow.jobs:
        if isinstance(getattr(j, "maker", None), QeScfMaker):
            return j.output
    raise ValueError(f"flow {epc_flow.name!r} has no scf job")


def _dump(x: Any) -> dict | None:
    if x is None:
        return None
    return x.model_dump() if hasattr(x, "model_dump") else dict(x)


def dft_row(rec: CandidateRecord | None, rid: str, epc: dict | None, hull: dict | None) -> dict:
    """One Table-1 row: DFT T_c quantities, hull energies and the symmetry of the candidate."""
    sym = rec.symmetry if rec else None
    row: dict[str, Any] = {
        "id": rid,
        "formula": rec.formula if rec else None,
        "spacegroup_before": sym.spacegroup_before if sym else None,
        "spacegroup_after": sym.spacegroup_after if sym else None,
        "ml_tc_K": rec.predictions.get("tc_K") if rec else None,
    }
    if epc is None:
        row["note"] = "DFT failed (see the job store / run folder for the error)"
        return row
    row.update({k: epc.get(k) for k in ("lambda_", "omega_log_K", "tc_K", "tc_mcmillan_K",
                                        "dynamically_stable", "min_frequency_cm1", "dir_name")})
    row["formula"] = epc.get("formula_pretty") or row["formula"]
    if hull:
        row["e_form_eV_per_atom"] = hull.get("e_form_eV_per_atom")
        row["e_above_hull_eV_per_atom"] = hull.get("e_above_hull_eV_per_atom")
    return row


@job
def finalize_run(
    run_dir: str,
    ids: list[str],
    epc_outputs: list,
    hull_outputs: list,
    skipped: list[dict],
    build: bool = True,
    timestamps: dict | None = None,
    screen_summary: dict | None = None,
) -> dict:
    """Write ``dft.json`` and ``funnel.json``, then run the builders on this job's store."""
    from jobflow import CURRENT_JOB

    from sc_inverse.records import load_records
    from sc_inverse.screening.triage import jarvis_sc_index

    run = RunDir(Path(run_dir))
    screened = {r.id: r for r in load_records(run.screened)}
    generated = load_records(run.candidates)
    rows = [dft_row(screened.get(i), i, _dump(e), _dump(h))
            for i, e, h in zip(ids, epc_outputs, hull_outputs, strict=True)]
    rows += skipped
    run.write_json(run.dft, rows)
    # "novel" as the screen's triage defines it: no composition of the packaged JARVIS-SC set
    training_formulas = set(jarvis_sc_index().by_formula)
    t = {k: v for k, v in (timestamps or {}).items() if v is not None}
    now = time.time()
    timings = {}
    if "start" in t and "collected" in t:
        timings["generate"] = t["collected"] - t["start"]
    if "collected" in t and "screened" in t:
        timings["screen (ML + MLIP)"] = t["screened"] - t["collected"]
    if "screened" in t:
        timings["DFT (QE) + hull"] = now - t["screened"]
    if "start" in t:
        timings["total"] = now - t["start"]
    funnel = {
        "counts": funnel_counts(generated, list(screened.values()), rows, training_formulas),
        "timings_s": timings,
        "screen_summary": screen_summary or {},
    }
    run.write_json(run.funnel, funnel)
    builders = {}
    if build:
        from sc_inverse.builders import run_builders

        builders = run_builders(CURRENT_JOB.store)
    return {"run_dir": run_dir, "funnel": funnel["counts"], "timings_s": timings,
            "dft": rows, "builders": builders}


@dataclass
class InverseDesignMaker(Maker):
    """generate → collect → screen → DFT (+hull) fan-out → finalize/builders, as one Flow.

    ``make(run_dir)`` returns the Flow; its output is the finalize document (funnel counts,
    timings, Table-1 rows, builder summaries). ``extra_records``: user-supplied candidates
    (CandidateRecord dicts) screened and validated alongside the generated ones.
    """

    name: str = "inverse design"
    n_candidates: int = 200
    top_k: int = 1
    preset: str = "test"
    seed: int = 0
    pseudo_dir: str | None = None
    pseudo_pattern: str | None = None
    hull: bool = True
    build: bool = True
    generate_maker: GenerateCandidatesMaker = field(default_factory=GenerateCandidatesMaker)
    screen_maker: ScreenCandidatesMaker = field(default_factory=ScreenCandidatesMaker)
    extra_records: list[dict] = field(default_factory=list)
    qe_category: str | None = None

    def make(self, run_dir: str | Path) -> Flow:
        run_dir = str(Path(run_dir).resolve())
        started = time.time()
        gen = self.generate_maker.make(self.n_candidates, seed=self.seed)
        collect = collect_candidates(gen.output.records, run_dir, self.extra_records)
        screen = self.screen_maker.make(collect.output["records"])
        dft = dft_stage(
            screen.output, run_dir, self.top_k, self.preset, self.pseudo_dir, self.pseudo_pattern,
            hull=self.hull, build=self.build, started_at=started,
            collected_at=collect.output["completed_at"], qe_category=self.qe_category,
        )
        return Flow([gen, collect, screen, dft], output=dft.output, name=self.name)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def covered_elements(elements: list[str], preset: str, pseudo_dir: str | None = None,
                     pseudo_pattern: str | None = None) -> list[str]:
    """Those of ``elements`` that have a pseudopotential file at the preset's naming pattern."""
    from sc_inverse.errors import MissingPseudopotentialError
    from sc_inverse.qe.pseudos import find_pseudopotentials
    from sc_inverse.qe.sets import get_preset

    try:
        find_pseudopotentials(elements, pseudo_dir, pseudo_pattern or get_preset(preset).pseudo_pattern)
    except MissingPseudopotentialError as exc:
        return [e for e in elements if e not in exc.elements]
    return list(elements)


def resolve_chemical_space(spec: str | None, preset: str, pseudo_dir: str | None = None) -> list[str] | None:
    """``--elements``: ``all`` (None: no restriction), ``auto`` or a comma-separated list.

    ``auto`` keeps the generator's elements that the pseudopotential library covers, so every
    survivor of the screen can go to DFT (with the Debian LDA library: 15 of 62 elements); if the
    library covers all of them, or none (no library found), generation is not restricted.
    """
    if spec is None or spec.strip().lower() in ("", "all"):
        return None
    if spec.strip().lower() != "auto":
        from sc_inverse.generative.cli import parse_elements

        return parse_elements(spec)
    from sc_inverse.generative.model import load_model

    vocab = load_model()[0].cfg.elements
    covered = covered_elements(vocab, preset, pseudo_dir)
    if not covered:
        logger.warning("--elements auto: no pseudopotential library covers any generator element; "
                       "generating over all %d elements (DFT will skip every candidate)", len(vocab))
        return None
    if len(covered) == len(vocab):
        return None
    logger.info("--elements auto: %d of %d generator elements have %s-preset pseudopotentials: %s",
                len(covered), len(vocab), preset, ",".join(covered))
    return covered


def make_inverse_design_flow(n: int, top_k: int, preset: str, seed: int, optimize_tc: bool,
                             include: Path | None, run_dir: Path, relax: bool = True,
                             pseudo_dir: str | None = None, qe_category: str | None = None,
                             criteria_file: Path | None = None, keep_known: bool = False,
                             elements: str | None = "auto") -> Flow:
    """The flow ``run`` and ``submit inverse-design`` build from their options."""
    from sc_inverse.records import load_records
    from sc_inverse.screening.criteria import load_criteria

    extra = [r.model_dump(mode="json") for r in load_records(include)] if include else []
    criteria = [c.model_dump() for c in load_criteria(criteria_file)] if criteria_file else None
    space = resolve_chemical_space(elements, preset, pseudo_dir)
    return InverseDesignMaker(
        n_candidates=n, top_k=top_k, preset=preset, seed=seed, pseudo_dir=pseudo_dir,
        generate_maker=GenerateCandidatesMaker(optimize_tc=optimize_tc, elements=space),
        screen_maker=ScreenCandidatesMaker(relax=relax, criteria=criteria, exclude_known=not keep_known,
                                           screen_kwargs={"progress": True}),
        extra_records=extra, qe_category=qe_category,
    ).make(run_dir)


def print_top(rows: list[dict], n: int = 10) -> None:
    from sc_inverse.builders.cli import format_rows

    click.echo(f"\nTop of the superconductors collection ({min(n, len(rows))} of {len(rows)}):")
    click.echo(format_rows(rows[:n], "table") if rows else "(empty)")


flow_options = [
    click.option("--n", "n", type=int, default=300, show_default=True, help="Crystals to generate."),
    click.option("--top", "top_k", type=int, default=1, show_default=True,
                 help="Survivors validated with QE DFT-PT."),
    click.option("--preset", type=click.Choice(["test", "paper"]), default="test", show_default=True),
    click.option("--seed", type=int, default=0, show_default=True),
    click.option("--optimize-tc", is_flag=True, help="Latent gradient ascent on the T_c head."),
    click.option("--include", type=click.Path(exists=True, path_type=Path), default=None,
                 help="Extra candidate structures (any record format) screened alongside."),
    click.option("--pseudo-dir", type=click.Path(path_type=Path), default=None,
                 help="Pseudopotential library (default: settings / the preset's)."),
    click.option("--criteria", "criteria_file", type=click.Path(exists=True, path_type=Path),
                 default=None, help="Screening criteria JSON/YAML (default: the paper's three)."),
    click.option("--keep-known", is_flag=True,
                 help="Let candidates with a training structure/composition pass the screen."),
    click.option("--elements", default="auto", show_default=True,
                 help="Chemical space of the generator: 'auto' (elements the pseudopotential "
                      "library covers, so survivors can go to DFT), 'all', or e.g. 'Mg,B,C'."),
]


def _with_flow_options(f):
    for opt in reversed(flow_options):
        f = opt(f)
    return f


@click.command()
@_with_flow_options
@click.option("--store", type=click.Choice(["embedded", "mongo"]), default=None,
              help="Results store (default: settings.store, i.e. embedded).")
@click.option("--run-name", default=None, help="Run folder name under <data_dir>/runs.")
def run(n, top_k, preset, seed, optimize_tc, include, pseudo_dir, criteria_file, keep_known, elements,
        store, run_name) -> None:
    """Generate → screen → QE-validate → hull → builders, locally, then print the top results."""
    import os

    from sc_inverse.builders import query_results
    from sc_inverse.runs import new_run_dir
    from sc_inverse.settings import get_settings
    from sc_inverse.workflows import run_flow_locally

    if store:
        os.environ["SC_INVERSE_STORE"] = store
        get_settings.cache_clear()
    logging.getLogger("sc_inverse").setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    run_dir = new_run_dir(run_name)
    click.echo(f"run folder: {run_dir.root}")
    flow = make_inverse_design_flow(n, top_k, preset, seed, optimize_tc, include, run_dir.root,
                                    pseudo_dir=str(pseudo_dir) if pseudo_dir else None,
                                    criteria_file=criteria_file, keep_known=keep_known,
                                    elements=elements)
    t0 = time.perf_counter()
    responses = run_flow_locally(flow, root_dir=run_dir.root / "jobs")
    elapsed = time.perf_counter() - t0
    funnel = run_dir.read_json(run_dir.funnel, default={})
    if not funnel:
        raise click.ClickException(
            f"the flow did not finish ({len(responses)} jobs ran); see the log above and {run_dir.root}"
        )
    click.echo("\nFunnel: " + " → ".join(f"{k} {v}" for k, v in funnel["counts"].items()))
    click.echo(f"wall time: {elapsed:.0f} s")
    print_top(query_results())
    click.echo(f"\nreport: sc-inverse report --run {run_dir.root} --out {run_dir.root / 'report'}")


@click.command("inverse-design")
@_with_flow_options
@click.option("--launchpad", "launchpad_file", type=click.Path(path_type=Path), default=None,
              help="LaunchPad YAML (default: settings.launchpad_file).")
@click.option("--category", default=None,
              help="FireWorks category of QE jobs (default: my_fworker.yaml's, or 'qe').")
@click.option("--run-name", default=None, help="Run folder name under <data_dir>/runs.")
def submit_inverse_design(n, top_k, preset, seed, optimize_tc, include, pseudo_dir, criteria_file,
                          keep_known, elements, launchpad_file, category, run_name) -> None:
    """The whole inverse-design flow to the LaunchPad; QE jobs tagged for `qlaunch` workers.

    The run folder must live on a filesystem the workers share (SC_INVERSE_DATA_DIR).
    """
    from sc_inverse.runs import new_run_dir
    from sc_inverse.workflows import fworker_category, submit_flow

    run_dir = new_run_dir(run_name)
    category = category or fworker_category()
    flow = make_inverse_design_flow(n, top_k, preset, seed, optimize_tc, include, run_dir.root,
                                    pseudo_dir=str(pseudo_dir) if pseudo_dir else None,
                                    qe_category=category, criteria_file=criteria_file,
                                    keep_known=keep_known, elements=elements)
    ids = submit_flow(flow, launchpad=launchpad_file, qe_category=category)
    click.echo(f"submitted {len(ids)} fireworks (run folder {run_dir.root}); "
               "QE jobs are added at run time by the DFT stage and inherit the QE category")
