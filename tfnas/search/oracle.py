"""The oracle: the only way a search strategy learns an architecture's ground truth.

A strategy receives the candidates' scores (metric columns only, never ground
truth) and an :class:`Oracle`. Calling :meth:`Oracle.train` "trains" the
architectures at the given positions of the pool and returns their quality
(higher is better, the analysis's sign convention: ``−test_loss``, ``glue``);
every new position is charged one training. What has been charged is exactly
what a strategy may fit on (:attr:`Oracle.history`, :meth:`Oracle.known`).
The budget is enforced: asking for more trainings than remain raises
:class:`BudgetExhausted` before any value is revealed.

Two oracles share this contract:

- :class:`Oracle` looks the truth up in a table it keeps private (the
  simulation on benchmarks with ground truth);
- :class:`RecordOracle` answers from train records that exist, and raises
  :class:`Pending` with the positions still to train (the search a user runs:
  replaying the strategy over the records reaches the batch to train next).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


class BudgetExhausted(RuntimeError):
    """A strategy asked for more trainings than its budget has left."""


class Pending(Exception):
    """Ground truth that does not exist yet: these positions must be trained first.

    Attributes:
        positions: pool positions of the batch that is still (partly) untrained,
            in the order the strategy asked for them.
        missing: the positions of that batch without ground truth.
    """

    def __init__(self, positions: Sequence[int], missing: Sequence[int]):
        self.positions = [int(p) for p in positions]
        self.missing = [int(p) for p in missing]
        super().__init__(f"{len(self.missing)} architecture(s) to train: {self.missing}")


class Oracle:
    """Trains pool members on demand and counts the trainings.

    Args:
        quality: ground-truth quality of each pool member [n] (higher is
            better). It is held privately and read only for charged positions.
        budget: most trainings allowed.

    Raises:
        ValueError: ``quality`` is not 1-d or ``budget`` < 0.
    """

    def __init__(self, quality: np.ndarray, budget: int):
        q = np.asarray(quality, dtype=float)
        if q.ndim != 1:
            raise ValueError(f"quality must be 1-d, got shape {q.shape}")
        if budget < 0:
            raise ValueError(f"budget must be >= 0, got {budget}")
        self.n = len(q)
        self.budget = int(budget)
        self.__quality = q
        self._seen: dict[int, float] = {}
        self.history: list[int] = []

    @property
    def spent(self) -> int:
        """Trainings charged so far."""
        return len(self.history)

    @property
    def remaining(self) -> int:
        """Trainings left in the budget (never more than the untrained pool members)."""
        return min(self.budget - self.spent, self.n - self.spent)

    def _check(self, positions: Sequence[int]) -> list[int]:
        pos = [int(p) for p in np.atleast_1d(np.asarray(positions, dtype=int))]
        bad = [p for p in pos if not 0 <= p < self.n]
        if bad:
            raise IndexError(f"positions {bad} are outside the pool of {self.n}")
        new = list(dict.fromkeys(p for p in pos if p not in self._seen))
        if len(new) > self.budget - self.spent:
            raise BudgetExhausted(f"{len(new)} new training(s) asked, {self.budget - self.spent} left of {self.budget}")
        return pos

    def _lookup(self, positions: list[int]) -> np.ndarray:
        return self.__quality[positions]

    def train(self, positions: Sequence[int]) -> np.ndarray:
        """Train the architectures at ``positions`` (pool indices); returns their quality [len(positions)].

        Positions trained before are answered again without a new charge.
        A failed training has quality NaN (charged like any other).

        Raises:
            BudgetExhausted: more new positions than the budget has left
                (nothing is charged or revealed then).
            IndexError: a position outside the pool.
        """
        pos = self._check(positions)
        new = list(dict.fromkeys(p for p in pos if p not in self._seen))
        if new:
            values = self._lookup(new)
            for p, v in zip(new, values):
                self._seen[p] = float(v)
            self.history.extend(new)
        return np.array([self._seen[p] for p in pos], dtype=float)

    def known(self) -> tuple[np.ndarray, np.ndarray]:
        """What has been charged: ``(positions [k], quality [k])`` in training order."""
        pos = np.array(self.history, dtype=int)
        return pos, np.array([self._seen[p] for p in self.history], dtype=float)


class RecordOracle(Oracle):
    """An oracle over architectures some of which have been trained for real.

    Args:
        n: pool size.
        trained: pool position -> quality of the architectures with a train
            record (NaN for a failed training).
        budget: most trainings of the whole search.

    :meth:`train` answers from ``trained`` and raises :class:`Pending` with the
    positions of the asked batch that have no record yet; nothing of that
    batch is charged then, so replaying the same strategy over the same
    records always stops at the same batch.
    """

    def __init__(self, n: int, trained: Mapping[int, float], budget: int):
        super().__init__(np.full(n, np.nan), budget)
        self._records = {int(k): float(v) for k, v in trained.items()}

    def _lookup(self, positions: list[int]) -> np.ndarray:
        missing = [p for p in positions if p not in self._records]
        if missing:
            raise Pending(positions, missing)
        return np.array([self._records[p] for p in positions], dtype=float)
