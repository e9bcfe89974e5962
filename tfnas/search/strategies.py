"""Search strategies with a training budget: which architectures to train, in which order.

Every strategy is a plain function ``strategy(scores, oracle, rng, **settings)``:

- ``scores``: the candidates' score table (a DataFrame of metric columns, one
  row per candidate; it never holds ground truth);
- ``oracle``: a :class:`~tfnas.search.oracle.Oracle`, the only way to see
  ground truth; each new architecture it trains is charged one training and
  the strategy stops when ``oracle.remaining`` is 0;
- ``rng``: a ``numpy.random.Generator`` (ties and random choices);

and returns the positions it trained, in order (``oracle.history``).

The strategies are *anytime*: what they train first never depends on the
budget, so the run with budget B is the first B trainings of a run with a
larger budget. The simulation runs each strategy once per repeat with the
largest budget and reads every smaller budget off the same trajectory; the
search a user runs replays the strategy over the train records that exist.

Metrics follow the analysis's sign convention: a higher score is taken as a
better architecture (``-name`` takes lower scores first); undefined scores
get the median rank (:mod:`tfnas.search.features`).

Strategies (:data:`STRATEGIES`):

- ``random``: random search, a uniformly random order.
- ``top_metric``: top-B by one metric.
- ``combination``: top-B by the mean rank of fixed metrics (a rank vote as
  in Abdelfattah et al. 2021, "Zero-Cost Proxies for Lightweight NAS").
- ``learned``: warm-started learned ranking: train the top ``warm`` by one
  metric (the zero-cost warm-up of Abdelfattah et al. 2021), fit a ridge
  regression (scikit-learn) of the trained architectures' quality on the
  metrics' ranks, train the ``batch`` best predicted, refit, until the
  budget is spent.
- ``ego``: Bayesian optimisation by expected improvement, the EGO
  algorithm of Jones, Schonlau & Welch (1998, "Efficient Global Optimization
  of Expensive Black-Box Functions"), with a Gaussian-process surrogate
  (scikit-learn) on the metrics' ranks as features, as NAS-Bench-Suite-Zero
  (Krishnakumar et al. 2022) feeds zero-cost proxies to a search's
  surrogate; same warm start; each round trains the ``batch`` candidates of
  highest expected improvement (the top-k acquisition step of BANANAS,
  White et al. 2021).

Until three trainings have succeeded there is nothing to fit, and the fitted
strategies go on down the warm-start metric's ranking. They model a
transformed quality: its normal scores Φ⁻¹(rank / (k + 1)) over the k trained
architectures, so one diverged training cannot dominate the fit; failed
trainings (NaN quality) are charged and left out of the fit.
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from tfnas.search.features import check_metrics, rank_average, rank_features, usable_metrics
from tfnas.search.oracle import Oracle

Strategy = Callable[..., list]


def order_by(key: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions sorted by ``key`` [n] descending, ties in random order, NaN last; int array [n]."""
    key = np.asarray(key, dtype=float)
    filled = np.where(np.isnan(key), -np.inf, key)
    return np.lexsort((rng.random(len(key)), -filled))


def _train_in_order(oracle: Oracle, order: np.ndarray) -> list[int]:
    oracle.train(order[: oracle.remaining])
    return list(oracle.history)


def random_search(scores: pd.DataFrame, oracle: Oracle, rng: np.random.Generator) -> list[int]:
    """Random search: train the candidates in a uniformly random order."""
    return _train_in_order(oracle, rng.permutation(len(scores)))


def top_metric(scores: pd.DataFrame, oracle: Oracle, rng: np.random.Generator, metric: str) -> list[int]:
    """Top-B by one metric: highest score first (``-name``: lowest first), undefined at the median rank.

    Raises:
        KeyError: ``metric`` is not a column.
    """
    check_metrics(scores, [metric])
    return _train_in_order(oracle, order_by(rank_features(scores, [metric])[0][:, 0], rng))


def combination(scores: pd.DataFrame, oracle: Oracle, rng: np.random.Generator, metrics: Sequence[str]) -> list[int]:
    """Top-B by the mean of the metrics' imputed normalised ranks.

    Raises:
        KeyError: a metric is not a column.
        ValueError: ``metrics`` is empty.
    """
    return _train_in_order(oracle, order_by(rank_average(scores, list(metrics)), rng))


def normal_scores(y: np.ndarray) -> np.ndarray:
    """Φ⁻¹(rank / (k + 1)) of the k values of ``y`` [k] (average ranks for ties)."""
    y = np.asarray(y, dtype=float)
    return stats.norm.ppf(stats.rankdata(y) / (len(y) + 1))


def _sequential(
    scores: pd.DataFrame,
    oracle: Oracle,
    rng: np.random.Generator,
    warm_metric: str,
    warm: int,
    batch: int,
    metrics: Sequence[str] | None,
    acquisition: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
) -> list[int]:
    """Warm start by a metric, then rounds of fit → acquisition → train the ``batch`` best."""
    if warm < 1 or batch < 1:
        raise ValueError(f"warm and batch must be >= 1, got warm={warm}, batch={batch}")
    check_metrics(scores, [warm_metric])
    feats = usable_metrics(scores, metrics)
    x, _ = rank_features(scores, feats)
    warm_order = order_by(rank_features(scores, [warm_metric])[0][:, 0], rng)
    oracle.train(warm_order[: min(warm, oracle.remaining)])
    while oracle.remaining > 0:
        pos, q = oracle.known()
        fit = np.isfinite(q)
        cand = np.setdiff1d(np.arange(len(scores)), pos)
        if fit.sum() < 3 or x.shape[1] == 0:  # nothing to learn from yet: go on down the warm-start metric
            nxt = warm_order[~np.isin(warm_order, pos)]
        else:
            gain = acquisition(x[pos[fit]], normal_scores(q[fit]), x[cand])
            nxt = cand[order_by(gain, rng)]
        oracle.train(nxt[: min(batch, oracle.remaining)])
    return list(oracle.history)


def learned(
    scores: pd.DataFrame,
    oracle: Oracle,
    rng: np.random.Generator,
    warm_metric: str,
    warm: int = 5,
    batch: int = 5,
    metrics: Sequence[str] | None = None,
    alpha: float = 1.0,
) -> list[int]:
    """Warm-started learned ranking: ridge regression of quality on metric ranks, refitted each round.

    Args:
        scores: candidates' scores.
        oracle: the training oracle.
        rng: random generator (ties).
        warm_metric: metric whose top ``warm`` are trained first.
        warm: size of the warm start.
        batch: trainings per round after the warm start.
        metrics: feature metrics (default: every metric defined on at least
            half of the candidates and not constant).
        alpha: ridge penalty on the features (ranks in (0, 1], indicators 0/1).

    Raises:
        KeyError: an unknown metric.
        ValueError: ``warm`` or ``batch`` < 1.
    """
    from sklearn.linear_model import Ridge

    def predict(x_fit: np.ndarray, y_fit: np.ndarray, x_cand: np.ndarray) -> np.ndarray:
        return Ridge(alpha=alpha).fit(x_fit, y_fit).predict(x_cand)

    return _sequential(scores, oracle, rng, warm_metric, warm, batch, metrics, predict)


def ego(
    scores: pd.DataFrame,
    oracle: Oracle,
    rng: np.random.Generator,
    warm_metric: str,
    warm: int = 5,
    batch: int = 5,
    metrics: Sequence[str] | None = None,
    xi: float = 0.01,
) -> list[int]:
    """EGO (Jones et al. 1998): Gaussian-process expected improvement on metric ranks.

    Args:
        scores, oracle, rng, warm_metric, warm, batch, metrics: as :func:`learned`.
        xi: exploration margin of the expected improvement, in units of the
            transformed quality's standard deviation.

    The surrogate is a GP with a constant × Matérn-5/2 kernel plus white
    noise, hyperparameters by maximum likelihood (scikit-learn defaults,
    no restarts, each round starting from the previous round's optimum), on
    normalised targets.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    kernel = [ConstantKernel(1.0, (1e-2, 1e2)) * Matern(1.0, (1e-2, 1e2), nu=2.5) + WhiteKernel(0.5, (1e-3, 1e1))]

    def expected_improvement(x_fit: np.ndarray, y_fit: np.ndarray, x_cand: np.ndarray) -> np.ndarray:
        gp = GaussianProcessRegressor(kernel[0], normalize_y=True, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp.fit(x_fit, y_fit)
        kernel[0] = gp.kernel_  # the next round's likelihood search starts from this round's optimum
        mu, sd = gp.predict(x_cand, return_std=True)
        sd = np.maximum(sd, 1e-9)
        z = (mu - y_fit.max() - xi) / sd
        return (mu - y_fit.max() - xi) * stats.norm.cdf(z) + sd * stats.norm.pdf(z)

    return _sequential(scores, oracle, rng, warm_metric, warm, batch, metrics, expected_improvement)


#: Strategy name -> function (the ``search.strategy`` values).
STRATEGIES: dict[str, Strategy] = {
    "random": random_search,
    "top_metric": top_metric,
    "combination": combination,
    "learned": learned,
    "ego": ego,
}


def run(name: str, scores: pd.DataFrame, oracle: Oracle, rng: np.random.Generator, **settings) -> list[int]:
    """Run the strategy called ``name`` with its ``settings``.

    Raises:
        ValueError: an unknown strategy name (lists the known ones).
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown search strategy {name!r}; choose one of {sorted(STRATEGIES)}")
    return STRATEGIES[name](scores, oracle, rng, **settings)
