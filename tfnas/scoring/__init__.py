"""Training-free scoring, organised by model family.

- :mod:`~tfnas.scoring.api` (the leaf): the scoring context, pass and metric
  registration, :class:`~tfnas.scoring.api.UndefinedScore`;
- :mod:`~tfnas.scoring.scores` and :mod:`~tfnas.scoring.proxies`: what the
  families share (scores of matrices; the zero-cost proxies);
- one package per model family (:mod:`~tfnas.scoring.rnn`,
  :mod:`~tfnas.scoring.bert`, :mod:`~tfnas.scoring.gpt`) with its passes,
  metrics and proxy passes;
- :mod:`~tfnas.scoring.registry`: loads the built-in families, looks metrics up;
- :mod:`~tfnas.scoring.engine`: runs each needed pass once and collects the scores.

Imports go one way: api ← shared modules ← families ← registry ← engine.
"""
