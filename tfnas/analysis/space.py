"""NAS-Bench-BERT search-space analysis: which design choices drive GLUE, and a pruned sub-space.

Needs no scores: reads the benchmark with
:func:`tfnas.spaces.nasbench_bert.benchmark.load_benchmark` (500 trained architectures,
GLUE dev scores) and the space definition with ``load_search_space``.

The paper's conclusion (Serianni & Kalita 2023, §6; docs/PAPER.md): hidden size
and depth dominate GLUE (4 layers average 71.7 vs 2 layers 65.8; H = 256
70.4 vs 67.4), so the space can be pruned by a simple qualitative analysis.

Design choices:

- architecture level: ``hidden_size``, ``num_layers``;
- layer level: ``operation_type``, ``operation`` (type and parameter, e.g.
  ``SA:WMA``, ``DSC:9``), ``num_operation_heads``, ``feed_forward_dimension``,
  ``num_feed_forward``. A layer-level value is summarised per architecture by
  the *fraction of its layers* that use it; the table gives GLUE over the
  architectures where *any* layer / *all* layers use it, over *layers*
  (each layer weighted by its architecture's GLUE), and the Kendall τ between
  the fraction and GLUE.

Pruning (greedy, documented thresholds): repeatedly restrict the
architecture-level choice whose best and worst values differ most in median
GLUE inside the current sub-space, while that gap is at least ``min_gap``
points and each value has ``min_archs`` architectures; then drop every layer
value whose fraction has τ ≤ −``min_tau`` with GLUE inside the sub-space,
unless that would leave fewer than ``min_archs`` benchmark architectures
(a layer-level restriction must hold for every layer, so it empties the
sample fast).
The size of a sub-space counts every architecture the search space allows
under the restrictions.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from tfnas.spaces.nasbench_bert.benchmark import SCORE_KEYS, load_benchmark
from tfnas.spaces.nasbench_bert.definition import SpaceDefinition, load_search_space

ARCH_CHOICES = ("hidden_size", "num_layers")
LAYER_CHOICES = ("operation_type", "operation", "num_operation_heads", "feed_forward_dimension", "num_feed_forward")
CHOICE_COLUMNS = ["choice", "value", "level", "group", "n", "mean", "median", "q25", "q75", "tau_fraction"]


def _layer_value(layer: dict, choice: str) -> str:
    if choice == "operation":
        return f"{layer['operation_type']}:{layer['operation_parameter']}"
    return str(layer[choice])


def read_benchmark(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, SpaceDefinition]:
    """The benchmark as two tables, and its search space.

    Args:
        path: ``BERT_benchmark.json``; ``search_space.json`` is taken from the
            same folder when present, else from the data folder.

    Returns:
        ``(archs, layers, space)``: ``archs`` has one row per architecture
        (arch, benchmark_id, hidden_size, num_layers, GLUE columns);
        ``layers`` one row per layer (arch, layer, and each layer choice as a
        string).

    Raises:
        FileNotFoundError: no such benchmark file.
        ValueError: the file is malformed (from the reader).
    """
    path = Path(path)
    archs = load_benchmark(path)
    sibling = path.with_name("search_space.json")
    space = load_search_space(sibling if sibling.is_file() else None)
    arch_rows, layer_rows = [], []
    for a in archs:
        spec = a.spec
        arch_rows.append({"arch": a.index, "benchmark_id": a.benchmark_id, "hidden_size": str(spec["hidden_size"]),
                          "num_layers": str(len(spec["layers"])), **{k: a.truth[k] for k in SCORE_KEYS}})
        for i, lay in enumerate(spec["layers"]):
            layer_rows.append({"arch": a.index, "layer": i, **{c: _layer_value(lay, c) for c in LAYER_CHOICES}})
    return pd.DataFrame(arch_rows), pd.DataFrame(layer_rows), space


def layer_fractions(archs: pd.DataFrame, layers: pd.DataFrame, choice: str) -> pd.DataFrame:
    """Fraction of each architecture's layers that use each value of a layer choice, [archs × values]."""
    frac = pd.crosstab(layers["arch"], layers[choice], normalize="index")
    return frac.reindex(archs["arch"]).fillna(0.0)


def _summary(v: np.ndarray) -> dict[str, float]:
    if v.size == 0:
        return dict(n=0, mean=math.nan, median=math.nan, q25=math.nan, q75=math.nan)
    return dict(n=int(v.size), mean=float(v.mean()), median=float(np.median(v)),
                q25=float(np.quantile(v, 0.25)), q75=float(np.quantile(v, 0.75)))


def _tau(x: np.ndarray, y: np.ndarray) -> float:
    if np.ptp(x) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.kendalltau(x, y).statistic)


def choice_table(archs: pd.DataFrame, layers: pd.DataFrame, target: str = "glue") -> pd.DataFrame:
    """``target`` per value of every design choice (:data:`CHOICE_COLUMNS`; see module doc for groups)."""
    rows = []
    y = archs[target].to_numpy(dtype=float)
    for c in ARCH_CHOICES:
        for v in sorted(archs[c].unique(), key=_natural):
            rows.append(dict(choice=c, value=v, level="architecture", group="architecture",
                             **_summary(y[(archs[c] == v).to_numpy()]), tau_fraction=math.nan))
    glue_of = dict(zip(archs["arch"], y))
    for c in LAYER_CHOICES:
        frac = layer_fractions(archs, layers, c)
        for v in sorted(frac.columns, key=_natural):
            f = frac[v].to_numpy()
            tau = _tau(f, y)
            per_layer = layers.loc[layers[c] == v, "arch"].map(glue_of).to_numpy(dtype=float)
            for group, vals in (("layers", per_layer), ("any layer", y[f > 0]), ("all layers", y[f == 1])):
                rows.append(dict(choice=c, value=v, level="layer", group=group, **_summary(vals), tau_fraction=tau))
    return pd.DataFrame(rows, columns=CHOICE_COLUMNS)


def _natural(v: str) -> tuple:
    return (0, float(v), "") if v.replace(".", "", 1).isdigit() else (1, 0.0, v)


@dataclass
class SubSpace:
    """A pruned sub-space and how it compares with the full space.

    Attributes:
        restrictions: choice -> allowed values (strings, as in the tables).
        steps: one sentence per pruning step, in order.
        size / full_size: architectures the search space allows with / without
            the restrictions.
        n_bench / n_bench_full: benchmark architectures inside / in total.
        median / median_full / median_rest: median target inside, overall,
            and outside the sub-space (likewise ``mean``...).
        members: boolean mask over the benchmark's architectures.
    """

    restrictions: dict[str, list[str]]
    steps: list[str]
    size: int
    full_size: int
    n_bench: int
    n_bench_full: int
    median: float
    median_full: float
    median_rest: float
    mean: float
    mean_full: float
    mean_rest: float
    members: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=bool))

    def describe(self) -> str:
        """E.g. ``hidden_size ∈ {256}, num_layers ∈ {4}``."""
        if not self.restrictions:
            return "the full space (nothing pruned)"
        return ", ".join(f"{c} ∈ {{{', '.join(v)}}}" for c, v in self.restrictions.items())


def allowed_values(space: SpaceDefinition) -> dict[str, list[str]]:
    """Every choice's allowed values, as strings (``operation`` as ``TYPE:PARAM``)."""
    return {
        "hidden_size": [str(v) for v in space.hidden_sizes],
        "num_layers": [str(v) for v in space.num_layers],
        "operation_type": [str(o) for o in space.operation_parameters],
        "operation": [f"{o}:{p}" for o, ps in space.operation_parameters.items() for p in ps],
        "num_operation_heads": [str(v) for v in space.num_operation_heads],
        "feed_forward_dimension": [str(v) for v in space.feed_forward_dimensions],
        "num_feed_forward": [str(v) for v in space.num_feed_forwards],
    }


def space_size(space: SpaceDefinition, restrictions: dict[str, Sequence[str]] | None = None) -> int:
    """Number of architectures the search space allows under ``restrictions``.

    A layer is one (operation type, parameter, heads, feed-forward size,
    feed-forward count); an architecture is a hidden size and a sequence of
    ``num_layers`` layers: size = Σ_depth |H| · (layer options)^depth.
    """
    allowed = allowed_values(space)
    for c, vals in (restrictions or {}).items():
        allowed[c] = [v for v in allowed[c] if v in set(map(str, vals))]
    ops = [o for o in allowed["operation"] if o.split(":", 1)[0] in allowed["operation_type"]]
    per_layer = len(ops) * len(allowed["num_operation_heads"]) * len(allowed["feed_forward_dimension"]) * len(
        allowed["num_feed_forward"])
    return sum(len(allowed["hidden_size"]) * per_layer ** int(d) for d in allowed["num_layers"])


def _members(archs: pd.DataFrame, layers: pd.DataFrame, restrictions: dict[str, list[str]]) -> np.ndarray:
    keep = np.ones(len(archs), dtype=bool)
    for c, vals in restrictions.items():
        if c in ARCH_CHOICES:
            keep &= archs[c].isin(vals).to_numpy()
        else:
            bad = set(layers.loc[~layers[c].isin(vals), "arch"])
            keep &= ~archs["arch"].isin(bad).to_numpy()
    return keep


def suggest_subspace(
    archs: pd.DataFrame,
    layers: pd.DataFrame,
    space: SpaceDefinition,
    target: str = "glue",
    min_gap: float = 2.0,
    min_tau: float = 0.2,
    min_archs: int = 20,
) -> SubSpace:
    """Greedy pruning of the search space by median ``target`` (see module doc).

    Args:
        archs, layers, space: from :func:`read_benchmark`.
        target: ground-truth column (higher is better).
        min_gap: minimum difference of medians (target points) to restrict
            an architecture-level choice to its best value.
        min_tau: a layer value whose fraction has τ ≤ −min_tau is dropped.
        min_archs: minimum benchmark architectures per compared group.
    """
    y = archs[target].to_numpy(dtype=float)
    restrictions: dict[str, list[str]] = {}
    steps: list[str] = []
    keep = np.ones(len(archs), dtype=bool)
    while True:
        best = None
        for c in ARCH_CHOICES:
            if c in restrictions:
                continue
            groups = {v: y[keep & (archs[c] == v).to_numpy()] for v in archs.loc[keep, c].unique()}
            groups = {v: g for v, g in groups.items() if g.size >= min_archs}
            if len(groups) < 2:
                continue
            med = {v: float(np.median(g)) for v, g in groups.items()}
            hi, lo = max(med, key=med.get), min(med, key=med.get)
            gap = med[hi] - med[lo]
            if best is None or gap > best[0]:
                best = (gap, c, hi, med)
        if best is None or best[0] < min_gap:
            break
        gap, c, hi, med = best
        restrictions[c] = [hi]
        keep &= (archs[c] == hi).to_numpy()
        steps.append(f"{c} = {hi}: median {target} " + " vs ".join(f"{v}: {m:.2f}" for v, m in
                                                                   sorted(med.items(), key=lambda kv: -kv[1]))
                     + f" (gap {gap:.2f} ≥ {min_gap})")
    allowed = allowed_values(space)
    for c in LAYER_CHOICES:
        frac = layer_fractions(archs, layers, c)
        for v in frac.columns:
            if keep.sum() < min_archs:
                break
            tau = _tau(frac[v].to_numpy()[keep], y[keep])
            if math.isfinite(tau) and tau <= -min_tau:
                trial = {**restrictions, c: [a for a in restrictions.get(c, allowed[c]) if a != v]}
                trial_keep = _members(archs, layers, trial)
                if trial_keep.sum() < min_archs:
                    # Layer-level restrictions apply to every layer, so they empty the sample fast.
                    steps.append(f"kept {c} = {v} although τ(fraction of layers, {target}) = {tau:.2f}: dropping "
                                 f"it would leave {int(trial_keep.sum())} < {min_archs} benchmark architectures")
                    continue
                restrictions, keep = trial, trial_keep
                steps.append(f"drop {c} = {v}: τ(fraction of layers, {target}) = {tau:.2f} ≤ −{min_tau}")
    keep = _members(archs, layers, restrictions)
    inside, rest = y[keep], y[~keep]
    return SubSpace(
        restrictions, steps, space_size(space, restrictions), space_size(space), int(keep.sum()), len(y),
        float(np.median(inside)) if inside.size else math.nan, float(np.median(y)),
        float(np.median(rest)) if rest.size else math.nan,
        float(inside.mean()) if inside.size else math.nan, float(y.mean()),
        float(rest.mean()) if rest.size else math.nan, keep)


def cross_table(archs: pd.DataFrame, target: str = "glue") -> pd.DataFrame:
    """Median / mean / count of ``target`` for each (hidden_size, num_layers)."""
    g = archs.groupby(["hidden_size", "num_layers"])[target]
    return g.agg(["count", "mean", "median"]).reset_index()


def analyze_space(path: str | Path, target: str = "glue", **prune: Any) -> dict[str, Any]:
    """Everything the search-space view reports: tables, the sub-space, and the raw tables for plots.

    Args:
        path: ``BERT_benchmark.json``.
        target: the ground truth (default GLUE average).
        **prune: ``min_gap``, ``min_tau``, ``min_archs`` of :func:`suggest_subspace`.

    Returns:
        ``{"archs", "layers", "choices", "cross", "subspace"}``.
    """
    archs, layers, space = read_benchmark(path)
    if target not in archs.columns:
        raise ValueError(f"space target {target!r} is not one of {list(SCORE_KEYS)}")
    return {"archs": archs, "layers": layers, "choices": choice_table(archs, layers, target),
            "cross": cross_table(archs, target), "subspace": suggest_subspace(archs, layers, space, target, **prune),
            "target": target}
