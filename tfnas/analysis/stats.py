"""Rank and linear correlations of scores with ground truth, with bootstrap confidence intervals.

Kendall τ-b, Spearman ρ and Pearson r with their p-values come from
:mod:`scipy.stats` (``kendalltau``, ``spearmanr``, ``pearsonr``). Confidence
intervals are percentile bootstrap intervals (Efron & Tibshirani 1993, §13.3):
architectures are resampled with replacement ``n_boot`` times with a seeded
:class:`numpy.random.Generator`; τ is recomputed by ``scipy.stats.kendalltau``
on every resample; ρ is recomputed as the Pearson correlation of the
resample's average ranks (which *is* Spearman's ρ with ties), vectorised over
resamples (:func:`resample_ranks`; tested equal to ``scipy.stats.spearmanr``
on every resample).

Every call with the same ``n`` and ``seed`` draws the same resamples, so the
intervals of different metrics on the same architectures are paired.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from tfnas.analysis.conventions import quality_sign
from tfnas.analysis.exclude import usable

#: Columns of ``correlations.csv``, in order.
CORRELATION_COLUMNS = [
    "metric", "target", "n",
    "kendall_tau", "kendall_p", "kendall_ci_low", "kendall_ci_high",
    "spearman_rho", "spearman_p", "spearman_ci_low", "spearman_ci_high",
    "pearson_r", "pearson_p",
]

#: Fewer usable architectures than this: no statistics (reported as NaN).
MIN_N = 3
#: Fewer usable architectures than this: no bootstrap intervals (NaN). With a
#: handful of points most resamples repeat the same few architectures and the
#: percentile interval says little about the population.
MIN_CI_N = 10

# scipy's kendalltau itself, without its nan-policy/axis decorator: the
# decorator's argument inspection costs more than the statistic on a few
# hundred points, and bootstrap inputs are already finite 1-d arrays.
_kendalltau = getattr(stats.kendalltau, "__wrapped__", stats.kendalltau)


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """Resampling indices, int array [n_boot, n], from ``default_rng(seed)``."""
    if n < 1 or n_boot < 1:
        raise ValueError(f"bootstrap needs n >= 1 and n_boot >= 1, got n={n}, n_boot={n_boot}")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap_kendall(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Kendall τ-b of each resample ``(x[i], y[i])`` for the rows i of ``idx`` [n_boot, n].

    Returns:
        float array [n_boot]; NaN where a resample is constant.
    """
    out = np.empty(len(idx))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for b, i in enumerate(idx):
            # asymptotic: the statistic is the same and no exact p-value is computed.
            out[b] = _kendalltau(x[i], y[i], method="asymptotic").statistic
    return out


def resample_counts(idx: np.ndarray, n: int) -> np.ndarray:
    """How many times each of n items appears in each resample: int array [n_boot, n]."""
    b = idx.shape[0]
    flat = (idx + np.arange(b)[:, None] * n).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n)


def resample_ranks(v: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Average rank of each original item inside each resample, without sorting the resamples.

    Args:
        v: values [n].
        counts: multiplicities [n_boot, n] (:func:`resample_counts`).

    Returns:
        float array [n_boot, n]: the rank (1-based, ties averaged) that item
        j's copies get in resample b; meaningless where ``counts[b, j] == 0``.
        Equal to ``scipy.stats.rankdata(v[idx[b]])`` at the resampled items.
    """
    order = np.argsort(v, kind="stable")
    vs = v[order]
    new_group = np.r_[True, vs[1:] != vs[:-1]]
    starts = np.flatnonzero(new_group)
    group = np.cumsum(new_group) - 1
    per_group = np.add.reduceat(counts[:, order], starts, axis=1)
    # A group of g tied copies after `before` smaller ones occupies ranks before+1 .. before+g.
    grank = np.cumsum(per_group, axis=1) - per_group + (per_group + 1) / 2
    ranks = np.empty(counts.shape, dtype=float)
    ranks[:, order] = grank[:, group]
    return ranks


def bootstrap_spearman(x: np.ndarray, y: np.ndarray, idx: np.ndarray, chunk_elems: int = 4_000_000) -> np.ndarray:
    """Spearman ρ of each resample ``(x[i], y[i])`` for the rows i of ``idx`` [n_boot, n], vectorised.

    ρ is the Pearson r of the resample's average ranks. Each resample is
    represented by the multiplicity of every architecture, so the ranks come
    from one sort of ``x`` and ``y`` plus cumulative counts (linear time per
    resample) instead of sorting every resample; resamples are processed in
    chunks of about ``chunk_elems`` numbers to bound memory.

    Returns:
        float array [n_boot]; NaN where a resample is constant.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(x)
    out = np.empty(len(idx))
    step = max(1, chunk_elems // max(n, 1))
    mid = (n + 1) / 2  # mean rank of any sample of size n
    for lo in range(0, len(idx), step):
        c = resample_counts(idx[lo:lo + step], n)
        dx = resample_ranks(x, c) - mid
        dy = resample_ranks(y, c) - mid
        num = (c * dx * dy).sum(axis=1)
        den = np.sqrt((c * dx * dx).sum(axis=1) * (c * dy * dy).sum(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[lo:lo + step] = np.where(den > 0, num / den, np.nan)
    return out


def percentile_ci(values: np.ndarray, ci: float) -> tuple[float, float]:
    """Percentile interval of the finite ``values`` at level ``ci`` (e.g. 0.95)."""
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    v = values[np.isfinite(values)]
    if v.size == 0:
        return math.nan, math.nan
    a = (1 - ci) / 2
    lo, hi = np.quantile(v, [a, 1 - a])
    return float(lo), float(hi)


def correlate(score: np.ndarray, quality: np.ndarray, n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> dict:
    """Kendall τ-b, Spearman ρ, Pearson r, their p-values and bootstrap CIs for τ and ρ.

    Args:
        score: metric values [n], finite.
        quality: ground-truth quality [n] (higher = better architecture).
        n_boot: bootstrap resamples (0: no intervals).
        ci: confidence level of the percentile intervals.
        seed: seed of the resampling generator.

    Returns:
        Dict with the keys of :data:`CORRELATION_COLUMNS` except metric and
        target. With fewer than :data:`MIN_N` points, or a constant input,
        the statistics are NaN (n is still reported).

    Raises:
        ValueError: the arrays differ in length or hold non-finite values.
    """
    x = np.asarray(score, dtype=float)
    y = np.asarray(quality, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"score and quality must be 1-d of the same length, got {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("correlate() needs finite values: filter with exclude.usable first")
    n = len(x)
    res = {k: math.nan for k in CORRELATION_COLUMNS[3:]}
    res["n"] = n
    if n < MIN_N or np.ptp(x) == 0 or np.ptp(y) == 0:
        return res
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kt = stats.kendalltau(x, y)
        sr = stats.spearmanr(x, y)
        pr = stats.pearsonr(x, y)
    res.update(kendall_tau=float(kt.statistic), kendall_p=float(kt.pvalue),
               spearman_rho=float(sr.statistic), spearman_p=float(sr.pvalue),
               pearson_r=float(pr.statistic), pearson_p=float(pr.pvalue))
    if n_boot > 0 and n >= MIN_CI_N:
        idx = bootstrap_indices(n, n_boot, seed)
        res["kendall_ci_low"], res["kendall_ci_high"] = percentile_ci(bootstrap_kendall(x, y, idx), ci)
        res["spearman_ci_low"], res["spearman_ci_high"] = percentile_ci(bootstrap_spearman(x, y, idx), ci)
    return res


def tau_difference(
    score_a: np.ndarray, score_b: np.ndarray, quality: np.ndarray, n_boot: int = 1000, ci: float = 0.95, seed: int = 0
) -> dict:
    """Paired bootstrap of τ(a, quality) − τ(b, quality) on the same architectures.

    Returns:
        ``{"diff", "ci_low", "ci_high"}``; the difference is significant at
        level ``ci`` when the interval excludes 0. The interval is NaN with
        fewer than :data:`MIN_CI_N` architectures.
    """
    a, b, y = (np.asarray(v, dtype=float) for v in (score_a, score_b, quality))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        diff = stats.kendalltau(a, y).statistic - stats.kendalltau(b, y).statistic
    lo = hi = math.nan
    if n_boot > 0 and len(y) >= MIN_CI_N:
        idx = bootstrap_indices(len(y), n_boot, seed)
        lo, hi = percentile_ci(bootstrap_kendall(a, y, idx) - bootstrap_kendall(b, y, idx), ci)
    return {"diff": float(diff), "ci_low": lo, "ci_high": hi}


def target_quality(df: pd.DataFrame, target: str) -> np.ndarray:
    """The quality column of ``target`` (sign convention applied), float array [rows]."""
    return quality_sign(target) * pd.to_numeric(df[target], errors="coerce").to_numpy(dtype=float)


def correlation_table(
    df: pd.DataFrame,
    metrics: Sequence[str],
    targets: Sequence[str],
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`correlate` for every (metric, target) on the usable rows of a score table.

    Args:
        df: :func:`~tfnas.analysis.load.wide_table` of the main setting.
        metrics: metric columns.
        targets: ground-truth columns; each is turned into a quality by
            :func:`~tfnas.analysis.conventions.quality_sign`.

    Returns:
        DataFrame with exactly :data:`CORRELATION_COLUMNS`, one row per pair.
    """
    rows = []
    for t in targets:
        q = target_quality(df, t)
        for m in metrics:
            mask = usable(df, m, t)
            res = correlate(df[m].to_numpy(dtype=float)[mask], q[mask], n_boot=n_boot, ci=ci, seed=seed)
            rows.append({"metric": m, "target": t, **res})
    return pd.DataFrame(rows, columns=CORRELATION_COLUMNS)


def top_k_overlap(score: np.ndarray, quality: np.ndarray, fraction: float = 0.1) -> dict:
    """How many of the metric's top ``fraction`` are in the true top ``fraction``.

    Returns:
        ``{"n", "k", "overlap", "expected_random"}`` with k = max(1,
        round(fraction·n)) and the expected overlap of a random ranking k²/n.

    Raises:
        ValueError: ``fraction`` outside (0, 1].
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"top_fraction must be in (0, 1], got {fraction}")
    x = np.asarray(score, dtype=float)
    y = np.asarray(quality, dtype=float)
    n = len(x)
    k = max(1, int(round(fraction * n)))
    top_x = set(np.argsort(-x, kind="stable")[:k].tolist())
    top_y = set(np.argsort(-y, kind="stable")[:k].tolist())
    return {"n": n, "k": k, "overlap": len(top_x & top_y), "expected_random": k * k / n if n else math.nan}


def top_k_table(df: pd.DataFrame, metrics: Sequence[str], target: str, fraction: float) -> pd.DataFrame:
    """:func:`top_k_overlap` of every metric (columns metric, target, n, k, overlap, expected_random)."""
    q = target_quality(df, target)
    rows = []
    for m in metrics:
        mask = usable(df, m, target)
        if mask.sum() < 1:
            continue
        rows.append(dict(metric=m, target=target, **top_k_overlap(df[m].to_numpy(dtype=float)[mask], q[mask], fraction)))
    return pd.DataFrame(rows, columns=["metric", "target", "n", "k", "overlap", "expected_random"])
