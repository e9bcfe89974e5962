"""Ablation view: how much scores move across minibatches and seeds, against across architectures.

The paper's ablation (Serianni & Kalita 2023, §5; docs/PAPER.md "Ablations")
scores 10 architectures on 10 minibatches and under 10 initialisation seeds
and finds that per-repeat τ stays near 0.38–0.42 and that scores vary little
across batches and seeds relative to across architectures.

Two axes, each anchored at the main setting ``(seed0, batch0)``:

- ``batch``: records with ``seed == seed0``, repeats = ``batch_index`` values;
- ``seed``: records with ``batch_index == batch0``, repeats = ``seed`` values.

For each metric and axis, over the architectures with at least two finite
repeats: ``within_sd = sqrt(mean_a var_r(score))`` (ddof 1) is the typical
spread of one architecture's score across repeats, ``between_sd`` the
standard deviation (ddof 1) across architectures of their mean score, and
``ratio = within_sd / between_sd``. A small ratio means that the repeat barely
changes the ranking.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from tfnas.analysis.conventions import quality_sign
from tfnas.analysis.exclude import truth_problem
from tfnas.analysis.load import Entry

AXES = ("batch", "seed")
SPREAD_COLUMNS = ["metric", "axis", "n_archs", "n_repeats", "within_sd", "between_sd", "ratio",
                  "tau_mean", "tau_min", "tau_max"]
TAU_COLUMNS = ["metric", "axis", "repeat", "n", "kendall_tau", "kendall_p"]


@dataclass
class Ablation:
    """Result of :func:`ablation`.

    Attributes:
        scores: long table ``axis, arch, repeat, metric, score`` (finite scores).
        spread: one row per (metric, axis), :data:`SPREAD_COLUMNS`.
        repeat_tau: τ of each repeat, :data:`TAU_COLUMNS` (empty without truth).
        axes: the axes that have repeats.
    """

    scores: pd.DataFrame
    spread: pd.DataFrame
    repeat_tau: pd.DataFrame
    axes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """True when the records hold no repeats at all."""
        return not self.axes


def _axis_entries(entries: Sequence[Entry], axis: str, setting: tuple[int, int]) -> dict[int, dict[int, Entry]]:
    """arch -> repeat value -> entry, for the architectures with at least two repeats."""
    seed0, batch0 = setting
    by_arch: dict[int, dict[int, Entry]] = {}
    for e in entries:
        if e.status != "ok":
            continue
        if axis == "batch" and e.seed == seed0:
            by_arch.setdefault(e.arch, {})[e.batch_index] = e
        elif axis == "seed" and e.batch_index == batch0:
            by_arch.setdefault(e.arch, {})[e.seed] = e
    return {a: reps for a, reps in by_arch.items() if len(reps) >= 2}


def within_between(table: pd.DataFrame) -> tuple[float, float, float]:
    """``(within_sd, between_sd, ratio)`` of a table with columns ``arch, score`` (see module doc)."""
    g = table.groupby("arch")["score"]
    var = g.var(ddof=1)
    var = var[g.count() >= 2]
    within = math.sqrt(var.mean()) if len(var) else math.nan
    means = g.mean()
    between = float(means.std(ddof=1)) if len(means) >= 2 else math.nan
    ratio = within / between if between and math.isfinite(between) and between > 0 else math.nan
    return within, between, ratio


def ablation(entries: Sequence[Entry], metrics: Sequence[str], target: str | None, setting: tuple[int, int]) -> Ablation:
    """Spread of scores across repeats and per-repeat τ, for every metric and axis.

    Args:
        entries: all entries of one space (every setting).
        metrics: metric names.
        target: ground-truth key for per-repeat τ (None: no τ).
        setting: the main ``(seed, batch_index)`` the axes are anchored at.

    Returns:
        An :class:`Ablation`; empty when no architecture has two repeats.
    """
    # Ground truth belongs to the architecture: take it from any of its entries.
    truth: dict[int, float] = {}
    if target is not None:
        for e in entries:
            if e.arch not in truth and e.status == "ok" and truth_problem(e.truth, target) is None:
                truth[e.arch] = quality_sign(target) * float(e.truth[target])
    long_rows, spread_rows, tau_rows, axes = [], [], [], []
    for axis in AXES:
        by_arch = _axis_entries(entries, axis, setting)
        if not by_arch:
            continue
        axes.append(axis)
        for m in metrics:
            rows = [(a, r, e.scores.get(m, math.nan)) for a, reps in by_arch.items() for r, e in reps.items()]
            t = pd.DataFrame(rows, columns=["arch", "repeat", "score"])
            t = t[np.isfinite(t["score"].to_numpy(dtype=float))]
            if t.empty:
                continue
            long_rows.extend(dict(axis=axis, arch=a, repeat=r, metric=m, score=s) for a, r, s in t.itertuples(index=False))
            within, between, ratio = within_between(t)
            taus = []
            for rep, g in t.groupby("repeat"):
                g = g[g["arch"].isin(truth.keys())]
                if len(g) < 3:
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    kt = stats.kendalltau(g["score"].to_numpy(), g["arch"].map(truth).to_numpy())
                tau_rows.append(dict(metric=m, axis=axis, repeat=int(rep), n=len(g),
                                     kendall_tau=float(kt.statistic), kendall_p=float(kt.pvalue)))
                taus.append(float(kt.statistic))
            ft = [x for x in taus if math.isfinite(x)]
            spread_rows.append(dict(metric=m, axis=axis, n_archs=int(t["arch"].nunique()),
                                    n_repeats=int(t["repeat"].nunique()), within_sd=within, between_sd=between,
                                    ratio=ratio, tau_mean=float(np.mean(ft)) if ft else math.nan,
                                    tau_min=min(ft) if ft else math.nan, tau_max=max(ft) if ft else math.nan))
    return Ablation(pd.DataFrame(long_rows, columns=["axis", "arch", "repeat", "metric", "score"]),
                    pd.DataFrame(spread_rows, columns=SPREAD_COLUMNS),
                    pd.DataFrame(tau_rows, columns=TAU_COLUMNS), axes)
