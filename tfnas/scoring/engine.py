"""The scoring engine: run each pass once per architecture, share it among metrics.

A *pass* is a family-specific function ``pass_fn(ctx) -> outputs`` that runs
the model (a forward, a backward of Σ y, a loss backward ...) and returns
whatever tensors its metrics read. Metrics (:mod:`tfnas.scoring.registry`)
declare the passes they need and the optional captures they ask of them
(:mod:`tfnas.scoring.api`); the engine runs the union of those passes, each
exactly once, in the order the metrics ask for them, tells each pass which
captures were asked of it, and frees a pass's outputs as soon as no remaining
metric needs them.

Only the engine (through the passes) runs models; metrics are pure functions of
pass outputs.

API: :func:`score`, :func:`plan`, :class:`ScoreResult`; ``PASS_COUNTS`` counts
the passes run in this process (it lives in :mod:`tfnas.scoring.api`, where
:meth:`~tfnas.scoring.api.ScoringContext.get` runs them).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Iterable

import torch

from tfnas.scoring.api import PASS_COUNTS, PASSES, Metric, ScoringContext, UndefinedScore
from tfnas.scoring.registry import get

__all__ = ["PASS_COUNTS", "Plan", "ScoreResult", "plan", "score"]


@dataclass
class ScoreResult:
    """Scores of one architecture.

    Attributes:
        scores: score name -> value (NaN where undefined or failed).
        reasons: score name -> why its value is NaN or non-finite.
        seconds: wall time of all passes and metrics.
    """

    scores: dict[str, float]
    reasons: dict[str, str]
    seconds: float


@dataclass
class Plan:
    """The passes one set of metrics runs.

    Attributes:
        passes: the distinct passes that run, in first-use order.
        alias: needed pass -> the planned pass that serves it (absent when it runs itself).
        captures: planned pass -> what is asked of it: the metrics' captures,
            those asked of the passes it serves, and those passes' names.
    """

    passes: list[str]
    alias: dict[str, str]
    captures: dict[str, frozenset[str]]


def plan(family: str, metrics: Iterable[Metric]) -> Plan:
    """Which passes run for ``metrics``, which serves which, and what each is asked for.

    Raises:
        KeyError: a metric needs a pass the family does not have.
        ValueError: a metric asks a pass for a capture it does not offer.
    """
    metrics = list(metrics)
    needed = list(dict.fromkeys(p for m in metrics for p in m.needs))
    for p in needed:
        if (family, p) not in PASSES:
            raise KeyError(f"no pass {p!r} for family {family!r}")
    alias: dict[str, str] = {}
    for p in needed:
        for q in PASSES[(family, p)].served_by:
            if q in needed:
                alias[p] = q
                break
    for p in alias:  # a chain p -> q -> r runs r
        while alias[p] in alias:
            alias[p] = alias[alias[p]]
    captures: dict[str, set[str]] = {}
    for m in metrics:
        for p, asked in m.captures.items():
            runs = alias.get(p, p)
            offered = PASSES[(family, runs)].captures
            unknown = sorted(set(asked) - offered)
            if unknown:
                raise ValueError(
                    f"metric {m.name!r} asks pass {runs!r} for {unknown}, which it does not capture "
                    f"(it captures: {sorted(offered) or 'nothing'})"
                )
            captures.setdefault(runs, set()).update(asked)
            if runs != p:
                captures[runs].add(p)
    passes = list(dict.fromkeys(alias.get(p, p) for p in needed))
    return Plan(passes, alias, {p: frozenset(captures.get(p, ())) for p in passes})


def score(
    family: str,
    model: torch.nn.Module,
    batch: Any,
    metric_names: Iterable[str],
    seed: int = 0,
    paper_compat: bool = False,
    options: dict | None = None,
) -> ScoreResult:
    """Compute the requested metric families on one untrained model.

    Each distinct pass runs once. A metric that raises :class:`UndefinedScore`
    yields NaN with its reason; any other exception in a metric or a pass it
    needs yields NaN with the error text, and the remaining metrics still run.

    Args:
        family: the model family (``"rnn"``, ``"bert"``).
        model: the model to score; it is put in eval mode and restored after.
        batch: the scoring minibatch.
        metric_names: registered metric names.
        seed: seed for passes that draw noise.
        paper_compat: reproduce the published columns.
        options: per-family pass settings.

    Returns:
        The scores, the reasons for NaN or non-finite values, and the time.

    Raises:
        KeyError: an unknown metric name.
    """
    metrics = get(family, metric_names)
    the_plan = plan(family, metrics)
    ctx = ScoringContext(
        family, model, batch, seed, paper_compat, dict(options or {}), the_plan.captures, _alias=the_plan.alias
    )
    last_use = {the_plan.alias.get(p, p): i for i, m in enumerate(metrics) for p in m.needs}
    scores: dict[str, float] = {}
    reasons: dict[str, str] = {}
    was_training = model.training
    model.eval()
    t0 = time.perf_counter()
    try:
        # Lightning may call us under inference mode; gradient metrics need autograd.
        with torch.inference_mode(False), torch.enable_grad():
            for i, m in enumerate(metrics):
                ctx._allowed = m.needs
                try:
                    values = m.fn(ctx)
                except UndefinedScore as exc:
                    values = {o: math.nan for o in m.outputs}
                    reasons.update({o: exc.reason for o in m.outputs})
                except Exception as exc:  # one metric's failure must not lose the others
                    values = {o: math.nan for o in m.outputs}
                    reasons.update({o: f"error: {type(exc).__name__}: {exc}" for o in m.outputs})
                for k, v in values.items():
                    if isinstance(v, UndefinedScore):  # one output of several undefined
                        reasons[k] = v.reason
                        v = math.nan
                    v = float(v)
                    scores[k] = v
                    if not math.isfinite(v) and k not in reasons:
                        reasons[k] = "non-finite value (overflow or division by zero)"
                for p in [p for p, j in last_use.items() if j == i]:
                    ctx.release(p)
    finally:
        ctx.clear()
        model.train(was_training)
    return ScoreResult(scores, reasons, time.perf_counter() - t0)
