"""ALIGNN on alignn's pure-torch backend (no DGL): graph building, model loading, batched forward.

Why a thin layer of our own: alignn's pretrained helpers predict one structure per call and the
DGL-free path has no batched inference entry point; we reuse alignn's graph builder
(:func:`alignn.graphs.Graph.atom_dgl_multigraph` with ``neighbor_strategy="pure_torch"``), its
batching (:func:`alignn.torch_graph_builder.batch_torch_graph_pairs`) and its model class
(:class:`alignn.models.alignn_atomwise_pure.ALIGNNAtomWisePure`), and only add the glue.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure
from tqdm.auto import tqdm

from sc_inverse.errors import InputError, ModelLoadError

# torch, alignn and jarvis-tools are imported inside the functions that use them: the screen,
# the predictors and the training-data readers import this module without predicting

log = logging.getLogger(__name__)

#: model names whose weights load into the pure-torch ALIGNN class
PURE_COMPATIBLE_MODELS = ("alignn_atomwise_pure", "alignn_atomwise")
#: neighbour strategies we can build without DGL
SUPPORTED_GRAPHS = ("pure_torch", "k-nearest", "radius_graph")


class GraphBuildError(InputError):
    """A structure cannot be turned into an ALIGNN graph (unknown element, no neighbours, ...)."""


@dataclass(frozen=True)
class GraphSpec:
    """How structures become graphs; must equal the settings the model was trained with."""

    neighbor_strategy: str = "pure_torch"
    cutoff: float = 8.0
    max_neighbors: int | None = 12
    three_body_cutoff: float | None = 3.5
    cutoff_extra: float = 3.0
    atom_features: str = "cgcnn"
    use_canonize: bool = True

    @classmethod
    def from_training_config(cls, cfg: dict[str, Any]) -> GraphSpec:
        """Read the graph fields of an alignn ``TrainingConfig`` dict (``config.json``)."""
        d = cls()
        return cls(
            neighbor_strategy=cfg.get("neighbor_strategy", d.neighbor_strategy),
            cutoff=float(cfg.get("cutoff", d.cutoff)),
            max_neighbors=cfg.get("max_neighbors", d.max_neighbors),
            three_body_cutoff=cfg.get("three_body_cutoff", d.three_body_cutoff),
            cutoff_extra=float(cfg.get("cutoff_extra", d.cutoff_extra)),
            atom_features=cfg.get("atom_features", d.atom_features),
            use_canonize=bool(cfg.get("use_canonize", d.use_canonize)),
        )


def to_jarvis_atoms(structure: Structure):
    """pymatgen Structure -> jarvis Atoms (the type alignn's builders take)."""
    from jarvis.core.atoms import Atoms

    return Atoms(
        lattice_mat=structure.lattice.matrix,
        coords=structure.frac_coords,
        elements=[site.specie.symbol for site in structure],
        cartesian=False,
    )


@lru_cache(maxsize=1)
def cgcnn_elements() -> frozenset[int]:
    """Atomic numbers that have CGCNN features (jarvis silently substitutes others: we reject)."""
    from jarvis.core import specie

    return frozenset(int(k) for k in json.loads(Path(specie.cgcnn_feature_json).read_text()))


def _check_structure(structure: Structure, spec: GraphSpec | None = None) -> None:
    if not structure.is_ordered:
        raise GraphBuildError("disordered structure (partial occupancies) cannot be graphed")
    if len(structure) == 0:
        raise GraphBuildError("structure has no sites")
    if not np.all(np.isfinite(structure.lattice.matrix)) or not np.all(
        np.isfinite(structure.frac_coords)
    ):
        raise GraphBuildError("lattice or coordinates contain NaN/inf")
    if structure.volume < 1e-3:
        raise GraphBuildError(f"degenerate cell (volume {structure.volume:.3g} A^3)")
    if spec is not None and spec.atom_features == "cgcnn":
        missing = sorted({el.symbol for el in structure.composition if el.Z not in cgcnn_elements()})
        if missing:
            raise GraphBuildError(f"no cgcnn atom features for element(s) {missing}")


def _graph_from_edges(atoms, u, v, r, spec: GraphSpec):
    """TorchGraph pair from an edge list (k-nearest / radius_graph models trained with DGL)."""
    import torch
    from alignn.torch_graph_builder import TorchGraph, _line_graph_edges, torch_bond_cosines
    from jarvis.core.specie import get_node_attributes

    dtype = torch.get_default_dtype()
    feats = np.array([get_node_attributes(s, atom_features=spec.atom_features) for s in atoms.elements])
    src = torch.as_tensor(np.asarray(u), dtype=torch.long)
    dst = torch.as_tensor(np.asarray(v), dtype=torch.long)
    rr = torch.as_tensor(np.asarray(r), dtype=dtype)
    n = atoms.num_atoms
    g = TorchGraph(
        num_nodes=n,
        src=src,
        dst=dst,
        ndata={
            "atom_features": torch.as_tensor(feats, dtype=dtype),
            "frac_coords": torch.as_tensor(np.asarray(atoms.frac_coords), dtype=dtype),
            "V": torch.full((n,), float(atoms.volume), dtype=dtype),
        },
        edata={"r": rr},
    )
    lg_src, lg_dst = _line_graph_edges(src, dst, n)
    lg = TorchGraph(
        num_nodes=g.num_edges,
        src=lg_src,
        dst=lg_dst,
        ndata={"r": rr},
        edata={"h": torch_bond_cosines(rr[lg_src], rr[lg_dst])},
    )
    return g, lg


def _pure_torch_graph(atoms, cutoff: float, max_neighbors: int | None, atom_features: str,
                      three_body_cutoff: float | None):
    """alignn's pure-torch builder, called as ``Graph.atom_dgl_multigraph(neighbor_strategy=
    "pure_torch")`` calls it, but with the pure-torch topology explicitly: alignn otherwise tries
    ``import matscipy`` on every structure (a failed import costs ~10 % of graph building)."""
    from alignn.torch_graph_builder import build_pure_torch_graph

    return build_pure_torch_graph(
        atoms=atoms,
        two_body_cutoff=cutoff,
        three_body_cutoff=three_body_cutoff if three_body_cutoff is not None else cutoff,
        max_neighbors=max_neighbors,
        atom_features=atom_features,
        use_matscipy_topology=False,
        compute_line_graph=True,
    )


def structure_to_graph(structure: Structure, spec: GraphSpec):
    """Build the ``(g, lg)`` TorchGraph pair for one structure or raise :class:`GraphBuildError`."""
    _check_structure(structure, spec)
    atoms = to_jarvis_atoms(structure)
    try:
        if spec.neighbor_strategy == "pure_torch":
            g, lg = _pure_torch_graph(atoms, spec.cutoff, spec.max_neighbors, spec.atom_features,
                                      spec.three_body_cutoff)
        elif spec.neighbor_strategy == "k-nearest":
            from alignn.graphs import build_undirected_edgedata, nearest_neighbor_edges

            edges, _ = nearest_neighbor_edges(
                atoms=atoms,
                cutoff=spec.cutoff,
                max_neighbors=spec.max_neighbors,
                use_canonize=spec.use_canonize,
            )
            u, v, r, _ = build_undirected_edgedata(atoms, edges)
            g, lg = _graph_from_edges(atoms, u, v, r, spec)
        elif spec.neighbor_strategy == "radius_graph":
            # alignn's radius_graph needs DGL; the same graph (every pair within the cutoff,
            # every edge pair a triplet) comes from the pure-torch builder without caps
            g, lg = _pure_torch_graph(atoms, spec.cutoff, None, spec.atom_features, spec.cutoff)
        else:  # checked at load time; kept as a guard
            raise GraphBuildError(f"unsupported neighbor_strategy {spec.neighbor_strategy!r}")
    except GraphBuildError:
        raise
    except Exception as exc:  # noqa: BLE001 - any builder failure is a per-structure rejection
        raise GraphBuildError(f"graph builder failed: {type(exc).__name__}: {exc}") from exc
    if g.num_edges == 0:
        raise GraphBuildError(f"no neighbours within {spec.cutoff} A (isolated atoms)")
    feats = g.ndata["atom_features"]
    if not bool(feats.isfinite().all()):
        bad = sorted({s for s, row in zip(atoms.elements, feats, strict=False) if not bool(row.isfinite().all())})
        raise GraphBuildError(f"no {spec.atom_features} features for element(s) {bad}")
    return g, lg


@dataclass
class LoadedAlignn:
    """An ALIGNN network plus the training config it came with."""

    model: Any
    config: dict[str, Any]
    graph: GraphSpec
    source: str

    @property
    def target(self) -> str | None:
        """Property name: ours (``sc_inverse.target``, e.g. ``tc_K``) or alignn's ``target``."""
        return (self.config.get("sc_inverse") or {}).get("target") or self.config.get("target")


def build_model(model_cfg: dict[str, Any]):
    """Instantiate ``ALIGNNAtomWisePure`` from the ``model`` section of a config.json."""
    from alignn.models.alignn_atomwise_pure import ALIGNNAtomWisePure, ALIGNNAtomWisePureConfig

    name = model_cfg.get("name")
    if name not in PURE_COMPATIBLE_MODELS:
        raise ModelLoadError(
            f"model type {name!r} needs DGL; only {PURE_COMPATIBLE_MODELS} load on the pure-torch backend"
        )
    fields = set(ALIGNNAtomWisePureConfig.model_fields)
    kwargs = {k: v for k, v in model_cfg.items() if k in fields}
    kwargs["name"] = "alignn_atomwise_pure"
    return ALIGNNAtomWisePure(ALIGNNAtomWisePureConfig(**kwargs))


def load_alignn_dir(path: str | Path, device: str = "cpu", source: str | None = None) -> LoadedAlignn:
    """Load ``config.json`` + ``best_model.pt`` from a directory (ours or alignn's)."""
    import torch

    path = Path(path)
    cfg_file, weights = path / "config.json", path / "best_model.pt"
    for f in (cfg_file, weights):
        if not f.is_file():
            raise ModelLoadError(f"ALIGNN model dir {path}: missing {f.name}")
    try:
        config = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{cfg_file}: invalid JSON ({exc})") from exc
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise ModelLoadError(f"{cfg_file}: not an alignn training config (no 'model' section)")
    spec = GraphSpec.from_training_config(config)
    if spec.neighbor_strategy not in SUPPORTED_GRAPHS:
        raise ModelLoadError(
            f"{cfg_file}: neighbor_strategy {spec.neighbor_strategy!r} is not supported without DGL "
            f"(supported: {SUPPORTED_GRAPHS})"
        )
    model = build_model(config["model"])
    try:
        state = torch.load(weights, map_location=device, weights_only=True)
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        missing, unexpected = model.load_state_dict(state, strict=False)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"{weights}: cannot load weights ({type(exc).__name__}: {exc})") from exc
    missing = [k for k in missing if k != "_species_table"]
    if missing or unexpected:
        raise ModelLoadError(
            f"{weights}: weights do not match config.json (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    model.to(device).eval()
    return LoadedAlignn(model=model, config=config, graph=spec, source=source or str(path))


def _fast_path_ok(model) -> bool:
    """Configs :func:`inference_forward` reproduces exactly (else alignn's own forward runs)."""
    c = model.config
    return (not model.training and c.conv_type == "alignn" and not c.calculate_gradient
            and not c.use_cutoff_function and not c.classification and c.link == "identity"
            and not c.energy_mult_natoms and not c.use_penalty and c.lg_on_fly
            and not c.additional_output_features)


def _edge_gated_conv(conv, src, dst, num_nodes: int, x, y, need_y: bool, gate=None):
    """``EdgeGatedGraphConvPure.forward_tensors`` with in-place updates and, when the edge
    output is never used again (last ALIGNN layer's triplets, last GCN layer's bonds), without
    computing it; same operations in the same order otherwise, so values agree to float noise.
    ``gate`` is ``conv.edge_gate(y)`` when the caller has it cheaper (deduplicated rows)."""
    import torch
    import torch.nn.functional as F

    m = conv.src_gate(x).index_select(0, src)
    m += conv.dst_gate(x).index_select(0, dst)
    m += conv.edge_gate(y) if gate is None else gate
    sigma = torch.sigmoid(m)
    msg = conv.dst_update(x).index_select(0, src)
    msg *= sigma
    idx = dst.unsqueeze(-1).expand_as(msg)
    sums = torch.zeros((num_nodes, msg.shape[1]), dtype=msg.dtype, device=msg.device)
    sum_h = sums.scatter_add_(0, idx, msg)
    sum_sigma = torch.zeros_like(sum_h).scatter_add_(0, idx, sigma)
    sum_sigma += 1e-6
    x_new = conv.src_update(x)
    x_new += sum_h / sum_sigma
    x_new = F.silu(conv.bn_nodes(x_new), inplace=True)
    y_new = None
    if need_y:
        y_new = F.silu(conv.bn_edges(m), inplace=True)
    if conv.residual:
        x_new += x
        if need_y:
            y_new += y
    return x_new, y_new


def inference_forward(model, g, lg):
    """ALIGNN forward for inference only (no autograd, no forces): per-graph ``out``.

    Why: on CPU the batched forward is bound by triplet-sized (T x hidden) matmuls and
    elementwise ops. This path (1) skips the two edge updates whose results the readout never
    uses, (2) embeds each *distinct* bond angle once: the first layer's triplet features depend
    on the angle cosine alone, and crystals repeat angles (JARVIS-SC cells: 16 % of triplet
    cosines are distinct), so the angle MLP and the first triplet gate run on the distinct
    cosines and are gathered (~20 % fewer multiply-adds), (3) avoids temporaries. Otherwise it is
    alignn's ``ALIGNNAtomWisePure.forward`` operation for operation.
    """
    import torch
    from alignn.models.alignn_atomwise_pure import _bond_cosines, scatter_mean

    r = g.edata["r"]
    x = model.atom_embedding(g.ndata["atom_features"])
    y = model.edge_embedding(torch.norm(r, dim=1))
    n_alignn, n_gcn = len(model.alignn_layers), len(model.gcn_layers)
    z = gate0 = None
    if n_alignn:
        cos_u, inv = torch.unique(_bond_cosines(r[lg.src], r[lg.dst]), return_inverse=True)
        z_u = model.angle_embedding(cos_u)
        z = z_u.index_select(0, inv)
        gate0 = model.alignn_layers[0].edge_update.edge_gate(z_u).index_select(0, inv)
    for i, layer in enumerate(model.alignn_layers):
        x, m = _edge_gated_conv(layer.node_update, g.src, g.dst, g.num_nodes, x, y, need_y=True)
        y, z = _edge_gated_conv(layer.edge_update, lg.src, lg.dst, lg.num_nodes, m, z,
                                need_y=i < n_alignn - 1, gate=gate0 if i == 0 else None)
    for i, layer in enumerate(model.gcn_layers):
        x, y = _edge_gated_conv(layer, g.src, g.dst, g.num_nodes, x, y, need_y=i < n_gcn - 1)
    batch = g.node_batch_id
    out = model.fc(scatter_mean(x, batch, g.batch_size))
    return out.squeeze(-1) if model.config.output_features == 1 else out


def batched_forward(loaded: LoadedAlignn, pairs: Sequence[tuple], device: str = "cpu",
                    fast: bool = True) -> np.ndarray:
    """One forward pass over many graphs; returns shape (n,) or (n, k) float64.

    ``fast`` uses :func:`inference_forward` where the config allows (else alignn's forward).
    """
    import torch
    from alignn.torch_graph_builder import batch_torch_graph_pairs

    g, lg = batch_torch_graph_pairs(list(pairs))
    with torch.inference_mode():
        g, lg = g.to(device), lg.to(device)
        if fast and _fast_path_ok(loaded.model):
            out = inference_forward(loaded.model, g, lg)
        else:
            out = loaded.model((g, lg, None))["out"]
    arr = out.detach().to("cpu", torch.float64).numpy()
    n = len(pairs)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.shape[0] != n:  # output_features>1 with B=1 squeezes oddly
        arr = arr.reshape(n, -1)
    return arr


#: default cap on triplets (line-graph edges) per forward pass, i.e. ~14 JARVIS-SC cells: the
#: triplet-sized activations (T x hidden float32, 4 MB each) then stay in a CPU's L3 cache.
#: Measured on 2 cores (benchmarks/bench_screening.py): 8192 beat 2048/4096/16384 with 2 threads
#: and tied 4096 with 1; one pass over 64 structures (~36 000 triplets) is slower per structure.
DEFAULT_MAX_TRIPLETS = 8192


def _forward_chunk(loaded: LoadedAlignn, idx: list[int], pairs: list, device: str,
                   values: np.ndarray, errors: list[str | None], fast: bool = True) -> None:
    """Forward one batch; if it fails, retry graph by graph so only the culprit is reported."""
    try:
        chunks = [(idx, batched_forward(loaded, pairs, device, fast=fast))]
    except Exception as exc:  # noqa: BLE001 - isolate the failing structure below
        log.warning("batch forward failed (%s); retrying one by one", exc)
        chunks = []
        for i, p in zip(idx, pairs, strict=False):
            try:
                chunks.append(([i], batched_forward(loaded, [p], device, fast=fast)))
            except Exception as exc1:  # noqa: BLE001
                errors[i] = f"model forward failed: {type(exc1).__name__}: {exc1}"
    for ids, out in chunks:
        flat = out if out.ndim == 1 else out[:, 0]
        for i, v in zip(ids, flat, strict=False):
            if math.isfinite(float(v)):
                values[i] = float(v)
            else:
                errors[i] = "model returned a non-finite value (NaN/inf)"


def predict_structures(
    loaded: LoadedAlignn,
    structures: Sequence[Structure],
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = False,
    max_triplets: int | None = DEFAULT_MAX_TRIPLETS,
    fast: bool = True,
) -> tuple[np.ndarray, list[str | None]]:
    """Batched predictions with per-structure errors; failures are NaN, never an exception.

    Graphs are built one by one (a rejected structure only loses itself) and collected into a
    batch until it holds ``batch_size`` graphs or adding the next would exceed ``max_triplets``
    line-graph edges (``None``: no cap; a single larger graph still goes alone). Each batch is one
    forward pass; if it fails, it is retried one graph at a time so that the culprit alone is
    reported. Results do not depend on how structures are batched (up to float rounding).
    ``fast=False`` runs alignn's own forward (for benchmarks and equality tests).
    """
    return predict_structures_shared_graphs([loaded], structures, batch_size=batch_size, device=device,
                                            progress=progress, max_triplets=max_triplets, fast=fast)[0]


def predict_structures_shared_graphs(
    models: Sequence[LoadedAlignn],
    structures: Sequence[Structure],
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = False,
    max_triplets: int | None = DEFAULT_MAX_TRIPLETS,
    fast: bool = True,
) -> list[tuple[np.ndarray, list[str | None]]]:
    """:func:`predict_structures` for several models with the same :class:`GraphSpec` (e.g. an
    ensemble's ALIGNN seeds): each graph is built once and fed to every model."""
    if not models:
        return []
    spec = models[0].graph
    if any(m.graph != spec for m in models):
        raise ValueError("predict_structures_shared_graphs needs models with one GraphSpec")
    n = len(structures)
    results = [(np.full(n, np.nan), [None] * n) for _ in models]
    batch_size = max(1, int(batch_size))
    cap = math.inf if not max_triplets else int(max_triplets)
    bar = None
    if progress:
        bar = tqdm(total=n, desc=f"ALIGNN {models[0].target or ''}".strip(), unit="struct")
    idx: list[int] = []
    pairs: list = []
    triplets = 0

    def flush() -> None:
        for m, (values, errors) in zip(models, results, strict=True):
            _forward_chunk(m, idx, pairs, device, values, errors, fast)
        if bar is not None:
            bar.update(len(idx))

    for i, s in enumerate(structures):
        try:
            pair = structure_to_graph(s, spec)
        except GraphBuildError as exc:
            for _, errors in results:
                errors[i] = f"graph rejected: {exc}"
            pair = None
        if pair is not None:
            t = int(pair[1].num_edges)
            if pairs and triplets + t > cap:
                flush()
                idx, pairs, triplets = [], [], 0
            idx.append(i)
            pairs.append(pair)
            triplets += t
        elif bar is not None:
            bar.update(1)
        if len(pairs) >= batch_size:
            flush()
            idx, pairs, triplets = [], [], 0
    if pairs:
        flush()
    if bar is not None:
        bar.close()
    return results
