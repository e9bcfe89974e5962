"""Search with a budget, simulated on a benchmark with ground truth.

Protocol. The usable architectures of a benchmark (ok record, training
status OK, finite target) are the population. Each of ``repeats`` repeats
draws a candidate pool of ``pool_fraction`` of them without replacement
(half by default, so that every repeat is a different pool and even the
deterministic strategies get a spread), and every strategy searches that
same pool (paired comparison) with an :class:`~tfnas.search.oracle.Oracle`
over the pool's ground truth and a budget of ``max_budget`` of the pool (a
quarter by default). Strategies are anytime (:mod:`tfnas.search.strategies`),
so one run per repeat gives the best architecture found after every budget
B = 1 … B_max: the running maximum of the quality of what it trained.

Per strategy and budget (:func:`curves`): the target value of the best
architecture found (median and central ``ci`` band over repeats), its regret
to the pool's best architecture (the oracle), and the fraction of repeats
that have reached the pool's top 5 % / top 1 %. Per strategy and top
fraction p (:func:`trainings_to_reach`): the trainings needed to first train
an architecture among the pool's best ⌈p·n⌉ (median and band; ``inf``
when not reached within B_max), next to random search's figure for the same
target.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from tfnas.search.oracle import Oracle
from tfnas.search.strategies import run

CURVE_COLUMNS = ["strategy", "kind", "budget", "n_pool", "repeats", "best_median", "best_lo", "best_hi",
                 "regret_median", "regret_lo", "regret_hi", "p_top5", "p_top1"]
TARGET_COLUMNS = ["strategy", "kind", "top", "n_pool", "k_top", "repeats", "max_budget", "trainings_median",
                  "trainings_lo", "trainings_hi", "reached", "random_median", "ratio_to_random"]


@dataclass(frozen=True)
class Spec:
    """One strategy as simulated.

    Attributes:
        label: its name in tables and figures (e.g. ``top:hidden_covariance_l1``).
        strategy: a key of :data:`~tfnas.search.strategies.STRATEGIES`.
        settings: keyword settings of the strategy function.
        kind: ``random``, ``single`` (top-B by one metric), or the strategy name.
    """

    label: str
    strategy: str
    settings: dict[str, Any] = field(default_factory=dict)
    kind: str = ""


@dataclass
class Simulation:
    """Trajectories of every strategy over the repeats.

    Attributes:
        quality: quality of the population [N] (higher is better).
        pools: population indices of each repeat's pool [R, n_pool].
        trained: label -> population indices trained, in order [R, B_max].
        specs: the strategies, in the order given.
        seconds: wall time of the simulation.
    """

    quality: np.ndarray
    pools: np.ndarray
    trained: dict[str, np.ndarray]
    specs: list[Spec]
    seconds: float

    @property
    def n_pool(self) -> int:
        return self.pools.shape[1]

    @property
    def max_budget(self) -> int:
        return next(iter(self.trained.values())).shape[1]

    def best(self, label: str) -> np.ndarray:
        """Quality of the best architecture trained after each budget [R, B_max]."""
        return np.maximum.accumulate(self.quality[self.trained[label]], axis=1)

    def oracle(self) -> np.ndarray:
        """Quality of each pool's best architecture [R]."""
        return self.quality[self.pools].max(axis=1)

    def threshold(self, top: float) -> tuple[np.ndarray, int]:
        """Quality of each pool's ⌈top·n⌉-th best architecture [R], and that k."""
        k = max(1, math.ceil(top * self.n_pool - 1e-9))
        q = np.sort(self.quality[self.pools], axis=1)[:, ::-1]
        return q[:, k - 1], k


def simulate(
    scores: pd.DataFrame,
    quality: np.ndarray,
    specs: Sequence[Spec],
    repeats: int = 200,
    pool_fraction: float = 0.5,
    max_budget: float = 0.25,
    seed: int = 0,
) -> Simulation:
    """Run every strategy on ``repeats`` random pools of the population.

    Args:
        scores: metric columns of the population [N rows]; no ground truth.
        quality: ground-truth quality [N] (higher is better), finite.
        specs: strategies to run.
        repeats: number of random pools.
        pool_fraction: pool size as a fraction of N (1.0: the whole
            population in every repeat, in a new random order).
        max_budget: largest budget as a fraction of the pool (at least 1).
        seed: seed of the pools and of every strategy's generator.

    Returns:
        The :class:`Simulation`.

    Raises:
        ValueError: sizes that do not fit, non-finite quality, no strategy.
    """
    q = np.asarray(quality, dtype=float)
    if len(scores) != len(q) or not np.isfinite(q).all():
        raise ValueError(f"scores ({len(scores)} rows) and quality ({len(q)}, must be finite) must match")
    if not specs:
        raise ValueError("no strategy to simulate")
    if repeats < 1 or not 0 < pool_fraction <= 1 or not 0 < max_budget <= 1:
        raise ValueError(f"need repeats >= 1, pool_fraction and max_budget in (0, 1]; got {repeats}, "
                         f"{pool_fraction}, {max_budget}")
    n = len(q)
    n_pool = max(2, int(round(pool_fraction * n)))
    if n_pool > n:
        raise ValueError(f"a pool of {n_pool} does not fit in {n} architectures")
    b_max = max(1, int(max_budget * n_pool))
    t0 = time.perf_counter()
    scores = scores.reset_index(drop=True)
    pools = np.stack([np.random.default_rng([seed, r]).permutation(n)[:n_pool] for r in range(repeats)])
    trained = {s.label: np.empty((repeats, b_max), dtype=int) for s in specs}
    for r in range(repeats):
        pool = pools[r]
        sub = scores.iloc[pool].reset_index(drop=True)
        for i, s in enumerate(specs):
            oracle = Oracle(q[pool], b_max)
            order = run(s.strategy, sub, oracle, np.random.default_rng([seed, r, i + 1]), **s.settings)
            if len(order) != b_max:
                raise RuntimeError(f"strategy {s.label} trained {len(order)} of a budget of {b_max}")
            trained[s.label][r] = pool[order]
    return Simulation(q, pools, trained, list(specs), time.perf_counter() - t0)


def _band(x: np.ndarray, ci: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = (1 - ci) / 2
    return np.median(x, axis=axis), np.quantile(x, a, axis=axis), np.quantile(x, 1 - a, axis=axis)


def curves(sim: Simulation, sign: float, ci: float = 0.95, tops: Sequence[float] = (0.05, 0.01)) -> pd.DataFrame:
    """Best found and regret per strategy and budget, in the target's own units.

    Args:
        sim: the simulation.
        sign: +1 when the target is the quality, −1 when quality = −target
            (losses): converts back to the target's units.
        ci: central band of the repeats (0.95: 2.5th to 97.5th percentile).
        tops: the two top fractions of ``p_top5`` / ``p_top1``.

    Returns:
        Rows of :data:`CURVE_COLUMNS`, plus one ``oracle`` row per budget
        (the pool's best, constant in the budget). Regret is ≥ 0, in target units.
    """
    oracle = sim.oracle()
    th = [sim.threshold(t)[0] for t in tops]
    budgets = np.arange(1, sim.max_budget + 1)
    rows = []
    kinds = {s.label: s.kind or s.strategy for s in sim.specs}
    for label in [*sim.trained, "oracle"]:
        best = sim.best(label) if label != "oracle" else np.repeat(oracle[:, None], sim.max_budget, axis=1)
        med, lo, hi = _band(sign * best, ci)
        regret = oracle[:, None] - best
        rm, rl, rh = _band(regret, ci)
        reach = [(best >= t[:, None]).mean(axis=0) for t in th]
        for j, b in enumerate(budgets):
            rows.append(dict(strategy=label, kind=kinds.get(label, "oracle"), budget=int(b), n_pool=sim.n_pool,
                             repeats=len(oracle), best_median=med[j], best_lo=lo[j], best_hi=hi[j],
                             regret_median=rm[j], regret_lo=rl[j], regret_hi=rh[j],
                             p_top5=reach[0][j], p_top1=reach[1][j] if len(reach) > 1 else math.nan))
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def first_reach(sim: Simulation, label: str, top: float) -> np.ndarray:
    """Trainings each repeat needed to train one of the pool's top ``top`` [R]; inf if not within B_max."""
    th, _ = sim.threshold(top)
    hit = sim.quality[sim.trained[label]] >= th[:, None]
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1.0, np.inf)


def _median(x: np.ndarray) -> float:
    # inf (not reached) sorts last, so the median is finite when more than half of the repeats got there.
    return float(np.quantile(x, 0.5, method="inverted_cdf"))


def trainings_to_reach(sim: Simulation, tops: Sequence[float] = (0.05, 0.01), ci: float = 0.95,
                       random_label: str = "random") -> pd.DataFrame:
    """Trainings needed to reach each pool's top fraction, per strategy, with random search's figure.

    Returns:
        Rows of :data:`TARGET_COLUMNS`: median and band (inverted-CDF
        quantiles, ``inf`` where fewer repeats than that reached it within
        B_max), the fraction of repeats that reached it, random search's
        median and the ratio strategy / random (NaN without random search).
    """
    a = (1 - ci) / 2
    kinds = {s.label: s.kind or s.strategy for s in sim.specs}
    rows = []
    for top in tops:
        k = sim.threshold(top)[1]
        rand = _median(first_reach(sim, random_label, top)) if random_label in sim.trained else math.nan
        for label in sim.trained:
            f = first_reach(sim, label, top)
            med = _median(f)
            rows.append(dict(strategy=label, kind=kinds[label], top=top, n_pool=sim.n_pool, k_top=k,
                             repeats=len(f), max_budget=sim.max_budget, trainings_median=med,
                             trainings_lo=float(np.quantile(f, a, method="inverted_cdf")),
                             trainings_hi=float(np.quantile(f, 1 - a, method="inverted_cdf")),
                             reached=float(np.isfinite(f).mean()), random_median=rand,
                             ratio_to_random=med / rand if np.isfinite(rand) and rand > 0 else math.nan))
    return pd.DataFrame(rows, columns=TARGET_COLUMNS)
