"""Causal-LM training data for the LTS GPT-2 decoders, as LTS's ordered iterator reads it.

LTS trains with archai's ``LMOrderedIterator`` (after Transformer-XL): a
split's token stream is batchified into ``batch_size`` parallel streams
(rows of a [batch_size, N] matrix) and read by consecutive windows of
``tgt_len`` tokens; window k is columns ``[k·L, (k+1)·L)`` as inputs and the
next token of each as targets, so every input position predicts one token.
With ``roll`` (LTS's default), every epoch rotates each training stream by
its own random offset (drawn from a generator seeded with ``(seed, epoch)``),
so windows start at new places each epoch. Evaluation reads the valid and
test splits the same way with ``eval_batch_size`` streams and windows of
``eval_tgt_len`` (the last, shorter window included), never rolled.

Every batch is ``{"input_ids": [B, L], "labels": [B, L]}`` with
``labels[:, t]`` the token after ``input_ids[:, t]``. The validation loop
gets two loaders, in the order of :data:`EVAL_SPLITS`.

Text and tokenizer come from a :class:`~tfnas.data.causal_text.CausalTextScoringData`
(PTB's three files by default, any files, or WikiText-103 through ``datasets``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from tfnas.data.causal_text import CausalTextScoringData

#: Order of the validation dataloaders (``dataloader_idx`` 0, 1).
EVAL_SPLITS = ("valid", "test")


def batchify(stream: Tensor, streams: int) -> Tensor:
    """A 1-D token stream as ``streams`` parallel rows [streams, N] (the remainder dropped).

    Raises:
        ValueError: fewer than two tokens per row.
    """
    n = stream.numel() // streams
    if n < 2:
        raise ValueError(f"{stream.numel()} tokens cannot make {streams} streams of at least 2 tokens")
    return stream[: n * streams].view(streams, n)


def roll_streams(data: Tensor, generator: torch.Generator) -> Tensor:
    """Each row of ``data`` [B, N] rotated left by its own offset, uniform in ``[0, N)`` (LTS's ``roll``)."""
    n = data.shape[1]
    shifts = torch.randint(0, n, (data.shape[0],), generator=generator)
    cols = (torch.arange(n)[None, :] + shifts[:, None]) % n
    return data.gather(1, cols)


class WindowDataset(Dataset):
    """Window k of a batchified split: ``{"input_ids", "labels"}`` [B, ≤ L] (targets one token ahead)."""

    def __init__(self, data: Tensor, tgt_len: int, seed: int = 0, roll: bool = False):
        self.data, self.tgt_len, self.seed, self.roll = data, int(tgt_len), int(seed), bool(roll)
        self._epoch, self._rolled = None, data

    def __len__(self) -> int:
        return -(-(self.data.shape[1] - 1) // self.tgt_len)  # windows need a next token

    def rows(self, epoch: int) -> Tensor:
        """The streams of ``epoch`` (rolled when ``roll``)."""
        if not self.roll:
            return self.data
        if self._epoch != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._rolled, self._epoch = roll_streams(self.data, g), epoch
        return self._rolled

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Tensor]:
        epoch, k = item if isinstance(item, tuple) else (0, item)
        data = self.rows(epoch)
        lo = k * self.tgt_len
        hi = min(lo + self.tgt_len, data.shape[1] - 1)
        return {"input_ids": data[:, lo:hi], "labels": data[:, lo + 1 : hi + 1]}


class EpochWindows(Sampler):
    """Yields ``(epoch, k)`` for k = 0 … len − 1 in order; Lightning sets the epoch through :meth:`set_epoch`."""

    def __init__(self, n: int):
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, k) for k in range(self.n)])


def _loader(dataset: Dataset, sampler: Sampler | None = None) -> DataLoader:
    # batch_size=None: each item already is a whole [B, L] batch.
    return DataLoader(dataset, batch_size=None, sampler=sampler, shuffle=False)


class CausalLMDataModule(pl.LightningDataModule):
    """Train / valid / test token streams for causal-LM training.

    Args:
        text: text source and tokenizer (its ``source``, ``tokenizer`` and
            ``data_dir`` are used; its scoring batch shape is not).
        train_path, valid_path, test_path: text files for ``source="file"``;
            default ``{data_dir}/ptb/ptb.{train,valid,test}.txt``.
        batch_size: parallel training streams (LTS: 256).
        tgt_len: training window (LTS: the architecture's ``tgt_len``, 192 / 32).
        eval_batch_size: parallel evaluation streams (LTS: 16).
        eval_tgt_len: evaluation window (LTS: as ``tgt_len``).
        roll: rotate the training streams every epoch (LTS: on).
        seed: seed of the rolls.

    Raises:
        ValueError: non-positive sizes.
    """

    def __init__(
        self,
        text: CausalTextScoringData,
        train_path: str | Path | None = None,
        valid_path: str | Path | None = None,
        test_path: str | Path | None = None,
        batch_size: int = 256,
        tgt_len: int = 192,
        eval_batch_size: int = 16,
        eval_tgt_len: int = 192,
        roll: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        if min(batch_size, tgt_len, eval_batch_size, eval_tgt_len) < 1:
            raise ValueError("batch sizes and window lengths must be >= 1")
        self.text = text
        ptb = text.data_dir / "ptb"
        self.paths = {
            "train": Path(train_path) if train_path else ptb / "ptb.train.txt",
            "valid": Path(valid_path) if valid_path else ptb / "ptb.valid.txt",
            "test": Path(test_path) if test_path else ptb / "ptb.test.txt",
        }
        self.batch_size, self.tgt_len = int(batch_size), int(tgt_len)
        self.eval_batch_size, self.eval_tgt_len = int(eval_batch_size), int(eval_tgt_len)
        self.roll, self.seed = bool(roll), int(seed)
        self._data: dict[str, Tensor] = {}

    def stream(self, split: str) -> Tensor:
        """All token ids of ``split`` (``train``, ``valid``, ``test``)."""
        if self.text.source == "file":
            return self.text.token_stream(path=self.paths[split])
        return self.text.token_stream(split={"train": "train", "valid": "validation", "test": "test"}[split])

    def setup(self, stage: str | None = None) -> None:
        if not self._data:
            self._data = {
                "train": batchify(self.stream("train"), self.batch_size),
                **{s: batchify(self.stream(s), self.eval_batch_size) for s in EVAL_SPLITS},
            }

    def train_dataloader(self) -> DataLoader:
        self.setup()
        ds = WindowDataset(self._data["train"], self.tgt_len, seed=self.seed, roll=self.roll)
        return _loader(ds, EpochWindows(len(ds)))

    def eval_dataloader(self, split: str) -> DataLoader:
        """Ordered windows of ``split`` (``valid`` or ``test``)."""
        self.setup()
        return _loader(WindowDataset(self._data[split], self.eval_tgt_len))

    def val_dataloader(self) -> list[DataLoader]:
        return [self.eval_dataloader(s) for s in EVAL_SPLITS]

    def describe(self) -> dict[str, Any]:
        """The settings that determine the training data (for the config hash); files by name only."""
        d = {**self.text.describe(), "batch_size": self.batch_size, "tgt_len": self.tgt_len,
             "eval_batch_size": self.eval_batch_size, "eval_tgt_len": self.eval_tgt_len, "roll": self.roll}  # fmt: skip
        d.pop("seq_len", None)
        d.pop("split", None)
        if self.text.source == "file":
            d.pop("path", None)
            d["paths"] = {k: v.name for k, v in self.paths.items()}
        return d
