"""What a metric buys in a search: best-of-N picks, top-k overlap, and a top-k selection to train.

Search simulation (the protocol of Abdelfattah et al. 2021 / Mellor et al.
2021's "pick the best of N random architectures"): draw ``draws`` random
subsets of N architectures; in each, the metric picks its highest-scoring
architecture, *random* picks one uniformly, and the *oracle* picks the best by
ground truth. The three methods see the same subsets. Ties in the score are
broken at random (the subset's random order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from tfnas.analysis.conventions import quality_sign
from tfnas.analysis.exclude import usable
from tfnas.analysis.stats import target_quality

METHODS = ("metric", "random", "oracle")
SEARCH_COLUMNS = ["metric", "target", "budget", "n", "method", "mean", "std", "median", "q25", "q75"]


def random_subsets(rng: np.random.Generator, draws: int, n: int, size: int) -> np.ndarray:
    """``draws`` uniformly random subsets of ``size`` of range(n), each in random order: int array [draws, size].

    The subset is the ``size`` smallest of n uniform keys (argpartition, linear
    time), ordered by key, so its first element is a uniformly random member.
    """
    keys = rng.random((draws, n))
    part = np.argpartition(keys, size - 1, axis=1)[:, :size] if size < n else np.tile(np.arange(n), (draws, 1))
    order = np.argsort(np.take_along_axis(keys, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def simulate_search(
    score: np.ndarray, quality: np.ndarray, budgets: Sequence[int], draws: int, seed: int = 0
) -> dict[int, dict[str, np.ndarray]]:
    """Indices picked by the metric, at random, and by the oracle in random subsets.

    Args:
        score: metric values [n] (higher = picked first), finite.
        quality: ground-truth quality [n] (higher = better), finite.
        budgets: subset sizes N; those larger than n are skipped.
        draws: number of random subsets per budget.
        seed: seed of the subset generator.

    Returns:
        ``{N: {"metric": idx, "random": idx, "oracle": idx}}``, each an int
        array [draws] of indices into ``score``.

    Raises:
        ValueError: shapes differ, or ``draws`` < 1.
    """
    x = np.asarray(score, dtype=float)
    y = np.asarray(quality, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"score and quality must be 1-d of the same length, got {x.shape} and {y.shape}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    n = len(x)
    rng = np.random.default_rng(seed)
    out: dict[int, dict[str, np.ndarray]] = {}
    for budget in sorted({int(b) for b in budgets}):
        if budget < 1 or budget > n:
            continue
        sub = random_subsets(rng, draws, n, budget)
        rows = np.arange(draws)
        out[budget] = {
            "metric": sub[rows, np.argmax(x[sub], axis=1)],
            "random": sub[:, 0],
            "oracle": sub[rows, np.argmax(y[sub], axis=1)],
        }
    return out


def search_table(
    df: pd.DataFrame, metrics: Sequence[str], target: str, budgets: Sequence[int], draws: int, seed: int = 0
) -> pd.DataFrame:
    """Ground truth (in ``target``'s own units) of the picks of :func:`simulate_search`, summarised.

    The metric's score is used as "higher is better"; a metric whose τ with
    quality is negative therefore picks badly, as it should be reported.

    Returns:
        DataFrame with :data:`SEARCH_COLUMNS`: for each metric, budget and
        method, mean / std / median / quartiles over draws of the target value
        of the picked architecture.
    """
    rows = []
    q_all = target_quality(df, target)
    t_all = pd.to_numeric(df[target], errors="coerce").to_numpy(dtype=float)
    for m in metrics:
        mask = usable(df, m, target)
        if mask.sum() < 2:
            continue
        picks = simulate_search(df[m].to_numpy(dtype=float)[mask], q_all[mask], budgets, draws, seed)
        truth = t_all[mask]
        for budget, by_method in picks.items():
            for method in METHODS:
                v = truth[by_method[method]]
                rows.append(dict(metric=m, target=target, budget=budget, n=int(mask.sum()), method=method,
                                 mean=float(v.mean()), std=float(v.std(ddof=1)) if len(v) > 1 else math.nan,
                                 median=float(np.median(v)), q25=float(np.quantile(v, 0.25)),
                                 q75=float(np.quantile(v, 0.75))))
    return pd.DataFrame(rows, columns=SEARCH_COLUMNS)


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


@dataclass
class Selection:
    """The top-k architectures by one metric, and what choosing them buys.

    Attributes:
        metric: the metric used.
        direction: ``"max"`` (highest scores) or ``"min"``.
        archs: chosen architecture indices, best first.
        table: their rows (arch, benchmark_id, score, target).
        target: ground truth used for the evaluation, or None.
        n_with_truth: chosen architectures with usable ground truth.
        chosen_median: median target of those.
        random_median_mean: mean over draws of the median target of k random
            architectures (among those with ground truth).
        random_median_lo / random_median_hi: 5th / 95th percentile of it.
        p_random_as_good: fraction of random draws whose median is at least
            as good as the chosen one's.
    """

    metric: str
    direction: str
    archs: list[int]
    table: pd.DataFrame
    target: str | None = None
    n_with_truth: int = 0
    chosen_median: float = math.nan
    random_median_mean: float = math.nan
    random_median_lo: float = math.nan
    random_median_hi: float = math.nan
    p_random_as_good: float = math.nan

    def command(self) -> str:
        """The ``train.py`` multirun command line for the chosen architectures."""
        return f"python train.py -m 'arch={','.join(map(str, self.archs))}'"


def select_top_k(
    df: pd.DataFrame, metric: str, k: int, target: str | None, direction: str = "max", draws: int = 1000, seed: int = 0
) -> Selection:
    """Choose the k best architectures by ``metric`` and compare them with k random ones.

    Every architecture with a finite score and an ok record is a candidate,
    with or without ground truth (the point is to pick what to train). Where
    ground truth exists for some chosen ones, their median target is compared
    with the median of k random architectures with ground truth over
    ``draws`` draws (same k, capped at the number available).

    Raises:
        KeyError: ``metric`` is not a column.
        ValueError: ``k`` < 1, ``direction`` is not max/min, or no candidate.
    """
    if metric not in df.columns:
        raise KeyError(f"select.metric={metric!r} is not a metric of these records")
    if k < 1:
        raise ValueError(f"select.k must be >= 1, got {k}")
    if direction not in ("max", "min"):
        raise ValueError(f"select.direction must be 'max' or 'min', got {direction!r}")
    s = df[metric].to_numpy(dtype=float)
    cand = np.flatnonzero(np.isfinite(s) & (df["record_status"] == "ok").to_numpy())
    if cand.size == 0:
        raise ValueError(f"no architecture has a finite {metric}")
    key = -s[cand] if direction == "max" else s[cand]
    order = cand[np.argsort(key, kind="stable")][:k]
    cols = ["arch", "benchmark_id", metric] + ([target] if target else [])
    sel = Selection(metric, direction, [int(a) for a in df["arch"].to_numpy()[order]], df.iloc[order][cols].reset_index(drop=True))
    if target is None:
        return sel
    sel.target = target
    has_truth = usable(df, metric, target)
    chosen = order[has_truth[order]]
    sel.n_with_truth = int(chosen.size)
    if chosen.size == 0:
        return sel
    tvals = pd.to_numeric(df[target], errors="coerce").to_numpy(dtype=float)
    pool = tvals[has_truth]
    sel.chosen_median = float(np.median(tvals[chosen]))
    kk = min(int(chosen.size), pool.size)
    sub = random_subsets(np.random.default_rng(seed), draws, pool.size, kk)
    med = np.median(pool[sub], axis=1)
    sel.random_median_mean = float(med.mean())
    sel.random_median_lo, sel.random_median_hi = (float(v) for v in np.quantile(med, [0.05, 0.95]))
    sign = quality_sign(target)
    sel.p_random_as_good = float(np.mean(sign * med >= sign * sel.chosen_median))
    return sel
