"""The scoring engine: run each pass once per architecture, share it among metrics.

A *pass* is a space-specific function ``pass_fn(ctx) -> outputs`` that runs the
model (a forward, a backward of Σ y, the noised forwards, a loss backward ...)
and returns whatever tensors its metrics read. Metrics
(:mod:`tfnas.metrics.registry`) declare the passes they need; the engine runs
the union of those passes, each exactly once, in the order the metrics ask for
them, and frees a pass's outputs as soon as no remaining metric needs them.

Only the engine (through the passes) runs models; metrics are pure functions of
pass outputs.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch

from tfnas.metrics.registry import Metric, UndefinedScore, get

PassFn = Callable[["ScoringContext"], Any]
_PASSES: dict[tuple[str, str], PassFn] = {}
# (space, pass) -> passes whose outputs contain this pass's outputs
_SERVED_BY: dict[tuple[str, str], tuple[str, ...]] = {}

#: How many times each (space, pass) ran in this process; tests use it to show
#: that no pass is repeated.
PASS_COUNTS: Counter = Counter()


def register_pass(space: str, name: str, served_by: tuple[str, ...] = ()):
    """Decorator registering ``fn(ctx)`` as pass ``name`` of ``space``.

    Args:
        space: ``"rnn"`` or ``"bert"``.
        name: pass name that metrics list in ``needs``.
        served_by: larger passes whose outputs include every output of this
            one (e.g. a forward+backward pass also holds the forward's
            activations); when one of them is planned anyway, this pass is
            not run and its readers get that pass's outputs.

    Raises:
        ValueError: the pass is registered twice.
    """

    def deco(fn: PassFn) -> PassFn:
        if (space, name) in _PASSES:
            raise ValueError(f"pass {name!r} already registered for space {space!r}")
        _PASSES[(space, name)] = fn
        _SERVED_BY[(space, name)] = tuple(served_by)
        return fn

    return deco


@dataclass
class ScoringContext:
    """What a pass or a metric may read about the architecture being scored.

    Attributes:
        space: ``"rnn"`` or ``"bert"``.
        model: the untrained ``nn.Module`` (already on its device, eval mode).
        batch: the scoring minibatch, as the space's data module made it.
        seed: the seed the model was built with; passes that draw noise use it.
        paper_compat: reproduce the published columns (see METRICS.md).
        options: extra per-space settings (e.g. noise amplitudes).
        requested: names of the metric families being computed, so a pass
            can skip captures nobody reads.
    """

    space: str
    model: torch.nn.Module
    batch: Any
    seed: int = 0
    paper_compat: bool = False
    options: dict = field(default_factory=dict)
    requested: tuple[str, ...] = ()
    _cache: dict = field(default_factory=dict, repr=False)
    _allowed: tuple = field(default=(), repr=False)
    _alias: dict = field(default_factory=dict, repr=False)

    def get(self, pass_name: str) -> Any:
        """Outputs of pass ``pass_name``, running it on first use.

        Raises:
            RuntimeError: the calling metric did not declare the pass (keeps
                ``needs`` honest, so the engine's plan is right).
            KeyError: no such pass for this space.
        """
        if self._allowed and pass_name not in self._allowed:
            raise RuntimeError(f"pass {pass_name!r} read but not declared in the metric's needs {self._allowed}")
        pass_name = self._alias.get(pass_name, pass_name)
        if pass_name not in self._cache:
            fn = _PASSES.get((self.space, pass_name))
            if fn is None:
                raise KeyError(f"no pass {pass_name!r} for space {self.space!r}")
            PASS_COUNTS[(self.space, pass_name)] += 1
            try:
                self._cache[pass_name] = fn(self)
            except Exception as exc:  # remembered so the pass is not retried by the next metric
                self._cache[pass_name] = _PassFailure(exc)
        out = self._cache[pass_name]
        if isinstance(out, _PassFailure):
            raise out.exc
        return out


@dataclass
class _PassFailure:
    exc: Exception


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


def plan(space: str, metrics: Iterable[Metric]) -> tuple[list[str], dict[str, str]]:
    """The distinct passes that will run, in first-use order, and the aliases.

    Returns:
        (passes to run, {needed pass: the planned pass that serves it}).
    """
    metrics = list(metrics)
    needed = list(dict.fromkeys(p for m in metrics for p in m.needs))
    alias = {}
    for p in needed:
        for q in _SERVED_BY.get((space, p), ()):
            if q in needed:
                alias[p] = q
                break
    return list(dict.fromkeys(alias.get(p, p) for p in needed)), alias


def score(
    space: str,
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
        space: ``"rnn"`` or ``"bert"``.
        model: the model to score; it is put in eval mode and restored after.
        batch: the scoring minibatch.
        metric_names: registered family names.
        seed: seed for passes that draw noise.
        paper_compat: reproduce the published columns.
        options: per-space pass settings.

    Returns:
        The scores, the reasons for NaN or non-finite values, and the time.

    Raises:
        KeyError: an unknown metric name.
    """
    metrics = get(space, metric_names)
    ctx = ScoringContext(space, model, batch, seed, paper_compat, dict(options or {}), tuple(m.name for m in metrics))
    _, ctx._alias = plan(space, metrics)
    last_use = {ctx._alias.get(p, p): i for i, m in enumerate(metrics) for p in m.needs}
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
                    ctx._cache.pop(p, None)
    finally:
        ctx._cache.clear()
        model.train(was_training)
    return ScoreResult(scores, reasons, time.perf_counter() - t0)
