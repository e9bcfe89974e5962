"""Pretraining text for ELECTRA: tokenized, packed into fixed-length rows (docs/SPACES.md §2).

Sources (``datasets``-backed):

* ``"openwebtext"`` — the benchmark's corpus, OpenWebText (Gokaslan & Cohen
  2019) from the Hugging Face hub, streamed by default (the 100 k × 128 × 128
  tokens of the protocol are a fraction of one pass), or downloaded and
  tokenized once with ``streaming=False``. It needs network access or a local
  ``datasets`` cache; the error says so.
* ``"file"`` — any local plain-text corpus, read with ``datasets``' ``text``
  builder (one example per line); offline, PTB's training text stands in.

Rows: the text is tokenized with the BERT-uncased WordPiece vocabulary
(ELECTRA-small's), without special tokens; the ids of each ``datasets`` map
batch (``tokenize_batch_size`` lines or documents) are concatenated and cut
into consecutive pieces of ``seq_len − 2`` word pieces, each wrapped as
``[CLS] … [SEP]``. The remainder of each map batch (< seq_len − 2 tokens) is
dropped. Rows carry no padding, so ``attention_mask`` is all 1 and
``token_type_ids`` all 0 (one segment; ELECTRA's own builder packs two
segments with random lengths, a detail that does not affect the objective).

Caching: the packed rows of a file are an Arrow file in ``cache_dir`` named
by a key of (file path, size, modification time, tokenizer vocabulary, seq_len);
a rerun maps nothing. OpenWebText without streaming is cached the same way,
keyed by the dataset name and split.
"""

from __future__ import annotations

import hashlib
import logging
from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from tfnas.data.text import OPENWEBTEXT, load_tokenizer, raw_token_ids
from tfnas.paths import default_data_dir

log = logging.getLogger("tfnas.data")

SOURCES = ("openwebtext", "file")
#: Bump when the packing changes, so old cache files are not reused.
PACKING_VERSION = 1


def pack_token_ids(token_lists: list[list[int]], seq_len: int, cls_id: int, sep_id: int) -> list[list[int]]:
    """Concatenate token-id lists and cut them into ``[CLS] + (seq_len − 2) ids + [SEP]`` rows.

    Args:
        token_lists: word-piece ids per line or document (no special tokens).
        seq_len: row length including ``[CLS]`` and ``[SEP]`` (≥ 3).
        cls_id, sep_id: ids of ``[CLS]`` and ``[SEP]``.

    Returns:
        Rows of exactly ``seq_len`` ids; the trailing remainder shorter than
        ``seq_len − 2`` is dropped.

    Raises:
        ValueError: ``seq_len`` < 3.
    """
    if seq_len < 3:
        raise ValueError(f"seq_len must be >= 3 ([CLS], a token, [SEP]), got {seq_len}")
    body = seq_len - 2
    stream = [t for ids in token_lists for t in ids]
    return [[cls_id, *stream[i : i + body], sep_id] for i in range(0, len(stream) - body + 1, body)]


def _tokenize_and_pack(batch: dict[str, list], tokenizer, seq_len: int, text_column: str) -> dict[str, list]:
    ids = raw_token_ids(tokenizer, batch[text_column])
    return {"input_ids": pack_token_ids(ids, seq_len, tokenizer.cls_token_id, tokenizer.sep_token_id)}


def _file_digest(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def collate_rows(rows: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Stack packed rows: ``input_ids`` [B, S] long, ``attention_mask`` ones, ``token_type_ids`` zeros."""
    ids = torch.stack([torch.as_tensor(r["input_ids"], dtype=torch.long) for r in rows])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


class PretrainingDataModule(pl.LightningDataModule):
    """Packed pretraining rows for ELECTRA.

    Args:
        source: ``"openwebtext"`` (hub) or ``"file"`` (local text).
        path: the text file for ``source="file"`` (default: PTB train in ``data_dir``).
        data_dir: data folder (default ``tfnas.paths.default_data_dir()``).
        dataset: hub id for ``"openwebtext"``.
        split: its split.
        text_column: the text field of the hub dataset.
        streaming: stream the hub dataset (tokenized on the fly, shuffled in a buffer).
        val_path: optional held-out text file; its first ``val_rows`` rows are
            the validation set (the pretraining losses on it use fixed masks).
        val_rows: rows of ``val_path`` used (None: all).
        tokenizer_dir: BERT-uncased tokenizer folder (default ``{data_dir}/tokenizers/bert-base-uncased``).
        seq_len: row length with ``[CLS]`` and ``[SEP]`` (ELECTRA: 128).
        batch_size: rows per batch (ELECTRA: 128).
        cache_dir: where packed rows (and ``datasets``' own cache) are kept;
            None uses ``datasets``' default cache.
        num_workers: DataLoader workers.
        seed: shuffling seed.
        shuffle_buffer: buffer of the streamed shuffle.
        tokenize_batch_size: lines/documents per ``datasets.map`` batch.
        num_proc: processes for the non-streamed map.

    Raises:
        ValueError: unknown source or bad sizes.
    """

    def __init__(
        self,
        source: str = "openwebtext",
        path: str | Path | None = None,
        data_dir: str | Path | None = None,
        dataset: str = OPENWEBTEXT,
        split: str = "train",
        text_column: str = "text",
        streaming: bool = True,
        val_path: str | Path | None = None,
        val_rows: int | None = None,
        tokenizer_dir: str | Path | None = None,
        seq_len: int = 128,
        batch_size: int = 128,
        cache_dir: str | Path | None = None,
        num_workers: int = 0,
        seed: int = 0,
        shuffle_buffer: int = 10_000,
        tokenize_batch_size: int = 1000,
        num_proc: int | None = None,
    ):
        super().__init__()
        if source not in SOURCES:
            raise ValueError(f"unknown pretraining source {source!r}; expected one of {SOURCES}")
        if int(seq_len) < 3:
            raise ValueError(f"seq_len must be >= 3, got {seq_len}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if val_rows is not None and int(val_rows) < 1:
            raise ValueError(f"val_rows must be >= 1 or None, got {val_rows}")
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        self.source = source
        self.path = (Path(path) if path else self.data_dir / "ptb" / "ptb.train.txt") if source == "file" else None
        self.dataset, self.split, self.text_column, self.streaming = dataset, split, text_column, bool(streaming)
        self.val_path = Path(val_path) if val_path else None
        self.val_rows = None if val_rows is None else int(val_rows)
        self.tokenizer_dir = (
            Path(tokenizer_dir) if tokenizer_dir else self.data_dir / "tokenizers" / "bert-base-uncased"
        )
        self.seq_len, self.batch_size = int(seq_len), int(batch_size)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.num_workers, self.seed = int(num_workers), int(seed)
        self.shuffle_buffer, self.tokenize_batch_size = int(shuffle_buffer), int(tokenize_batch_size)
        self.num_proc = num_proc
        self.train_set = None
        self.val_set = None

    # ------------------------------------------------------------------ info
    @property
    def tokenizer(self):
        """The ``BertTokenizerFast`` in use.

        Raises:
            FileNotFoundError: the tokenizer folder is missing.
        """
        return load_tokenizer(str(self.tokenizer_dir.resolve()))

    @property
    def has_validation(self) -> bool:
        """Whether a held-out file is configured."""
        return self.val_path is not None

    def special_ids(self) -> tuple[int, ...]:
        """Ids never masked in pretraining: [CLS], [SEP], [MASK], [PAD]."""
        t = self.tokenizer
        return (t.cls_token_id, t.sep_token_id, t.mask_token_id, t.pad_token_id)

    def describe(self) -> dict[str, Any]:
        """The settings that determine the rows (file names only, for config hashes)."""
        d: dict[str, Any] = {"source": self.source, "seq_len": self.seq_len, "batch_size": self.batch_size,
                             "tokenizer": self.tokenizer_dir.name, "seed": self.seed}
        if self.source == "file":
            d["path"] = self.path.name
        else:
            d.update(dataset=self.dataset, split=self.split, streaming=self.streaming)
        if self.val_path is not None:
            d.update(val_path=self.val_path.name, val_rows=self.val_rows)
        return d

    # ------------------------------------------------------------------ building
    def _cache_file(self, key_parts: list[str], tag: str) -> str | None:
        if self.cache_dir is None:
            return None
        tok_vocab = self.tokenizer_dir / "vocab.txt"
        vocab = _file_digest(tok_vocab) if tok_vocab.is_file() else self.tokenizer_dir.name
        key = "|".join([*key_parts, vocab, str(self.seq_len), str(self.tokenize_batch_size), str(PACKING_VERSION)])
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        return str(self.cache_dir / f"packed_{tag}_{hashlib.sha1(key.encode()).hexdigest()[:16]}.arrow")

    def _pack(self, ds, cache_file: str | None, desc: str):
        fn = partial(_tokenize_and_pack, tokenizer=self.tokenizer, seq_len=self.seq_len, text_column=self.text_column)
        kwargs: dict[str, Any] = {"batched": True, "batch_size": self.tokenize_batch_size,
                                  "remove_columns": list(ds.column_names or [])}
        if cache_file is not None:
            kwargs.update(cache_file_name=cache_file, load_from_cache_file=True, new_fingerprint=Path(cache_file).stem)
        if self.num_proc:
            kwargs["num_proc"] = int(self.num_proc)
        return ds.map(fn, desc=desc, **kwargs)

    def _file_rows(self, path: Path, tag: str):
        """Packed rows of a local text file (cached)."""
        if not path.is_file():
            raise FileNotFoundError(f"pretraining text not found: {path}")
        from datasets import load_dataset

        st = path.stat()
        cache_file = self._cache_file([str(path.resolve()), str(st.st_size), str(st.st_mtime_ns)], tag)
        ds = load_dataset("text", data_files=str(path), split="train",
                          cache_dir=str(self.cache_dir) if self.cache_dir else None)
        return self._pack(ds, cache_file, f"tokenizing {path.name}").with_format("torch")

    def _hub_rows(self):
        """Packed rows of the hub dataset (streamed, or mapped and cached once).

        Raises:
            RuntimeError: the dataset cannot be loaded (e.g. no network and no local cache).
        """
        try:
            from datasets import load_dataset

            ds = load_dataset(self.dataset, split=self.split, streaming=self.streaming,
                              cache_dir=str(self.cache_dir) if self.cache_dir else None)
        except Exception as exc:  # network, hub and format errors mean the same to the caller
            raise RuntimeError(
                f"could not load the pretraining corpus {self.dataset!r} (split {self.split!r}) from the Hugging "
                f"Face hub: {type(exc).__name__}: {exc}. It needs network access or a local datasets cache; "
                "offline, pretrain on a local text file instead (source=file path=<text file>)."
            ) from exc
        if self.streaming:
            fn = partial(_tokenize_and_pack, tokenizer=self.tokenizer, seq_len=self.seq_len,
                         text_column=self.text_column)
            ds = ds.map(fn, batched=True, batch_size=self.tokenize_batch_size,
                        remove_columns=list(ds.column_names or []))
            return ds.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer).with_format("torch")
        cache_file = self._cache_file([self.dataset, self.split], "hub")
        return self._pack(ds, cache_file, f"tokenizing {self.dataset}").with_format("torch")

    def setup(self, stage: str | None = None) -> None:
        """Tokenize and pack (idempotent; cached on disk where configured).

        Raises:
            FileNotFoundError: missing text file or tokenizer folder.
            RuntimeError: the hub dataset cannot be loaded.
            ValueError: the text gives no full row.
        """
        if self.train_set is None:
            self.train_set = self._file_rows(self.path, "train") if self.source == "file" else self._hub_rows()
            if hasattr(self.train_set, "__len__"):
                if len(self.train_set) == 0:
                    raise ValueError(f"{self.path or self.dataset} gives no row of {self.seq_len} tokens")
                log.info(f"pretraining rows: {len(self.train_set):,} of {self.seq_len} tokens from "
                         f"{self.path or self.dataset}")
        if self.val_path is not None and self.val_set is None:
            val = self._file_rows(self.val_path, "val")
            if self.val_rows is not None:
                val = val.select(range(min(self.val_rows, len(val))))
            self.val_set = val

    def num_rows(self) -> int | None:
        """Training rows (None for a streamed corpus)."""
        self.setup()
        return len(self.train_set) if hasattr(self.train_set, "__len__") else None

    # ------------------------------------------------------------------ loaders
    def train_dataloader(self) -> DataLoader:
        """Shuffled packed rows, ``batch_size`` per batch, last partial batch dropped."""
        self.setup()
        iterable = not hasattr(self.train_set, "__len__")
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=not iterable,
            drop_last=True,
            collate_fn=collate_rows,
            num_workers=self.num_workers,
            generator=None if iterable else torch.Generator().manual_seed(self.seed),
        )

    def val_dataloader(self) -> DataLoader | list:
        """The held-out rows in order (an empty list when no ``val_path``)."""
        self.setup()
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=self.batch_size, shuffle=False, collate_fn=collate_rows,
                          num_workers=self.num_workers)
