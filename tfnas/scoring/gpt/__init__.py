"""The ``gpt`` model family: LTS GPT-2 decoder-only transformers (:mod:`tfnas.models.lts_gpt2`).

- :mod:`~tfnas.scoring.gpt.passes`: the ``grad`` pass the transformer metrics read;
- :mod:`~tfnas.scoring.gpt.metrics`: the transformer metrics, the hidden covariance
  of every block and the parameter counts;
- :mod:`~tfnas.scoring.gpt.proxies`: the zero-cost proxies' passes, with the
  next-token loss through the tied adaptive softmax.

Importing the package registers the family, its passes and its metrics.
"""

from tfnas.scoring.api import register_family

register_family("gpt")

from tfnas.scoring.gpt import metrics, proxies  # noqa: E402,F401  (importing them registers them)
