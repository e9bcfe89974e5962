"""Combinations of metrics: rank averages, rank products, and a cross-validated learned combination.

Rank combinations (as in Abdelfattah et al. 2021's "vote" and the rank
ensembles of later zero-cost work): each metric is replaced by its normalised
rank r = rank/n ∈ (0, 1] among the architectures where it is defined (average
ranks for ties), after orienting it by the sign of its τ with the ground
truth; an undefined score gets the median rank
(:func:`tfnas.search.features.rank_features`), so no architecture leaves a
combination because one metric is NaN for it. The *rank average* is the mean
of the r, the *rank product* their geometric mean (same order as the product
of ranks, without underflow). Choosing the metrics and their signs uses
ground truth on the same architectures, so these rows are **in-sample** and
optimistic.

The honest counterpart is evaluated only by k-fold cross-validation: for each
fold, everything that looks at ground truth (metric signs, which metric is
best, the ridge weights) is fitted on the other folds and the fold is
predicted; the out-of-fold predictions of all folds are pooled and scored with
:func:`tfnas.analysis.stats.correlate` (τ with bootstrap CI). Normalised ranks
of the scores themselves (undefined ones at the median rank) are computed on all
architectures first: that uses no ground truth and puts the folds'
predictions on one scale.

Models compared under cross-validation:

- ``cv_best_single``: the metric with the highest |τ| on the training folds;
- ``cv_rank_average``: rank average of the top-m metrics of the training folds;
- ``cv_ridge``: ridge regression of the quality's normalised rank on the
  standardised metric ranks, ``w = (XᵀX/n + λI)⁻¹ Xᵀy/n`` (numpy only).
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from tfnas.analysis.exclude import usable, usable_truth
from tfnas.analysis.stats import CORRELATION_COLUMNS, MIN_N, correlate, target_quality, tau_difference
from tfnas.search.features import rank_features

COMBINATION_COLUMNS = ["name", "kind", "metrics", "evaluation", *CORRELATION_COLUMNS[1:]]


def min_cv_archs(folds: int) -> int:
    """Architectures the cross-validated combination needs: :data:`~tfnas.analysis.stats.MIN_N` per fold, and 10.

    Every fold must hold enough architectures for a Kendall τ (its per-fold τ
    is reported), and the training folds enough to fit the ridge weights.
    """
    return max(10, MIN_N * folds)


def _ranks(df: pd.DataFrame, specs: Sequence[str]) -> np.ndarray:
    """Imputed normalised ranks of the metrics of ``specs`` (``-name`` flips one) [rows, len(specs)]."""
    return rank_features(df, specs)[0][:, : len(specs)]


def _tau(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall τ-b of x and y, 0.0 where undefined (fewer than MIN_N points, constant input)."""
    if len(x) < MIN_N:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = stats.kendalltau(x, y, method="asymptotic").statistic
    return 0.0 if not np.isfinite(t) else float(t)


def auto_combos(corr: pd.DataFrame, target: str, sizes: Sequence[int] = (2, 3)) -> list[list[str]]:
    """The top-s metrics by |τ| with ``target`` for each size s (metrics without τ skipped)."""
    c = corr[(corr["target"] == target) & corr["kendall_tau"].notna()]
    top = c.reindex(c["kendall_tau"].abs().sort_values(ascending=False).index)["metric"].tolist()
    return [top[:s] for s in sizes if 2 <= s <= len(top)]


def rank_combinations(
    df: pd.DataFrame,
    combos: Sequence[Sequence[str]],
    target: str,
    corr: pd.DataFrame,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """In-sample rank average and rank product of each metric list, with the usual statistics.

    Args:
        df: score table of the main setting.
        combos: lists of metric names (each with at least two metrics).
        target: ground-truth column.
        corr: :func:`~tfnas.analysis.stats.correlation_table` output; the sign
            of each metric's τ orients it.

    Returns:
        Rows of :data:`COMBINATION_COLUMNS` (kinds ``rank_average``,
        ``rank_product``).

    Raises:
        KeyError: a combo names an unknown metric.
    """
    signs = {r.metric: (-1.0 if r.kendall_tau < 0 else 1.0) for r in corr[corr["target"] == target].itertuples()}
    q = target_quality(df, target)
    rows = []
    for combo in combos:
        combo = list(combo)
        unknown = [m for m in combo if m not in df.columns]
        if unknown:
            raise KeyError(f"combine lists unknown metric(s) {unknown}")
        if len(combo) < 2:
            continue
        mask = usable_truth(df, target)
        r = _ranks(df[mask], [m if signs.get(m, 1.0) > 0 else f"-{m}" for m in combo])
        for kind, value in (("rank_average", r.mean(axis=1)), ("rank_product", np.exp(np.log(r).mean(axis=1)))):
            res = correlate(value, q[mask], n_boot=n_boot, ci=ci, seed=seed) if mask.sum() else {"n": 0}
            rows.append({"name": f"{kind}({'+'.join(combo)})", "kind": kind, "metrics": "+".join(combo),
                         "evaluation": "in-sample (metrics and signs chosen with ground truth; undefined "
                                       "scores at the median rank)",
                         "target": target, **res})
    return pd.DataFrame(rows, columns=COMBINATION_COLUMNS)


def fold_ids(n: int, folds: int, seed: int) -> np.ndarray:
    """Fold number of each of n items, int array [n], balanced and shuffled by ``default_rng(seed)``.

    Raises:
        ValueError: fewer than 2 folds or more folds than items.
    """
    if folds < 2 or folds > n:
        raise ValueError(f"folds must be in [2, n={n}], got {folds}")
    ids = np.empty(n, dtype=int)
    ids[np.random.default_rng(seed).permutation(n)] = np.arange(n) % folds
    return ids


def fit_ridge(x: np.ndarray, y: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ridge regression on standardised features.

    Args:
        x: features [n, m].
        y: target [n].
        ridge: λ ≥ 0 of ``(XᵀX/n + λI) w = Xᵀy/n`` (X standardised, y centred).

    Returns:
        ``(mean [m], scale [m], w [m])``; predict with ``((x − mean)/scale) @ w``.
    """
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    n, m = z.shape
    w = np.linalg.solve(z.T @ z / n + ridge * np.eye(m), z.T @ (y - y.mean()) / n)
    return mean, scale, w


def cv_predictions(
    ranks: np.ndarray, quality: np.ndarray, folds: int = 5, ridge: float = 0.1, top_m: int = 3, seed: int = 0
) -> dict[str, np.ndarray]:
    """Out-of-fold predictions of the cross-validated models (see module doc).

    Args:
        ranks: normalised metric ranks [n, m] (computed without ground truth).
        quality: ground-truth quality [n]; only training folds' values are
            ever read when predicting a fold.
        folds: number of folds k.
        ridge: ridge λ.
        top_m: metrics in ``cv_rank_average``.
        seed: fold assignment seed.

    Returns:
        ``{"cv_best_single", "cv_rank_average", "cv_ridge"}`` -> predictions
        [n], plus ``"fold"`` -> fold id [n].
    """
    r = np.asarray(ranks, dtype=float)
    q = np.asarray(quality, dtype=float)
    n, m = r.shape
    fid = fold_ids(n, folds, seed)
    out = {k: np.full(n, np.nan) for k in ("cv_best_single", "cv_rank_average", "cv_ridge")}
    for f in range(folds):
        test = fid == f
        train = ~test
        taus = np.array([_tau(r[train, j], q[train]) for j in range(m)])
        signs = np.where(taus < 0, -1.0, 1.0)
        order = np.argsort(-np.abs(taus), kind="stable")
        best = order[0]
        out["cv_best_single"][test] = signs[best] * (r[test, best] - 0.5)
        top = order[: max(1, min(top_m, m))]
        out["cv_rank_average"][test] = ((r[test][:, top] - 0.5) * signs[top]).mean(axis=1)
        y_train = stats.rankdata(q[train]) / train.sum()
        mean, scale, w = fit_ridge(r[train], y_train, ridge)
        out["cv_ridge"][test] = ((r[test] - mean) / scale) @ w
    out["fold"] = fid
    return out


def cross_validated(
    df: pd.DataFrame,
    metrics: Sequence[str],
    target: str,
    folds: int = 5,
    ridge: float = 0.1,
    top_m: int = 3,
    min_coverage: float = 0.9,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    references: Sequence[str] = (),
) -> tuple[pd.DataFrame, dict]:
    """Cross-validated combination against the cross-validated best single metric.

    Args:
        df: score table.
        metrics: candidate metrics; those that are constant or usable on
            fewer than ``min_coverage`` of the architectures with ground
            truth are dropped (they would cost too many architectures).
        target: ground-truth column.
        references: single metrics to set against the learned combination
            on exactly its architectures (e.g. the paper's best metric), each
            oriented by the sign of its τ there, which favours the reference.

    Returns:
        ``(table, verdict)``: rows of :data:`COMBINATION_COLUMNS` for the
        three models (τ and CIs from pooled out-of-fold predictions) and one
        ``reference`` row per usable reference metric, and a dict with
        ``metrics``, ``n``, ``fold_tau`` (per-fold τ of each model), ``diff``
        (paired bootstrap of τ(cv_ridge) − τ(cv_best_single)), ``reference_diff``
        (reference -> paired bootstrap of τ(cv_ridge) − τ(reference)) and
        ``text`` (the conclusion). The table is empty and ``text`` says why
        when there are fewer than 2 metrics or fewer architectures than
        :func:`min_cv_archs`.
    """
    has_t = np.isfinite(target_quality(df, target))
    empty = pd.DataFrame(columns=COMBINATION_COLUMNS)
    mask = usable_truth(df, target)
    n = int(mask.sum())
    if n < min_cv_archs(folds):
        return empty, {"metrics": list(metrics), "dropped": [], "n": n,
                       "text": f"no learned combination: {folds}-fold cross-validation needs at least "
                               f"{min_cv_archs(folds)} architectures with ground truth, {n} have it."}
    kept, dropped = [], []
    for m in metrics:
        ok = usable(df, m, target)
        if ok.sum() > 1 and ok.sum() >= min_coverage * has_t.sum() and np.ptp(df[m].to_numpy(dtype=float)[ok]) > 0:
            kept.append(m)
        else:
            dropped.append(m)
    metrics = kept
    note = f" Dropped (constant or usable on < {min_coverage:.0%} of the architectures): {', '.join(dropped)}." \
        if dropped else ""
    if len(metrics) < 2:
        return empty, {"metrics": metrics, "dropped": dropped, "n": 0,
                       "text": f"no learned combination: {len(metrics)} metric(s) with enough coverage.{note}"}
    r = _ranks(df[mask], metrics)
    q = target_quality(df, target)[mask]
    preds = cv_predictions(r, q, folds=folds, ridge=ridge, top_m=top_m, seed=seed)
    evaluation = f"out-of-fold, {folds}-fold CV (pooled predictions)"
    names = {"cv_best_single": "best single metric chosen on training folds",
             "cv_rank_average": f"rank average of the training folds' top {min(top_m, len(metrics))}",
             "cv_ridge": f"ridge (λ={ridge}) on {len(metrics)} metric ranks"}
    rows, fold_tau = [], {}
    for kind, label in names.items():
        res = correlate(preds[kind], q, n_boot=n_boot, ci=ci, seed=seed)
        rows.append({"name": label, "kind": kind, "metrics": "+".join(metrics), "evaluation": evaluation,
                     "target": target, **res})
        fold_tau[kind] = [_tau(preds[kind][preds["fold"] == f], q[preds["fold"] == f]) for f in range(folds)]
    diff = tau_difference(preds["cv_ridge"], preds["cv_best_single"], q, n_boot=n_boot, ci=ci, seed=seed)
    verdict = _verdict(diff)
    pct = int(round(ci * 100))
    text = (f"Out of fold, the learned combination (τ = {rows[2]['kendall_tau']:.3f}) {verdict} the best single "
            f"metric chosen inside the folds (τ = {rows[0]['kendall_tau']:.3f}): Δτ = {diff['diff']:+.3f}, "
            f"{pct}% CI [{diff['ci_low']:+.3f}, {diff['ci_high']:+.3f}] (paired bootstrap), n = {n}, "
            f"{len(metrics)} metrics.")
    ref_diff = {}
    for ref in references:
        if ref not in df.columns:
            continue
        x = df[ref].to_numpy(dtype=float)[mask]
        if not np.isfinite(x).all():  # a reference must cover the same architectures to be comparable
            continue
        x = np.where(_tau(x, q) < 0, -1.0, 1.0) * x
        res = correlate(x, q, n_boot=n_boot, ci=ci, seed=seed)
        rows.append({"name": f"reference: {ref} alone", "kind": "reference", "metrics": ref,
                     "evaluation": "same architectures, no fitting (sign chosen in-sample)", "target": target, **res})
        d = ref_diff[ref] = tau_difference(preds["cv_ridge"], x, q, n_boot=n_boot, ci=ci, seed=seed)
        text += (f" Against {ref} alone on the same architectures (τ = {res['kendall_tau']:.3f}): it "
                 f"{_verdict(d)} it, Δτ = {d['diff']:+.3f}, {pct}% CI [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}].")
    return pd.DataFrame(rows, columns=COMBINATION_COLUMNS), {
        "metrics": metrics, "dropped": dropped, "n": n, "fold_tau": fold_tau, "diff": diff, "verdict": verdict,
        "reference_diff": ref_diff, "text": text + note}


def _verdict(diff: dict) -> str:
    """How a paired τ difference reads: its CI above 0, below 0, or across 0."""
    lo, hi = diff["ci_low"], diff["ci_high"]
    if math.isfinite(lo) and lo > 0:
        return "beats"
    if math.isfinite(hi) and hi < 0:
        return "is worse than"
    return "does not significantly differ from"
