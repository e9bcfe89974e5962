"""tfnas: training-free neural architecture search for RNN and transformer language models.

Implements and extends Serianni & Kalita, "Training-free Neural Architecture
Search for RNNs and Transformers" (ACL 2023) on NAS-Bench-NLP and NAS-Bench-BERT.
"""

__version__ = "0.1.0"
