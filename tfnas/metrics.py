"""List the training-free metrics of a search space: ``python -m tfnas.metrics nasbench_nlp``.

A space (``space=<name>`` in the configs) scores the metrics of its model
family (:attr:`tfnas.spaces.base.SearchSpace.family`: ``nasbench_nlp`` is
``rnn``, ``nasbench_bert`` ``bert``, the LTS GPT-2 spaces ``gpt``). This
prints, for the space named as the user types it, every metric name that
``metrics.names`` accepts, a star on those of the space's default set
(``conf/metrics/<space>.yaml``), the first sentence of its docstring and the
scores it writes when they are more than its own name. Without an argument,
every space. Definitions and sources: docs/METRICS.md.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from typing import Sequence

from omegaconf import OmegaConf

from tfnas.paths import REPO_ROOT
from tfnas.schema import metric_names

CONF = REPO_ROOT / "conf"


def spaces() -> list[str]:
    """The space names (``conf/space/*.yaml``)."""
    return sorted(p.stem for p in (CONF / "space").glob("*.yaml"))


def space_family(space: str) -> str:
    """The model family of ``space=<space>``: the ``family`` of its config's ``_target_`` class.

    Raises:
        KeyError: no such space; the message lists the spaces.
    """
    path = CONF / "space" / f"{space}.yaml"
    if not path.is_file():
        raise KeyError(f"no space {space!r}; the spaces: {', '.join(spaces())}")
    from hydra.utils import get_class

    return get_class(OmegaConf.load(path)["_target_"]).family


def default_metrics(space: str) -> list[str]:
    """``metrics.names`` of the space's default set (``metrics=<space>``, as ``score.py space=<space>`` composes it)."""
    from hydra import compose, initialize_config_dir

    import tfnas.hydra_support  # noqa: F401  (the score schema and resolvers)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return metric_names(compose("score", overrides=[f"space={space}"]).metrics)


def summary(doc: str | None, width: int = 100) -> str:
    """The first sentence of a docstring, without reST markup, cut at ``width`` characters."""
    text = " ".join((inspect.cleandoc(doc or "").split("\n\n") or [""])[0].split())
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text).replace("``", "")
    first = re.split(r"(?<=[.)])\s+(?=[A-Z])", text, maxsplit=1)[0]
    return first if len(first) <= width else first[: width - 1].rstrip() + "…"


def score_names(outputs: Sequence[str]) -> str:
    """The score names a metric writes, numbered runs shortened: ``hidden_covariance_l1..l16, hidden_covariance_last``."""
    out, numbered = [], {}
    for name in outputs:
        m = re.fullmatch(r"(.*_l)(\d+)", name)
        if m:
            if m.group(1) not in numbered:
                numbered[m.group(1)] = []
                out.append(m.group(1))
            numbered[m.group(1)].append(int(m.group(2)))
        else:
            out.append(name)
    return ", ".join(f"{n}{min(numbered[n])}..l{max(numbered[n])}" if n in numbered else n for n in out)


def describe(space: str) -> list[str]:
    """The lines printed for ``space``: a heading, then one line per metric.

    Raises:
        KeyError: no such space.
    """
    from tfnas.scoring import registry
    from tfnas.scoring.api import METRICS

    family = space_family(space)
    names = registry.available(family)
    default = set(default_metrics(space))
    lines = [f"space={space} (model family {family}): {len(names)} metrics; * = the default set "
             f"(metrics={space}); pick others with 'metrics.names=[a,b]'"]
    width = max(map(len, names))
    for name in names:
        m = METRICS[(family, name)]
        scores = f" -> {score_names(m.outputs)}" if m.outputs != (name,) else ""
        lines.append(f"{'*' if name in default else ' '} {name:<{width}}  {summary(m.fn.__doc__)}{scores}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tfnas.metrics [SPACE ...]``: print the metrics of each space (every space without one)."""
    parser = argparse.ArgumentParser(prog="python -m tfnas.metrics", description=__doc__.split("\n\n")[0])
    parser.add_argument("space", nargs="*", help=f"space name: {', '.join(spaces())} (default: all)")
    args = parser.parse_args(argv)
    for i, space in enumerate(args.space or spaces()):
        try:
            lines = describe(space)
        except KeyError as exc:
            print(f"{parser.prog}: {exc.args[0]}", file=sys.stderr)
            return 1
        print(("\n" if i else "") + "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
