"""Registry of training-free metrics, by model family.

A metric is a pure function of the outputs of one or more *passes* (see
:mod:`tfnas.scoring.engine`). It declares which passes it needs, and the
engine runs each distinct pass once per architecture and shares its outputs
among all the metrics that asked for it. Registration itself lives in the
leaf module :mod:`tfnas.scoring.api`; this module loads the built-in model
families and looks metrics up.

Each registered metric may produce several scores at once, e.g.
``hidden_covariance`` gives ``hidden_covariance_l1`` … ``_l3``.

The built-in families are the imports below: importing a family's package
registers the family, its passes and its metrics. A new family is a new
package under ``tfnas/scoring/`` plus its name on that import line.
"""

from __future__ import annotations

from typing import Iterable

from tfnas.scoring import bert, gpt, rnn  # noqa: F401  (the built-in model families: importing registers them)
from tfnas.scoring.api import METRICS, Metric, families

__all__ = ["Metric", "available", "families", "get"]


def available(family: str) -> list[str]:
    """Names of the metrics registered for ``family``, sorted."""
    return sorted(n for f, n in METRICS if f == family)


def get(family: str, names: Iterable[str], space: str | None = None) -> list[Metric]:
    """Look up metrics of a model family by name.

    Args:
        family: the model family (``rnn``, ``bert``, ``gpt``).
        names: metric names (``metrics.names``).
        space: the search space as the user named it (``nasbench_nlp``), for
            the messages; without it they name the family.

    Raises:
        KeyError: a name that is not registered for ``family``; the one-line
            message lists what is available.
    """
    where = f"space={space}" if space else f"family {family!r}"
    out = []
    for n in names:
        if (family, n) not in METRICS:
            owner = [m.name for (f, _), m in METRICS.items() if f == family and n in m.outputs]
            hint = f" ({n!r} is a score of the metric {owner[0]!r}: request that)" if owner else ""
            known = f"; available: {', '.join(available(family))}" if family in families() else (
                f": no model family {family!r} (families: {', '.join(families())})"
            )
            raise KeyError(f"no metric {n!r} for {where}{hint}{known}")
        out.append(METRICS[(family, n)])
    return out
