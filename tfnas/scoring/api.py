"""What passes and metrics share: the scoring context, registration, undefined scores.

This module is the leaf of :mod:`tfnas.scoring`: the model families
(:mod:`tfnas.scoring.rnn`, :mod:`tfnas.scoring.bert`), the registry and the
engine import it, and it imports none of them.

- A *model family* (``"rnn"``, ``"bert"``) is a kind of network that passes
  know how to run; a search space names the family its models belong to.
  A family's package calls :func:`register_family` before it registers
  anything.
- A *pass* (:func:`register_pass`) is ``fn(ctx) -> outputs``: it runs the
  model (a forward, a backward, ...) and returns whatever tensors its metrics
  read. A pass may offer optional *captures*, extra outputs it computes only
  when a planned metric asks for them; it learns which were asked with
  :meth:`ScoringContext.wants`, never by looking at metric names.
- A *metric* (:func:`register`) is a pure function of pass outputs. It
  declares its needs as data, ``{"grad": {"noise:small"}}`` (or a list of
  pass names when it asks for no capture), reads them with
  :meth:`ScoringContext.get` and returns ``{score name: float}``.

The engine (:mod:`tfnas.scoring.engine`) plans the passes, runs each once per
architecture through :meth:`ScoringContext.get`, and collects the scores.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable, Mapping, TypeVar

import torch

T = TypeVar("T")


class UndefinedScore(Exception):
    """Raised by a metric whose value is mathematically undefined for this model.

    The engine records NaN for each of the metric's outputs, with ``reason``
    kept next to the score (e.g. "hidden state is constant: correlation
    undefined"). It is not an error of the architecture.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


PassFn = Callable[["ScoringContext"], Any]
MetricFn = Callable[["ScoringContext"], dict[str, "float | UndefinedScore"]]
#: ``{pass name: captures asked of it}``, or the pass names alone.
Needs = Mapping[str, Iterable[str]] | Iterable[str]


@dataclass(frozen=True)
class PassSpec:
    """One registered pass.

    Attributes:
        family: the model family it runs.
        name: the name metrics list in their needs.
        fn: ``fn(ctx) -> outputs``.
        served_by: larger passes whose outputs include every output of this
            one; when one of them is planned anyway, this pass does not run.
        captures: the optional outputs it computes when asked for them.
    """

    family: str
    name: str
    fn: PassFn
    served_by: tuple[str, ...]
    captures: frozenset[str]


@dataclass(frozen=True)
class Metric:
    """One registered metric family (a function that may produce several scores).

    Attributes:
        name: family name used in configs (``metrics.names``).
        family: the model family it scores (``"rnn"``, ``"bert"``).
        needs: names of the passes the function reads through the context.
        outputs: score names the function returns (keys of its dict).
        fn: ``fn(ctx) -> {score name: float}``; raising :class:`UndefinedScore`
            makes every output NaN, while an :class:`UndefinedScore` instance
            as one output's value makes that output alone NaN, with its reason.
        captures: pass name -> the captures the metric asks of that pass.
    """

    name: str
    family: str
    needs: tuple[str, ...]
    outputs: tuple[str, ...]
    fn: MetricFn
    captures: Mapping[str, frozenset[str]] = field(default_factory=dict)


_FAMILIES: list[str] = []
PASSES: dict[tuple[str, str], PassSpec] = {}
METRICS: dict[tuple[str, str], Metric] = {}

#: How many times each (family, pass) ran in this process; tests use it to show
#: that no pass is repeated.
PASS_COUNTS: Counter = Counter()


def register_family(name: str) -> str:
    """Declare the model family ``name``; its package calls this first. Returns ``name``.

    Raises:
        ValueError: the family is declared twice.
    """
    if name in _FAMILIES:
        raise ValueError(f"model family {name!r} is already registered")
    _FAMILIES.append(name)
    return name


def families() -> tuple[str, ...]:
    """The model families declared so far, in declaration order."""
    return tuple(_FAMILIES)


def _check_family(family: str, what: str) -> None:
    if family not in _FAMILIES:
        raise ValueError(
            f"{what}: unknown space or model family {family!r}; the model families are {', '.join(_FAMILIES)}"
        )


def register_pass(family: str, name: str, served_by: Iterable[str] = (), captures: Iterable[str] = ()):
    """Decorator registering ``fn(ctx)`` as pass ``name`` of ``family``.

    Args:
        family: a declared model family.
        name: pass name that metrics list in their needs.
        served_by: larger passes whose outputs include every output of this
            one (e.g. a forward+backward pass also holds the forward's
            activations); when one of them is planned anyway, this pass is
            not run, its readers get that pass's outputs, and that pass is
            asked for this pass's captures and for this pass's name.
        captures: names of the optional outputs this pass computes when a
            metric asks for them (see :meth:`ScoringContext.wants`).

    Raises:
        ValueError: an undeclared family, or the pass is registered twice.
    """
    _check_family(family, f"pass {name!r}")

    def deco(fn: PassFn) -> PassFn:
        if (family, name) in PASSES:
            raise ValueError(f"pass {name!r} already registered for family {family!r}")
        PASSES[(family, name)] = PassSpec(family, name, fn, tuple(served_by), frozenset(captures))
        return fn

    return deco


def register(name: str, family: str, needs: Needs, outputs: Iterable[str] | None = None):
    """Decorator registering ``fn`` as metric family ``name`` of model family ``family``.

    Args:
        name: metric name; unique per model family.
        family: a declared model family.
        needs: the passes the metric reads, as ``{pass: captures}``
            (e.g. ``{"grad": {"noise:small"}}``) or a list of pass names.
        outputs: score names produced; defaults to ``(name,)``.

    Raises:
        ValueError: an undeclared family, or a name registered twice.
    """
    _check_family(family, f"metric {name!r}")
    if isinstance(needs, Mapping):
        captures = {p: frozenset(c) for p, c in needs.items()}
    else:
        captures = {p: frozenset() for p in needs}

    def deco(fn: MetricFn) -> MetricFn:
        key = (family, name)
        if key in METRICS:
            raise ValueError(f"metric {name!r} is already registered for family {family!r}")
        METRICS[key] = Metric(name, family, tuple(captures), tuple(outputs or (name,)), fn, captures)
        return fn

    return deco


@dataclass
class ScoringContext:
    """What a pass or a metric may read about the architecture being scored.

    Attributes:
        family: the model family (``"rnn"``, ``"bert"``).
        model: the untrained ``nn.Module`` (already on its device, eval mode).
        batch: the scoring minibatch, as the space's data module made it.
        seed: the seed the model was built with; passes that draw noise use it.
        paper_compat: reproduce the published columns (see docs/METRICS.md).
        options: extra per-family settings (e.g. the masked-LM token ids).
        requested: pass name -> the captures the planned metrics ask of it
            (a pass that serves another is asked for that pass's name too).
    """

    family: str
    model: torch.nn.Module
    batch: Any
    seed: int = 0
    paper_compat: bool = False
    options: dict = field(default_factory=dict)
    requested: Mapping[str, frozenset[str]] = field(default_factory=dict)
    _outputs: dict = field(default_factory=dict, repr=False)
    _memo: dict = field(default_factory=dict, repr=False)
    _allowed: tuple = field(default=(), repr=False)
    _alias: dict = field(default_factory=dict, repr=False)
    _running: str | None = field(default=None, repr=False)

    def get(self, pass_name: str) -> Any:
        """Outputs of pass ``pass_name``, running it on first use.

        Raises:
            RuntimeError: the calling metric did not declare the pass (keeps
                needs honest, so the engine's plan is right).
            KeyError: no such pass for this family.
        """
        if self._allowed and pass_name not in self._allowed:
            raise RuntimeError(f"pass {pass_name!r} read but not declared in the metric's needs {self._allowed}")
        pass_name = self._alias.get(pass_name, pass_name)
        if pass_name not in self._outputs:
            spec = PASSES.get((self.family, pass_name))
            if spec is None:
                raise KeyError(f"no pass {pass_name!r} for family {self.family!r}")
            PASS_COUNTS[(self.family, pass_name)] += 1
            caller, self._running = self._running, pass_name
            try:
                self._outputs[pass_name] = spec.fn(self)
            except Exception as exc:  # remembered so the pass is not retried by the next metric
                self._outputs[pass_name] = _PassFailure(exc)
            finally:
                self._running = caller
        out = self._outputs[pass_name]
        if isinstance(out, _PassFailure):
            raise out.exc
        return out

    def wants(self, capture: str) -> bool:
        """Whether a planned metric asked the running pass for ``capture``.

        Raises:
            RuntimeError: called outside a pass.
        """
        if self._running is None:
            raise RuntimeError("ScoringContext.wants() is for passes: no pass is running")
        return capture in self.requested.get(self._running, ())

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` once per architecture: a value several metrics read (e.g. S(J)).

        Keys are shared by all metrics of the architecture: start them with
        the quantity's name. A ``compute`` that raises stores nothing.
        """
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def release(self, pass_name: str) -> None:
        """Drop the outputs of ``pass_name`` (the engine calls this after its last reader)."""
        self._outputs.pop(self._alias.get(pass_name, pass_name), None)

    def clear(self) -> None:
        """Drop every pass output and memo (the engine calls this when the architecture is done)."""
        self._outputs.clear()
        self._memo.clear()


@dataclass
class _PassFailure:
    exc: Exception
