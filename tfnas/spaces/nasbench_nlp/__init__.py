"""NAS-Bench-NLP: recurrent cells as recipes (Klyuchnikov et al., 2020).

One module per idea:

- :mod:`~tfnas.spaces.nasbench_nlp.recipe`: the cell ops, :class:`Recipe`
  validation and the :class:`RecipeError` family (what the models import);
- :mod:`~tfnas.spaces.nasbench_nlp.generator`: random cells with the
  benchmark's procedure (:func:`generate_recipe`, :class:`RecipeGenerator`,
  :func:`check_sanity`);
- :mod:`~tfnas.spaces.nasbench_nlp.benchmark`: the training-log reader
  (:func:`read_benchmark`);
- :mod:`~tfnas.spaces.nasbench_nlp.space`: both as an indexed search space
  (:class:`NasBenchNLP`).

The language model around a cell lives in ``tfnas.models``. Reader
conventions and facts about the logs: ``docs/BENCHMARK_NOTES.md``.
"""
