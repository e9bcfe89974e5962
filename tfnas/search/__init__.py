"""Training-free search with a training budget.

- :mod:`~tfnas.search.oracle`: the oracle, the only way to see ground truth,
  counting trainings;
- :mod:`~tfnas.search.features`: metric ranks with undefined values imputed;
- :mod:`~tfnas.search.strategies`: the strategies (random, top-B by one
  metric, a fixed rank combination, warm-started learned ranking, EGO);
- :mod:`~tfnas.search.simulate`: the simulation on benchmarks with ground
  truth (best found per budget, trainings to reach the pool's top 5 % / 1 %);
- :mod:`~tfnas.search.propose`: the search a user runs, one batch at a time;
- :mod:`~tfnas.search.report`: tables, figure and summary paragraph for
  ``analyze.py``.
"""
