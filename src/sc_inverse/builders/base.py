"""What the project's builders share: grouping job outputs by material, change detection,
error accounting and batched writes.

Incremental by ``last_updated``: every target document records ``_source_stamp`` - a hash of
the ``(uuid, index, completed_at)`` of the source documents it was built from (jobflow writes
``completed_at`` whenever a job finishes, so a re-run, a new task or a deleted task changes it).
``get_items`` yields only materials whose stamp differs, so a second run processes 0 items.

Errors: a source document that is not a usable task document is logged, skipped and counted
(``summary["skipped_docs"]``, when its material is (re)built), and so is one that refers to a
blob missing from the job store's ``"data"`` store (``summary["missing_blobs"]``: the job's
large arrays were never stored, e.g. the disk filled up); a material whose processing
fails (or whose every task is malformed) is written as a placeholder
``{"valid": False, "errors": [...]}`` with its stamp - the failure is remembered rather than
retried on every run, and retried as soon as its inputs change - and counted in
``summary["errors"]``. Queries read ``valid: True`` documents only.
"""

from __future__ import annotations

import gc
import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from maggma.core import Builder, Store
from tqdm import tqdm

from sc_inverse.stores import DATA_STORE, blob_references, stored_blob_uuids

logger = logging.getLogger(__name__)

#: Fields every target document gets from the builders.
STAMP = "_source_stamp"


def material_id(doc: dict) -> str:
    """One material = ``metadata.candidate_id`` if the flow set it (see
    :func:`sc_inverse.metadata.tag_candidate`), else formula + the outermost flow uuid."""
    md = doc.get("metadata") or {}
    if md.get("candidate_id") not in (None, ""):
        return str(md["candidate_id"])
    out = doc.get("output") or {}
    formula = out.get("formula_pretty") or "X"
    hosts = doc.get("hosts") or []
    return f"{formula}-{(hosts[-1] if hosts else doc.get('uuid', ''))[:8]}"


def stamp(docs: list[dict], extra: Any = None) -> str:
    """Change detector of a group of source documents (+ anything else the result depends on)."""
    keys = sorted((str(d.get("uuid")), int(d.get("index") or 1), str(d.get("completed_at")))
                  for d in docs)
    return hashlib.sha1(repr((keys, extra)).encode()).hexdigest()


def now() -> datetime:
    return datetime.now(timezone.utc)


class MaterialBuilder(Builder):
    """Base: job outputs (``tasks``) grouped per material → one ``target`` document each.

    Two passes keep unchanged materials cheap: a *light* pass reads only the small fields
    (ids, timestamps, metadata, kind) to group and stamp every task; the full documents are
    read only for the materials whose stamp changed.
    """

    #: small source fields read for every task (grouping, stamps); subclasses extend
    light_properties: tuple[str, ...] = ("uuid", "index", "completed_at", "metadata", "hosts",
                                         "output.calc_type", "output.formula_pretty")
    #: fields read for the tasks of materials to (re)build
    properties: tuple[str, ...] = ("uuid", "index", "completed_at", "metadata", "hosts", "output")
    #: indexes on the target's query fields
    target_indexes: tuple[str, ...] = ("material_id", "last_updated", "valid")
    #: indexes on the source fields the builders filter/group by (MongoDB; no-op embedded)
    source_indexes: tuple[str, ...] = ("uuid", "output.calc_type", "metadata.candidate_id",
                                       "completed_at")
    #: how many task ids per ``$in`` query when fetching full documents
    fetch_batch: int = 20000

    def __init__(self, tasks: Store, target: Store, chunk_size: int = 5000,
                 blobs: Store | None = None, **kwargs):
        self.tasks = tasks
        self.target = target
        self.blobs = blobs  # the job store's "data" store; None: blob references not checked
        self.target.key = "material_id"
        self.summary: dict[str, Any] = {}
        super().__init__(sources=[tasks, *([blobs] if blobs is not None else [])],
                         targets=[target], chunk_size=chunk_size, **kwargs)

    # -- to implement ---------------------------------------------------------------------
    def kind(self, doc: dict) -> bool:
        """Is this (light) task document an input of this builder at all?"""
        raise NotImplementedError

    def select(self, doc: dict) -> str | None:
        """None if the full ``doc`` is usable, else why it is skipped (cheap checks)."""
        return None

    def prepare(self, light_docs: list[dict]) -> None:
        """Hook run once on all light docs before stamping (e.g. load references)."""

    def group_extra(self, mid: str, light_docs: list[dict]) -> Any:
        """Extra dependency of a material (e.g. reference energies) that enters its stamp."""
        return None

    def build(self, mid: str, docs: list[dict], extra: Any) -> dict:
        raise NotImplementedError

    def before_build(self, material_ids: list[str]) -> None:
        """Hook run once with the materials about to be (re)built (e.g. warm caches)."""

    # -- maggma Builder ---------------------------------------------------------------------
    def ensure_indexes(self) -> None:
        for field in self.target_indexes:
            self.target.ensure_index(field)
        for field in self.source_indexes:
            self.tasks.ensure_index(field)

    def _source_criteria(self) -> dict:
        return {}

    def _fetch(self, uuids: list[str]) -> Iterator[dict]:
        for i in range(0, len(uuids), self.fetch_batch):
            chunk = uuids[i:i + self.fetch_batch]
            yield from self.tasks.query({"uuid": {"$in": chunk}}, properties=list(self.properties))

    def _skip(self, doc: dict, mid: str, why: str) -> None:
        logger.warning("%s: skipping task %s (material %s): %s", type(self).__name__,
                       doc.get("uuid"), mid, why)

    def _missing_blobs(self, docs: list[dict]) -> dict[int, list[str]]:
        """``id(doc) -> blob uuids it refers to that the "data" store does not hold``."""
        refs = {id(d): [u for name, u in blob_references(d.get("output")) if name == DATA_STORE]
                for d in docs}
        if self.blobs is None or not any(refs.values()):
            return {}
        wanted = sorted({u for us in refs.values() for u in us})
        have: set[str] = set()
        for i in range(0, len(wanted), self.fetch_batch):
            have |= stored_blob_uuids(self.blobs, wanted[i:i + self.fetch_batch])
        return {k: [u for u in us if u not in have] for k, us in refs.items()
                if any(u not in have for u in us)}

    def _accept(self, full: Iterator[dict], where: dict, todo: dict[str, dict]) -> None:
        """Put the usable full documents into their materials' items; skip and count the
        malformed ones and those whose blobs are missing."""
        accepted = []
        for doc in full:
            mid = where.get((doc.get("uuid"), doc.get("index")))
            if mid is None:
                continue
            why = self.select(doc)
            if why is not None:
                self.summary["skipped_docs"] += 1
                self._skip(doc, mid, why)
                continue
            accepted.append((mid, doc))
        missing = self._missing_blobs([doc for _, doc in accepted])
        for mid, doc in accepted:
            if id(doc) in missing:
                self.summary["missing_blobs"] += 1
                self._skip(doc, mid, f"blob(s) {', '.join(missing[id(doc)])} are missing from "
                           f"the job store's {DATA_STORE!r} store (the job's data was never "
                           "fully stored; re-run the job)")
                continue
            todo[mid]["docs"].append(doc)

    def get_items(self) -> Iterator[dict]:
        self.summary = {"builder": type(self).__name__, "source_docs": 0, "skipped_docs": 0,
                        "missing_blobs": 0, "items": 0, "processed": 0, "errors": 0,
                        "written": 0}
        self.ensure_indexes()
        # first build (empty target): everything is to do, so read full documents in one pass
        first = next(iter(self.target.query({}, properties=["material_id"], limit=1)), None) is None
        light = [d for d in self.tasks.query(
            self._source_criteria(),
            properties=list(self.properties if first else self.light_properties)) if self.kind(d)]
        self.summary["source_docs"] = len(light)
        self.prepare(light)
        groups: dict[str, list[dict]] = defaultdict(list)
        for doc in light:
            groups[material_id(doc)].append(doc)
        done = {d["material_id"]: d.get(STAMP)
                for d in self.target.query({}, properties=["material_id", STAMP])}
        todo: dict[str, dict] = {}
        for mid, docs in groups.items():
            extra = self.group_extra(mid, docs)
            st = stamp(docs, extra)
            if done.get(mid) != st:
                todo[mid] = {"material_id": mid, "docs": [], "extra": extra, STAMP: st,
                             "task_ids": sorted(str(d.get("uuid")) for d in docs)}
        where = {(d.get("uuid"), d.get("index")): material_id(d)
                 for mid in todo for d in groups[mid]}
        self._accept(light if first else self._fetch(sorted({u for u, _ in where})), where, todo)
        self.total = len(todo)
        self.summary["items"] = len(todo)
        logger.info("%s: %d source docs, %d materials to (re)build", type(self).__name__,
                    self.summary["source_docs"], len(todo))
        if todo:
            self.before_build(sorted(todo))
        yield from todo.values()

    def process_item(self, item: dict) -> dict:
        mid = item["material_id"]
        try:
            if not item["docs"]:
                raise ValueError("every task of this material is malformed or lacks its "
                                 "stored blobs (see the log)")
            doc = self.build(mid, item["docs"], item["extra"])
            doc["valid"] = True
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            # ValueError covers InputError and pydantic's ValidationError
            logger.error("%s: material %s not built: %s: %s", type(self).__name__, mid,
                         type(exc).__name__, exc)
            doc = {"valid": False, "errors": [f"{type(exc).__name__}: {exc}"],
                   "task_ids": item["task_ids"]}
        doc.update({"material_id": mid, STAMP: item[STAMP], "last_updated": now()})
        return doc

    def update_targets(self, items: list[dict]) -> None:
        items = [i for i in items if i]
        self.summary["processed"] += len(items)
        self.summary["errors"] += sum(1 for i in items if not i.get("valid"))
        if items:
            self.target.update(items, key="material_id")
            self.summary["written"] += len(items)

    def run_with_summary(self, progress: bool = False) -> dict[str, Any]:
        """Connect, run every item (serially, in chunks), close; return the summary.

        The cyclic garbage collector is paused meanwhile: the builders hold every source
        document in memory and allocate no reference cycles, and repeated collections over
        millions of decoded objects would otherwise cost more than the build itself."""
        self.connect()
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            batch = []
            items = self.get_items()
            if progress:
                items = tqdm(items, desc=type(self).__name__, unit=" materials", leave=False)
            for item in items:
                batch.append(self.process_item(item))
                if len(batch) >= self.chunk_size:
                    self.update_targets(batch)
                    batch = []
            self.update_targets(batch)
        finally:
            if gc_was_enabled:
                gc.enable()
            self.finalize()
        return dict(self.summary)
