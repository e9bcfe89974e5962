"""The search a user runs: which architectures to train next, from the records that exist.

The candidates are scored architectures (``score.py``); the ones trained so
far have train records (``train.py``). :func:`propose` replays the chosen
strategy from the start with a :class:`~tfnas.search.oracle.RecordOracle`:
every architecture the strategy asks for that has a train record is
answered from it, and the replay stops at the first batch that still has
untrained members: that is the proposal. So the proposal depends only on
the scores, the train records of what the strategy asked for, the strategy's
settings and its seed: rerunning without new records proposes the same
batch (idempotent), and once the batch is trained the replay goes one batch
further (resumable). Architectures trained outside the strategy's choices
are reported and not used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from tfnas.search.oracle import Pending, RecordOracle
from tfnas.search.strategies import run


@dataclass
class Proposal:
    """Where a search stands and what to train next.

    Attributes:
        strategy: the strategy's name.
        budget: total trainings of the search.
        batch: architectures to train next (arch ids), empty when done.
        trained: arch ids the strategy has trained so far, in order.
        quality: their quality (NaN for a failed training).
        unused: trained arch ids that the strategy never asked for.
        done: the budget is spent (or every candidate trained).
    """

    strategy: str
    budget: int
    batch: list[int]
    trained: list[int]
    quality: list[float]
    unused: list[int] = field(default_factory=list)
    done: bool = False

    @property
    def spent(self) -> int:
        return len(self.trained)

    def best(self) -> tuple[int, float] | None:
        """``(arch, quality)`` of the best trained architecture so far, None if none succeeded."""
        ok = [(a, q) for a, q in zip(self.trained, self.quality) if math.isfinite(q)]
        return max(ok, key=lambda aq: aq[1]) if ok else None


def propose(
    scores: pd.DataFrame,
    trained: Mapping[int, float],
    strategy: str,
    settings: Mapping[str, Any],
    budget: int,
    batch: int,
    seed: int = 0,
) -> Proposal:
    """Replay ``strategy`` over the train records and return the next batch to train.

    Args:
        scores: candidates' metric columns, indexed by arch id (no ground truth).
        trained: arch id -> quality (higher is better; NaN for a failed
            training) of every architecture with a train record.
        strategy: a :data:`~tfnas.search.strategies.STRATEGIES` name.
        settings: the strategy's settings.
        budget: total trainings of the search.
        batch: most architectures proposed at once.
        seed: seed of the strategy's random choices (fixed, so a replay
            makes the same choices).

    Returns:
        The :class:`Proposal`.

    Raises:
        ValueError: ``budget`` or ``batch`` < 1, an unknown strategy, or
            duplicate arch ids in ``scores``.
    """
    if budget < 1 or batch < 1:
        raise ValueError(f"search.budget and search.batch must be >= 1, got {budget} and {batch}")
    archs = np.asarray(scores.index, dtype=int)
    if len(set(archs.tolist())) != len(archs):
        raise ValueError("the candidates' arch ids are not unique")
    pos_of = {int(a): i for i, a in enumerate(archs)}
    known = {pos_of[int(a)]: float(q) for a, q in trained.items() if int(a) in pos_of}
    oracle = RecordOracle(len(archs), known, budget)
    pending: Sequence[int] = []
    try:
        run(strategy, scores.reset_index(drop=True), oracle, np.random.default_rng(seed), **settings)
    except Pending as p:
        pending = p.missing[:batch]
    pos, q = oracle.known()
    asked = set(pos.tolist())
    return Proposal(strategy, budget, [int(archs[p]) for p in pending], [int(archs[p]) for p in pos],
                    [float(v) for v in q], sorted(int(a) for a in trained if pos_of.get(int(a)) not in asked),
                    done=not pending)


def train_command(archs: Sequence[int], overrides: Sequence[str] = ()) -> str:
    """``python train.py -m 'arch=…' <overrides>`` for a batch of arch ids."""
    return " ".join([f"python train.py -m 'arch={','.join(map(str, archs))}'", *overrides])
