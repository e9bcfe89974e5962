"""The ``bert`` model family: NAS-Bench-BERT (FlexiBERT-style ELECTRA) encoders.

- :mod:`~tfnas.scoring.bert.passes`: the ``grad`` pass the paper's metrics read;
- :mod:`~tfnas.scoring.bert.metrics`: the paper's transformer metrics;
- :mod:`~tfnas.scoring.bert.proxies`: the zero-cost proxies' passes, with the
  masked-LM loss (masking: :mod:`~tfnas.scoring.bert.mlm`).

Importing the package registers the family, its passes and its metrics.
"""

from tfnas.scoring.api import register_family

register_family("bert")

from tfnas.scoring.bert import metrics, proxies  # noqa: E402,F401  (importing them registers them)
