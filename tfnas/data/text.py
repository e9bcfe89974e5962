"""The bert family's scoring minibatch (NAS-Bench-BERT): tokenized text (docs/SPACES.md §2, "Scoring minibatch").

Two sources:

* ``"openwebtext"`` — the paper's batch: the first ``batch_size`` documents
  of OpenWebText (HF ``datasets``, streamed, in file order), one document
  per row, tokenized with the BERT-uncased WordPiece vocabulary (ELECTRA-small's)
  and truncated or padded to ``seq_len`` (``[CLS] … [SEP] [PAD]…``).
* ``"file"`` — the offline stand-in (default: PTB's test text). The text is
  tokenized as one stream and cut into consecutive rows of ``seq_len − 2``
  word pieces, each wrapped in ``[CLS] … [SEP]``: rows look like truncated
  long documents and carry no padding. The text is used verbatim (PTB's
  ``<unk>`` marker is tokenized as ordinary characters).

Batch ``b`` is rows ``[b·batch_size, (b+1)·batch_size)`` of the source.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from tfnas.paths import default_data_dir

SOURCES = ("file", "openwebtext")
#: Hugging Face hub id of OpenWebText (Gokaslan & Cohen 2019).
OPENWEBTEXT = "Skylion007/openwebtext"


@lru_cache(maxsize=4)
def load_tokenizer(tokenizer_dir: str):
    """``BertTokenizerFast`` from a local folder (``vocab.txt`` / ``tokenizer.json``), cached per folder.

    Raises:
        FileNotFoundError: the folder does not exist.
    """
    from transformers import BertTokenizerFast

    if not Path(tokenizer_dir).is_dir():
        raise FileNotFoundError(f"tokenizer folder not found: {tokenizer_dir}")
    return BertTokenizerFast.from_pretrained(tokenizer_dir)


@lru_cache(maxsize=4)
def _file_token_stream(path: str, tokenizer_dir: str, mtime_ns: int) -> torch.Tensor:
    # mtime_ns is part of the key so that an edited file is re-tokenized.
    tok = load_tokenizer(tokenizer_dir)
    text = Path(path).read_text(encoding="utf-8")
    return torch.tensor(raw_token_ids(tok, text), dtype=torch.long)


def raw_token_ids(tokenizer: Any, text: str | list[str]) -> list[int] | list[list[int]]:
    """Token ids of ``text`` (one string, or a list of strings) as the tokenizer splits it, nothing added.

    No truncation, padding or special tokens: the preset length in the
    vocabulary's ``tokenizer.json`` (128) must not cut long texts.

    Returns:
        One list of ids per string (a single list for a single string).
    """
    return tokenizer(
        text,
        add_special_tokens=False,
        padding=False,
        truncation=False,
        max_length=None,
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=False,
    )["input_ids"]


class TextScoringData:
    """Builds the scoring batch of the bert model family (NAS-Bench-BERT).

    Args:
        data_dir: data folder (default ``tfnas.paths.default_data_dir()``).
        source: ``"file"`` (offline stand-in) or ``"openwebtext"`` (the paper's).
        path: the text file for ``source="file"``; default ``{data_dir}/ptb/ptb.test.txt``.
        tokenizer_dir: BERT-uncased tokenizer folder; default
            ``{data_dir}/tokenizers/bert-base-uncased``.
        batch_size: rows per batch (the paper: 128).
        seq_len: tokens per row including ``[CLS]`` and ``[SEP]`` (the paper: 512).
        dataset: hub id of OpenWebText for ``source="openwebtext"``.

    Raises:
        ValueError: unknown source, ``seq_len`` < 3 or ``batch_size`` < 1.
    """

    #: The model family whose scoring batches this builds (checked against the space before any work).
    family = "bert"

    def __init__(
        self,
        data_dir: str | Path | None = None,
        source: str = "file",
        path: str | Path | None = None,
        tokenizer_dir: str | Path | None = None,
        batch_size: int = 128,
        seq_len: int = 512,
        dataset: str = OPENWEBTEXT,
    ):
        if source not in SOURCES:
            raise ValueError(f"unknown text source {source!r}; expected one of {SOURCES}")
        if seq_len < 3:
            raise ValueError(f"seq_len must be >= 3 ([CLS], a token, [SEP]), got {seq_len}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        self.source = source
        if source == "file":
            self.path = Path(path) if path is not None else self.data_dir / "ptb" / "ptb.test.txt"
        else:
            self.path = None
        self.tokenizer_dir = (
            Path(tokenizer_dir) if tokenizer_dir is not None else self.data_dir / "tokenizers" / "bert-base-uncased"
        )
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.dataset = dataset

    @property
    def tokenizer(self):
        """The ``BertTokenizerFast`` in use."""
        return load_tokenizer(str(self.tokenizer_dir.resolve()))

    def describe(self) -> dict[str, Any]:
        """The settings that determine the batch (for the run's config hash and records).

        The text file enters by its name only, so moving the data folder keeps the records valid.
        """
        d: dict[str, Any] = {
            "source": self.source,
            "tokenizer": self.tokenizer_dir.name,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
        }
        if self.source == "file":
            d["path"] = self.path.name
        else:
            d["dataset"] = self.dataset
        return d

    def num_batches(self) -> int:
        """Number of full batches the file source provides (``source="file"`` only).

        Raises:
            ValueError: for the OpenWebText source (its size is not known offline).
        """
        if self.source != "file":
            raise ValueError("num_batches is only known for source='file'")
        return self._num_rows() // self.batch_size

    def _num_rows(self) -> int:
        return len(self._stream()) // (self.seq_len - 2)

    def _stream(self) -> torch.Tensor:
        if not self.path.is_file():
            raise FileNotFoundError(f"scoring text not found: {self.path}")
        return _file_token_stream(
            str(self.path.resolve()), str(self.tokenizer_dir.resolve()), self.path.stat().st_mtime_ns
        )

    def scoring_batch(self, batch_index: int = 0) -> dict[str, torch.Tensor]:
        """The scoring minibatch number ``batch_index``.

        Returns:
            ``input_ids`` [B, S] (long), ``attention_mask`` [B, S] (1 = token,
            0 = padding), ``token_type_ids`` [B, S] (all 0), with B =
            ``batch_size`` and S = ``seq_len``.

        Raises:
            IndexError: ``batch_index`` negative, or beyond the rows the text provides.
            FileNotFoundError: missing text file or tokenizer folder.
            RuntimeError: OpenWebText could not be loaded (e.g. no network).
        """
        if batch_index < 0:
            raise IndexError(f"batch_index must be >= 0, got {batch_index}")
        if self.source == "file":
            return self._file_batch(batch_index)
        return self._openwebtext_batch(batch_index)

    def _file_batch(self, batch_index: int) -> dict[str, torch.Tensor]:
        body = self.seq_len - 2
        stream = self._stream()
        rows = len(stream) // body
        first, last = batch_index * self.batch_size, (batch_index + 1) * self.batch_size
        if last > rows:
            raise IndexError(
                f"batch_index={batch_index} needs rows {first}..{last - 1}, but {self.path} gives only {rows} rows "
                f"of {body} tokens ({len(stream)} tokens; {rows // self.batch_size} full batches of {self.batch_size})"
            )
        tok = self.tokenizer
        middle = stream[first * body : last * body].view(self.batch_size, body)
        cls = torch.full((self.batch_size, 1), tok.cls_token_id, dtype=torch.long)
        sep = torch.full((self.batch_size, 1), tok.sep_token_id, dtype=torch.long)
        ids = torch.cat([cls, middle, sep], dim=1)
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "token_type_ids": torch.zeros_like(ids),
        }

    def _openwebtext_batch(self, batch_index: int) -> dict[str, torch.Tensor]:
        docs = _openwebtext_documents(self.dataset, (batch_index + 1) * self.batch_size)
        texts = docs[batch_index * self.batch_size :]
        enc = self.tokenizer(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=self.seq_len,
            return_tensors="pt",
            return_token_type_ids=True,
            return_attention_mask=True,
        )
        return {k: enc[k].long() for k in ("input_ids", "attention_mask", "token_type_ids")}


@lru_cache(maxsize=2)
def _openwebtext_documents(dataset: str, count: int) -> tuple[str, ...]:
    """The first ``count`` documents of OpenWebText's train split, in order (streamed, cached in-process)."""
    try:
        from datasets import load_dataset

        stream = load_dataset(dataset, split="train", streaming=True)
        docs = []
        for row in stream:
            docs.append(row["text"])
            if len(docs) == count:
                break
    except Exception as exc:  # network, hub or format errors all mean the same thing to the caller
        raise RuntimeError(
            f"could not stream OpenWebText ({dataset!r}) from the Hugging Face hub: {type(exc).__name__}: {exc}. "
            "It needs network access (or a local datasets cache); offline, use source='file'."
        ) from exc
    if len(docs) < count:
        raise RuntimeError(f"OpenWebText ({dataset!r}) gave only {len(docs)} documents, {count} needed")
    return tuple(docs)
