"""What every search space provides: indexed architectures and a model builder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Architecture:
    """One architecture of a search space.

    Attributes:
        index: position in the space (the ``arch`` config value).
        benchmark_id: the benchmark's own id (NAS-Bench-NLP recipe id,
            NAS-Bench-BERT ``id``) as a string; None for generated ones.
        spec: the architecture itself: a :class:`~tfnas.spaces.nasbench_nlp.Recipe`
            or a NAS-Bench-BERT layer configuration dict.
        truth: ground truth known for it, e.g. ``{"test_loss": 4.61,
            "test_ppl": 100.5}`` or GLUE scores; empty when unknown.
        meta: everything else the benchmark recorded (hyperparameters,
            training status, experiment id, ...).
    """

    index: int
    benchmark_id: str | None
    spec: Any
    truth: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def check_index(index: int, size: int, what: str) -> None:
    """Raise one clear IndexError when ``index`` is outside ``[0, size)``.

    Raises:
        IndexError: with the valid range and what the space is.
    """
    if not 0 <= index < size:
        raise IndexError(f"arch={index} is out of range: {what} has {size} architectures (arch=0..{size - 1})")
