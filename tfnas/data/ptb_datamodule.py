"""Penn Treebank as a LightningDataModule for ground-truth training (docs/SPACES.md §1).

The batches follow the AWD-LSTM code that NAS-Bench-NLP trained with
(Merity et al. 2018; the benchmark's ``train.py``):

- Training: the train split batchified into ``batch_size`` (20) columns and
  read *in order* by truncated BPTT windows of variable length (see
  :func:`draw_seq_len`). Windows are never shuffled: the language model
  carries its hidden state from one window to the next, so window k + 1
  must start where window k ended. The window plan of epoch e is drawn
  from a generator seeded with ``(seed, e)``, so it is reproducible and a
  run resumed at an epoch boundary sees exactly the windows an
  uninterrupted run would.
- Evaluation: each split batchified into ``eval_batch_size`` (50) columns
  and read by consecutive windows of ``eval_bptt`` (70) rows; the last
  window may be shorter. The validation loop gets three dataloaders, in
  the order of :data:`EVAL_SPLITS` (train, valid, test): the benchmark
  logs the train, valid and test losses after every epoch.

Every batch is a dict ``{"x": [s, B], "y": [s, B], "start": int, "seq_len": int}``
with ``y[t] = x[t + 1]`` along the stream, ``start`` the first row in the
batchified split and ``seq_len`` the *drawn* length (AWD scales the learning
rate by it, even when the split's end cuts the window short).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from tfnas.data.ptb import Corpus, batchify, get_batch, load_corpus

#: Order of the validation dataloaders (``dataloader_idx`` 0, 1, 2).
EVAL_SPLITS = ("train", "valid", "test")


def draw_seq_len(
    rng: np.random.Generator,
    bptt: int,
    full_prob: float = 0.95,
    std: float = 5.0,
    min_len: int = 5,
) -> int:
    """One AWD-LSTM training window length.

    AWD-LSTM / NAS-Bench-NLP ``train.py``: the base length is ``bptt`` with
    probability ``full_prob`` (0.95), else ``bptt / 2``; the length is
    ``max(min_len, int(N(base, std)))`` (``int`` truncates toward zero).

    Args:
        rng: the generator (two draws per call: uniform, then normal).
        bptt: the base length (benchmark 70).
        full_prob: probability of the full base length.
        std: standard deviation of the normal draw (benchmark 5).
        min_len: the floor (benchmark 5).

    Returns:
        The window length in tokens (>= ``min_len``).
    """
    base = bptt if rng.random() < full_prob else bptt / 2.0
    return max(min_len, int(rng.normal(base, std)))


def train_window_plan(
    rows: int,
    bptt: int,
    rng: np.random.Generator | None,
    full_prob: float = 0.95,
    std: float = 5.0,
    min_len: int = 5,
) -> list[tuple[int, int]]:
    """The ordered training windows of one epoch, as AWD-LSTM walks them.

    Windows start at row 0 and each starts where the previous ended
    (``start_{k+1} = start_k + seq_len_k``) while ``start < rows - 2``
    (AWD's ``while i < train_data.size(0) - 1 - 1``).

    Args:
        rows: rows of the batchified train split.
        bptt: base length.
        rng: the epoch's generator; None gives fixed windows of ``bptt``.
        full_prob, std, min_len: see :func:`draw_seq_len`.

    Returns:
        ``[(start, seq_len), ...]``; the window actually read is
        ``min(seq_len, rows - 1 - start)`` rows long.

    Raises:
        ValueError: ``bptt`` < 1 or ``min_len`` < 1.
    """
    if bptt < 1 or min_len < 1:
        raise ValueError(f"bptt and min_len must be >= 1, got bptt={bptt}, min_len={min_len}")
    plan = []
    i = 0
    while i < rows - 2:
        seq_len = bptt if rng is None else draw_seq_len(rng, bptt, full_prob, std, min_len)
        plan.append((i, seq_len))
        i += seq_len
    return plan


class TBPTTWindowSampler(Sampler):
    """Yields the ordered ``(start, seq_len)`` windows of the current epoch.

    Lightning calls :meth:`set_epoch` before every training epoch; the plan
    of epoch e comes from ``numpy.random.default_rng((seed, e))``. The sampler
    has no length (the number of windows varies from epoch to epoch), so
    ``trainer.limit_train_batches`` must be an int (or 1.0).

    Args:
        rows: rows of the batchified train split.
        bptt, full_prob, std, min_len: see :func:`draw_seq_len`.
        seed: the run's seed.
        variable: False gives fixed windows of ``bptt``.
    """

    def __init__(
        self,
        rows: int,
        bptt: int,
        seed: int = 0,
        variable: bool = True,
        full_prob: float = 0.95,
        std: float = 5.0,
        min_len: int = 5,
    ):
        self.rows, self.bptt, self.seed, self.variable = rows, bptt, seed, variable
        self.full_prob, self.std, self.min_len = full_prob, std, min_len
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the window plan of ``epoch`` (0-based)."""
        self.epoch = int(epoch)

    def plan(self, epoch: int | None = None) -> list[tuple[int, int]]:
        """The windows of ``epoch`` (default: the current one)."""
        e = self.epoch if epoch is None else int(epoch)
        rng = np.random.default_rng((int(self.seed), e)) if self.variable else None
        return train_window_plan(self.rows, self.bptt, rng, self.full_prob, self.std, self.min_len)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        # Lazy: the plan is drawn at the first window, not when the iterator is made. A resumed
        # Lightning run makes the iterator before it calls set_epoch for the resumed epoch.
        yield from self.plan()


class WindowDataset(Dataset):
    """Windows of a batchified split, indexed by ``(start, seq_len)``.

    Args:
        source: ``[L, B]`` batchified token ids.
    """

    def __init__(self, source: Tensor):
        self.source = source

    def __getitem__(self, window: tuple[int, int]) -> dict[str, Any]:
        start, seq_len = (int(v) for v in window)
        x, y = get_batch(self.source, start, seq_len)
        return {"x": x, "y": y, "start": start, "seq_len": seq_len}


class EvalWindowDataset(Dataset):
    """Consecutive evaluation windows ``range(0, L - 1, bptt)`` of a batchified split.

    Args:
        source: ``[L, B]`` batchified token ids.
        bptt: rows per window (the last one may be shorter).
        max_windows: keep only the first windows (None: all).
    """

    def __init__(self, source: Tensor, bptt: int, max_windows: int | None = None):
        if bptt < 1:
            raise ValueError(f"eval bptt must be >= 1, got {bptt}")
        self.source, self.bptt = source, bptt
        n = len(range(0, source.size(0) - 1, bptt))
        self.n = n if max_windows is None else min(n, int(max_windows))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> dict[str, Any]:
        if not 0 <= k < self.n:
            raise IndexError(f"window {k} out of range (0..{self.n - 1})")
        start = k * self.bptt
        x, y = get_batch(self.source, start, self.bptt)
        return {"x": x, "y": y, "start": start, "seq_len": int(x.size(0))}


def _loader(dataset: Dataset, sampler: Sampler | None = None) -> DataLoader:
    # batch_size=None: every item is already a whole [s, B] batch. An own generator keeps
    # the creation of iterators from drawing on the global torch RNG (dropout masks use it).
    return DataLoader(dataset, batch_size=None, sampler=sampler, shuffle=False, generator=torch.Generator())


class PTBDataModule(pl.LightningDataModule):
    """Penn Treebank for NAS-Bench-NLP's training protocol (docs/SPACES.md §1).

    Args:
        data_dir: folder with ``ptb/ptb.{train,valid,test}.txt`` (see
            :func:`tfnas.data.ptb.load_corpus`).
        source: ``auto``, ``local`` or ``datasets``.
        batch_size: training columns (benchmark 20).
        eval_batch_size: evaluation columns (benchmark 50).
        bptt: base training window length (benchmark 70); the learning rate
            is scaled by ``seq_len / bptt``.
        eval_bptt: evaluation window length (benchmark 70).
        seed: seeds the window plans.
        variable_bptt: AWD's random window lengths (False: fixed ``bptt``).
        full_prob, bptt_std, min_seq_len: see :func:`draw_seq_len`.
        train_eval_batches: evaluate the train split on its first N windows
            only (None: the whole split, as the benchmark does).
        corpus: a ready :class:`~tfnas.data.ptb.Corpus` (skips loading).

    Raises:
        ValueError: non-positive sizes.
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        source: str = "auto",
        batch_size: int = 20,
        eval_batch_size: int = 50,
        bptt: int = 70,
        eval_bptt: int = 70,
        seed: int = 0,
        variable_bptt: bool = True,
        full_prob: float = 0.95,
        bptt_std: float = 5.0,
        min_seq_len: int = 5,
        train_eval_batches: int | None = None,
        corpus: Corpus | None = None,
    ):
        super().__init__()
        for name, v in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size), ("bptt", bptt),
                        ("eval_bptt", eval_bptt), ("min_seq_len", min_seq_len)):
            if int(v) < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        if not 0.0 <= float(full_prob) <= 1.0:
            raise ValueError(f"full_prob must be in [0, 1], got {full_prob}")
        if train_eval_batches is not None and int(train_eval_batches) < 1:
            raise ValueError(f"train_eval_batches must be >= 1 or None, got {train_eval_batches}")
        self.data_dir, self.source = data_dir, source
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.bptt, self.eval_bptt, self.seed = int(bptt), int(eval_bptt), int(seed)
        self.variable_bptt, self.full_prob = bool(variable_bptt), float(full_prob)
        self.bptt_std, self.min_seq_len = float(bptt_std), int(min_seq_len)
        self.train_eval_batches = None if train_eval_batches is None else int(train_eval_batches)
        self._corpus = corpus
        self.train_data: Tensor | None = None
        self.eval_data: dict[str, Tensor] = {}
        self.sampler: TBPTTWindowSampler | None = None

    @property
    def corpus(self) -> Corpus:
        """The tokenised corpus (loaded on first access)."""
        if self._corpus is None:
            self._corpus = load_corpus(self.data_dir, self.source)
        return self._corpus

    @property
    def ntoken(self) -> int:
        """Vocabulary size (10,000 for PTB)."""
        return self.corpus.ntoken

    def setup(self, stage: str | None = None) -> None:
        """Batchify the splits (idempotent)."""
        if self.train_data is not None:
            return
        c = self.corpus
        self.train_data = batchify(c.train, self.batch_size)
        self.eval_data = {s: batchify(c.split(s), self.eval_batch_size) for s in EVAL_SPLITS}
        self.sampler = TBPTTWindowSampler(
            self.train_data.size(0), self.bptt, self.seed, self.variable_bptt,
            self.full_prob, self.bptt_std, self.min_seq_len,
        )

    def steps_per_epoch(self, epoch: int | None = None) -> int:
        """Training windows (optimizer steps) of ``epoch`` (default: the sampler's current one), before any
        ``limit_train_batches``; it varies from epoch to epoch with the variable BPTT plan."""
        self.setup()
        return len(self.sampler.plan(epoch))

    def train_dataloader(self) -> DataLoader:
        """Ordered variable-length windows of the train split (batch ``batch_size``)."""
        self.setup()
        return _loader(WindowDataset(self.train_data), self.sampler)

    def eval_dataloader(self, split: str) -> DataLoader:
        """Consecutive ``eval_bptt`` windows of ``split`` batchified with ``eval_batch_size``.

        Raises:
            ValueError: an unknown split.
        """
        self.setup()
        if split not in EVAL_SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {EVAL_SPLITS}")
        cap = self.train_eval_batches if split == "train" else None
        return _loader(EvalWindowDataset(self.eval_data[split], self.eval_bptt, cap))

    def val_dataloader(self) -> list[DataLoader]:
        """The train, valid and test evaluation loaders, in :data:`EVAL_SPLITS` order."""
        return [self.eval_dataloader(s) for s in EVAL_SPLITS]

    def test_dataloader(self) -> DataLoader:
        """The test split's evaluation loader."""
        return self.eval_dataloader("test")

    def describe(self) -> dict[str, Any]:
        """The settings that determine the batches, for a config hash (paths left out)."""
        return {
            "dataset": "ptb",
            "batch_size": self.batch_size,
            "eval_batch_size": self.eval_batch_size,
            "bptt": self.bptt,
            "eval_bptt": self.eval_bptt,
            "variable_bptt": self.variable_bptt,
            "full_prob": self.full_prob,
            "bptt_std": self.bptt_std,
            "min_seq_len": self.min_seq_len,
            "train_eval_batches": self.train_eval_batches,
        }
