"""Metric ranks as features, with undefined values imputed instead of dropped.

A metric can be undefined (NaN, or ±inf) for some architectures, e.g.
``activation_distance`` when the NASWOT kernel is singular. Dropping those
architectures from a combination would remove them from the search, so
every feature here keeps them:

- each metric becomes its normalised rank r = rank / n_defined ∈ (0, 1]
  among the architectures where it is defined (average ranks for ties),
  higher score = higher rank, or lower score = higher rank for a metric
  written ``-name``;
- where it is undefined, r is the median of the defined ranks, and an
  indicator column ``name:missing`` (1 where undefined) is added for each
  metric that has any undefined value, so a fitted model can learn what
  "undefined" says about quality.

Ranks use no ground truth: they are computed over the whole candidate pool.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats


def parse_metric(spec: str) -> tuple[str, float]:
    """``"name"`` -> ``("name", +1)``, ``"-name"`` -> ``("name", −1)`` (lower scores first)."""
    spec = str(spec).strip()
    return (spec[1:], -1.0) if spec.startswith("-") else (spec, 1.0)


def check_metrics(scores: pd.DataFrame, specs: Sequence[str]) -> None:
    """Raise a one-line ``KeyError`` when a metric of ``specs`` is not a column of ``scores``."""
    unknown = [s for s in specs if parse_metric(s)[0] not in scores.columns]
    if unknown:
        raise KeyError(f"unknown metric(s) {unknown}; the scores have {sorted(scores.columns)}")


def oriented(scores: pd.DataFrame, spec: str) -> np.ndarray:
    """The metric of ``spec`` as float [n], sign applied (higher = picked first), non-finite as NaN."""
    name, sign = parse_metric(spec)
    check_metrics(scores, [spec])
    x = sign * pd.to_numeric(scores[name], errors="coerce").to_numpy(dtype=float)
    return np.where(np.isfinite(x), x, np.nan)


def imputed_rank(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised rank of each defined value, the median rank where undefined.

    Args:
        x: scores [n], NaN where undefined.

    Returns:
        ``(r, missing)``: ranks [n] in (0, 1] (all 0.5 when nothing is
        defined) and the boolean mask of undefined values [n].
    """
    x = np.asarray(x, dtype=float)
    missing = ~np.isfinite(x)
    r = np.full(len(x), 0.5)
    if (~missing).any():
        defined = stats.rankdata(x[~missing]) / (~missing).sum()
        r[~missing] = defined
        r[missing] = np.median(defined)
    return r, missing


def rank_features(scores: pd.DataFrame, specs: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Imputed ranks of every metric of ``specs`` plus missing-value indicators.

    Args:
        scores: candidates' score table, one row per architecture.
        specs: metric names (``-name`` flips the order).

    Returns:
        ``(X, names)``: features [n, m + k] (m ranks, then one indicator per
        metric with any undefined value) and their column names.

    Raises:
        KeyError: a metric is not a column.
    """
    check_metrics(scores, specs)
    cols, names, flags, flag_names = [], [], [], []
    for spec in specs:
        r, missing = imputed_rank(oriented(scores, spec))
        cols.append(r)
        names.append(spec)
        if missing.any():
            flags.append(missing.astype(float))
            flag_names.append(f"{parse_metric(spec)[0]}:missing")
    x = np.column_stack(cols + flags) if cols else np.empty((len(scores), 0))
    return x, names + flag_names


def rank_average(scores: pd.DataFrame, specs: Sequence[str]) -> np.ndarray:
    """Mean imputed rank over the metrics of ``specs`` [n] (Abdelfattah et al. 2021's vote, as ranks).

    Raises:
        KeyError: a metric is not a column.
        ValueError: ``specs`` is empty.
    """
    if not len(specs):
        raise ValueError("a rank combination needs at least one metric")
    x, _ = rank_features(scores, specs)
    return x[:, : len(specs)].mean(axis=1)


def usable_metrics(scores: pd.DataFrame, specs: Sequence[str] | None = None, min_coverage: float = 0.5) -> list[str]:
    """Metrics worth using as features: defined on ≥ ``min_coverage`` of the rows and not constant.

    Args:
        scores: score table.
        specs: candidate metrics (default: every numeric column).
        min_coverage: least fraction of rows where the metric is defined.
    """
    specs = list(specs) if specs is not None else [c for c in scores.columns
                                                   if pd.api.types.is_numeric_dtype(scores[c])]
    keep = []
    for s in specs:
        x = oriented(scores, s)
        ok = np.isfinite(x)
        if ok.mean() >= min_coverage and ok.any() and np.ptp(x[ok]) > 0:
            keep.append(s)
    return keep
