"""What the project's builders share: grouping job outputs by material, change detection,
error accounting and batched writes.

Incremental by ``last_updated``: every target document records ``_source_stamp`` - a hash of
the ``(uuid, index, completed_at)`` of the source documents it was built from (jobflow writes
``completed_at`` whenever a job finishes, so a re-run, a new task or a deleted task changes it).
``get_items`` yields only materials whose stamp differs, so a second run processes 0 items.

Errors: a source document that is not a usable task document is logged, skipped and counted
(``summary["skipped_docs"]``); a material whose processing fails is written as a placeholder
``{"valid": False, "errors": [...]}`` with its stamp (so the failure is remembered rather than
retried forever; it is retried as soon as its inputs change) and counted in
``summary["errors"]``. Queries read ``valid: True`` documents only.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from maggma.core import Builder, Store

logger = logging.getLogger(__name__)

#: Fields every target document gets from the builders.
STAMP = "_source_stamp"


def material_id(doc: dict) -> str:
    """One material = ``metadata.candidate_id`` if the flow set it (see
    :func:`sc_inverse.workflows.tag_candidate`), else formula + the outermost flow uuid."""
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
    return hashlib.sha1(json.dumps([keys, extra], default=str).encode()).hexdigest()


def now() -> datetime:
    return datetime.now(timezone.utc)


class MaterialBuilder(Builder):
    """Base: job outputs (``tasks``) grouped per material → one ``target`` document each."""

    #: source fields to read (projection); subclasses extend
    properties: tuple[str, ...] = ("uuid", "index", "completed_at", "metadata", "hosts", "name")
    #: indexes on the target's query fields
    target_indexes: tuple[str, ...] = ("material_id", "last_updated", "valid")

    def __init__(self, tasks: Store, target: Store, chunk_size: int = 5000, **kwargs):
        self.tasks = tasks
        self.target = target
        self.target.key = "material_id"
        self.summary: dict[str, Any] = {}
        super().__init__(sources=[tasks], targets=[target], chunk_size=chunk_size, **kwargs)

    # -- to implement ---------------------------------------------------------------------
    def select(self, doc: dict) -> str | None:
        """Return None if ``doc`` is a usable input, else why it is skipped (cheap checks);
        raise nothing. Docs that are simply of another kind return ``"ignore"``."""
        raise NotImplementedError

    def group_extra(self, mid: str, docs: list[dict]) -> Any:
        """Extra dependency of a material (e.g. reference energies) that enters its stamp."""
        return None

    def build(self, mid: str, docs: list[dict], extra: Any) -> dict:
        raise NotImplementedError

    def prepare(self, docs: list[dict]) -> None:
        """Hook run once on all usable docs before grouping (e.g. load references)."""

    # -- maggma Builder ---------------------------------------------------------------------
    #: indexes on the source fields the builders filter/group by (MongoDB; no-op embedded)
    source_indexes: tuple[str, ...] = ("output.calc_type", "metadata.candidate_id", "completed_at")

    def ensure_indexes(self) -> None:
        for field in self.target_indexes:
            self.target.ensure_index(field)
        for field in self.source_indexes:
            self.tasks.ensure_index(field)

    def _source_criteria(self) -> dict:
        return {}

    def get_items(self) -> Iterator[dict]:
        self.summary = {"builder": type(self).__name__, "source_docs": 0, "skipped_docs": 0,
                        "items": 0, "processed": 0, "errors": 0, "written": 0}
        self.ensure_indexes()
        groups: dict[str, list[dict]] = defaultdict(list)
        usable = []
        for doc in self.tasks.query(self._source_criteria(), properties=list(self.properties)):
            why = self.select(doc)
            if why == "ignore":
                continue
            self.summary["source_docs"] += 1
            if why is not None:
                self.summary["skipped_docs"] += 1
                logger.warning("%s: skipping task %s: %s", type(self).__name__, doc.get("uuid"), why)
                continue
            usable.append(doc)
        self.prepare(usable)
        for doc in usable:
            groups[material_id(doc)].append(doc)
        done = {d["material_id"]: d.get(STAMP)
                for d in self.target.query({}, properties=["material_id", STAMP])}
        todo = []
        for mid, docs in groups.items():
            extra = self.group_extra(mid, docs)
            st = stamp(docs, extra)
            if done.get(mid) != st:
                todo.append({"material_id": mid, "docs": docs, "extra": extra, STAMP: st})
        self.total = len(todo)
        self.summary["items"] = len(todo)
        logger.info("%s: %d source docs, %d materials to (re)build", type(self).__name__,
                    self.summary["source_docs"], len(todo))
        yield from todo

    def process_item(self, item: dict) -> dict:
        mid = item["material_id"]
        try:
            doc = self.build(mid, item["docs"], item["extra"])
            doc["valid"] = True
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            # ValueError covers InputError and pydantic's ValidationError
            logger.error("%s: material %s not built: %s: %s", type(self).__name__, mid,
                         type(exc).__name__, exc)
            doc = {"valid": False, "errors": [f"{type(exc).__name__}: {exc}"],
                   "task_ids": sorted(d.get("uuid") for d in item["docs"])}
        doc.update({"material_id": mid, STAMP: item[STAMP], "last_updated": now()})
        return doc

    def update_targets(self, items: list[dict]) -> None:
        items = [i for i in items if i]
        self.summary["processed"] += len(items)
        self.summary["errors"] += sum(1 for i in items if not i.get("valid"))
        if items:
            self.target.update(items, key="material_id")
            self.summary["written"] += len(items)

    def run_with_summary(self) -> dict[str, Any]:
        """Connect, run every item (serially, in chunks), close; return the summary."""
        self.connect()
        try:
            batch = []
            for item in self.get_items():
                batch.append(self.process_item(item))
                if len(batch) >= self.chunk_size:
                    self.update_targets(batch)
                    batch = []
            self.update_targets(batch)
        finally:
            self.finalize()
        return dict(self.summary)
