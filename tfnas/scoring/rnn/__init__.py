"""The ``rnn`` model family: NAS-Bench-NLP recurrent cells inside the AWD language model.

- :mod:`~tfnas.scoring.rnn.passes`: the ``forward`` and ``grad`` passes the
  paper's metrics read, the latter with the backward through time of
  :mod:`~tfnas.scoring.rnn.bptt`;
- :mod:`~tfnas.scoring.rnn.metrics`: the paper's RNN metrics;
- :mod:`~tfnas.scoring.rnn.proxies`: the zero-cost proxies' passes.

Importing the package registers the family, its passes and its metrics.
"""

from tfnas.scoring.api import register_family

register_family("rnn")

from tfnas.scoring.rnn import metrics, proxies  # noqa: E402,F401  (importing them registers them)
