"""Analysis of result records: the only reader of records in bulk.

Modules, in the order data flows through them:

- :mod:`~tfnas.analysis.load`: read and merge records (``load_records``,
  ``choose_setting``, ``wide_table``);
- :mod:`~tfnas.analysis.exclude`: which architectures each metric is judged
  on, and why the others are not;
- :mod:`~tfnas.analysis.conventions`: targets, the sign convention, the
  paper's published correlations;
- :mod:`~tfnas.analysis.stats`: Kendall τ, Spearman ρ, Pearson r and
  bootstrap confidence intervals; top-k overlap;
- :mod:`~tfnas.analysis.combine`: rank combinations and the cross-validated
  learned combination;
- :mod:`~tfnas.analysis.ablation`: spread across minibatches and seeds;
- :mod:`~tfnas.analysis.space`: the NAS-Bench-BERT search-space view;
- :mod:`~tfnas.analysis.plots` and :mod:`~tfnas.analysis.report`: figures,
  Markdown, TensorBoard.

Search with a training budget (simulation and proposals) is :mod:`tfnas.search`.
The job that runs them all is :func:`tfnas.tasks.analyze.analyze`.
"""
