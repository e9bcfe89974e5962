"""NAS-Bench-BERT: FlexiBERT-style ELECTRA encoders (Serianni & Kalita, ACL 2023).

The benchmark (``BERT_benchmark.json``) holds 500 architectures, each a hidden
size and a list of 2 or 4 heterogeneous encoder layers, with the GLUE dev scores
of the ELECTRA-small-style model pretrained and fine-tuned with it. The search
space (``search_space.json``) defines the allowed values.

An architecture's ``spec`` is the normalised configuration::

    {"hidden_size": 256,
     "layers": [{"operation_type": "SA", "operation_parameter": "WMA",
                 "num_operation_heads": 4, "feed_forward_dimension": 1024,
                 "num_feed_forward": 3}, ...]}

with ``operation_parameter`` a str for SA (``SDP``/``WMA``) and LT
(``DFT``/``DCT``) and an int kernel size for DSC (5/9).

One module per idea:

- :mod:`~tfnas.spaces.nasbench_bert.definition`: the allowed values
  (:class:`SpaceDefinition`), validation and random configurations;
- :mod:`~tfnas.spaces.nasbench_bert.benchmark`: the benchmark reader
  (:func:`load_benchmark`) and its GLUE keys;
- :mod:`~tfnas.spaces.nasbench_bert.space`: the indexed search space
  (:class:`NasBenchBERT`) and the encoder configuration of a spec.
"""
