"""Registry of training-free metrics.

A metric is a pure function of the outputs of one or more *passes* (see
:mod:`tfnas.engine`). It declares which passes it needs, and the engine runs
each distinct pass once per architecture and shares its outputs among all the
metrics that asked for it.

Each registered entry is a *family* that may produce several scores at once,
e.g. ``hidden_covariance`` gives ``hidden_covariance_l1`` … ``_l3``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

if TYPE_CHECKING:  # pragma: no cover
    from tfnas.engine import ScoringContext

SPACES = ("rnn", "bert")


class UndefinedScore(Exception):
    """Raised by a metric whose value is mathematically undefined for this model.

    The engine records NaN for each of the metric's outputs, with ``reason``
    kept next to the score (e.g. "hidden state is constant: correlation
    undefined"). It is not an error of the architecture.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


MetricFn = Callable[["ScoringContext"], dict[str, "float | UndefinedScore"]]


@dataclass(frozen=True)
class Metric:
    """One registered metric family.

    Attributes:
        name: family name used in configs (``metrics.names``).
        space: ``"rnn"`` (NAS-Bench-NLP) or ``"bert"`` (NAS-Bench-BERT).
        needs: names of the passes the function reads through the context.
        outputs: score names the function returns (keys of its dict).
        fn: ``fn(ctx) -> {score name: float}``; raising :class:`UndefinedScore`
            makes every output NaN, while an :class:`UndefinedScore` instance
            as one output's value makes that output alone NaN, with its reason.
    """

    name: str
    space: str
    needs: tuple[str, ...]
    outputs: tuple[str, ...]
    fn: MetricFn


_REGISTRY: dict[tuple[str, str], Metric] = {}


def register(name: str, space: str, needs: Iterable[str], outputs: Iterable[str] | None = None):
    """Decorator registering ``fn`` as metric family ``name`` of ``space``.

    Args:
        name: family name; unique per space.
        space: ``"rnn"`` or ``"bert"``.
        needs: pass names the metric reads (declared so the engine can plan).
        outputs: score names produced; defaults to ``(name,)``.

    Raises:
        ValueError: unknown space or a name registered twice.
    """
    if space not in SPACES:
        raise ValueError(f"unknown space {space!r}; expected one of {SPACES}")

    def deco(fn: MetricFn) -> MetricFn:
        key = (space, name)
        if key in _REGISTRY:
            raise ValueError(f"metric {name!r} is already registered for space {space!r}")
        _REGISTRY[key] = Metric(name, space, tuple(needs), tuple(outputs or (name,)), fn)
        return fn

    return deco


def available(space: str) -> list[str]:
    """Names of the metric families registered for ``space``, sorted."""
    _load_builtin()
    return sorted(n for s, n in _REGISTRY if s == space)


def get(space: str, names: Iterable[str]) -> list[Metric]:
    """Look up metric families by name.

    Raises:
        KeyError: a name that is not registered for ``space``; the message
            lists what is available.
    """
    _load_builtin()
    out = []
    for n in names:
        if (space, n) not in _REGISTRY:
            family = [m.name for (s, _), m in _REGISTRY.items() if s == space and n in m.outputs]
            hint = f" ({n!r} is a score of the metric {family[0]!r}: request that)" if family else ""
            raise KeyError(f"no metric {n!r} for space {space!r}{hint}; available: {', '.join(available(space))}")
        out.append(_REGISTRY[(space, n)])
    return out


def _load_builtin() -> None:
    # Importing the metric modules registers them (and their passes); done on
    # first look-up so that the registry and the engine import without cycles.
    import tfnas.metrics.bert  # noqa: F401
    import tfnas.metrics.rnn  # noqa: F401
    import tfnas.metrics.proxies  # noqa: F401
