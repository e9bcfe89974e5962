"""GLUE data for fine-tuning NAS-Bench-BERT discriminators (docs/SPACES.md §2; Wang et al., ICLR 2019).

Tasks are named as ``datasets``' ``glue`` configs (``cola sst2 mrpc qqp mnli
qnli rte stsb wnli``); :data:`GLUE_TASKS` holds what each needs: its TSV
layout, its ``datasets`` columns, its labels (in ``datasets``' id order),
its dev metric and its key in NAS-Bench-BERT's ``scores``.

Two sources, with the same examples and label ids:

* GLUE-format TSV folders, ``<tsv_dir>/<TASK>/{train,dev}.tsv`` (MNLI:
  ``dev_matched.tsv``), as GLUE's download script writes them; read with
  ``csv`` (tab, no quoting: GLUE's text contains literal quotes) and the
  column positions of ELECTRA's ``classification_tasks.py``.
* ``datasets``' ``nyu-mll/glue`` configs (train / validation; MNLI
  validation_matched), which needs network access or a local cache.

Features follow ELECTRA's fine-tuning: ``[CLS] a [SEP] (b [SEP])``, token
types 0 then 1, the longer segment truncated first to ``max_seq_len`` (128),
padded to ``max_seq_len`` (LT and DSC layers mix over padded positions, so a
fixed length keeps the benchmark's input shape). For MRPC and STS-B
(``double_unordered``), every training pair is also added with its two
sentences swapped. STS-B targets are scaled to [0, 1] (score / 5), as
ELECTRA's regression task does.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from tfnas.data.text import load_tokenizer
from tfnas.paths import default_data_dir

log = logging.getLogger("tfnas.data")

SOURCES = ("auto", "tsv", "datasets")
#: The hub id of GLUE for ``datasets``.
GLUE_DATASET = "nyu-mll/glue"


@dataclass(frozen=True)
class GlueTask:
    """How to read, train and score one GLUE task.

    Attributes:
        name: ``datasets`` config name (``rte``).
        folder: GLUE's TSV folder name (``RTE``).
        benchmark_key: the task's key in NAS-Bench-BERT ``scores`` (``rte``;
            None for WNLI, which is not part of the benchmark's GLUE score).
        labels: label strings in ``datasets``' id order; None for regression.
        metric: the dev metric: ``"accuracy"``, ``"mcc"`` or ``"spearman"``.
        extra_metrics: further metrics logged (``"f1"`` for MRPC and QQP).
        tsv_columns: (text a, text b or None, label) column positions in train/dev TSVs.
        tsv_header: whether the TSVs start with a header row.
        dev_file: the dev TSV's file name.
        hf_columns: (text a, text b or None) ``datasets`` columns.
        hf_dev_split: ``datasets``' dev split.
        double_unordered: add swapped training pairs (ELECTRA, for symmetric pair tasks).
        label_scale: divide regression targets by this (STS-B: 5).
    """

    name: str
    folder: str
    benchmark_key: str | None
    labels: tuple[str, ...] | None
    metric: str
    extra_metrics: tuple[str, ...]
    tsv_columns: tuple[int, int | None, int]
    tsv_header: bool
    dev_file: str
    hf_columns: tuple[str, str | None]
    hf_dev_split: str = "validation"
    double_unordered: bool = False
    label_scale: float = 1.0

    @property
    def num_labels(self) -> int:
        """Classes (1 for regression)."""
        return 1 if self.labels is None else len(self.labels)

    @property
    def is_regression(self) -> bool:
        """True for STS-B."""
        return self.labels is None


_BIN = ("0", "1")
_ENT = ("entailment", "not_entailment")
GLUE_TASKS: dict[str, GlueTask] = {
    t.name: t
    for t in (
        GlueTask("cola", "CoLA", "cola", _BIN, "mcc", (), (3, None, 1), False, "dev.tsv", ("sentence", None)),
        GlueTask("sst2", "SST-2", "sst", _BIN, "accuracy", (), (0, None, 1), True, "dev.tsv", ("sentence", None)),
        GlueTask("mrpc", "MRPC", "mrpc", _BIN, "accuracy", ("f1",), (3, 4, 0), True, "dev.tsv",
                 ("sentence1", "sentence2"), double_unordered=True),
        GlueTask("qqp", "QQP", "qqp", _BIN, "accuracy", ("f1",), (3, 4, 5), True, "dev.tsv",
                 ("question1", "question2")),
        GlueTask("mnli", "MNLI", "mnli", ("entailment", "neutral", "contradiction"), "accuracy", (), (8, 9, -1), True,
                 "dev_matched.tsv", ("premise", "hypothesis"), hf_dev_split="validation_matched"),
        GlueTask("qnli", "QNLI", "qnli", _ENT, "accuracy", (), (1, 2, 3), True, "dev.tsv", ("question", "sentence")),
        GlueTask("rte", "RTE", "rte", _ENT, "accuracy", (), (1, 2, 3), True, "dev.tsv", ("sentence1", "sentence2")),
        GlueTask("stsb", "STS-B", "sts", None, "spearman", (), (-3, -2, -1), True, "dev.tsv",
                 ("sentence1", "sentence2"), double_unordered=True, label_scale=5.0),
        GlueTask("wnli", "WNLI", None, _BIN, "accuracy", (), (1, 2, 3), True, "dev.tsv", ("sentence1", "sentence2")),
    )
}
#: The benchmark's eight GLUE tasks (its ``scores.glue`` is their mean).
BENCHMARK_TASKS = ("cola", "sst2", "mrpc", "qqp", "mnli", "qnli", "rte", "stsb")
_ALIASES = {"sst": "sst2", "sts": "stsb", "sts-b": "stsb", "sst-2": "sst2"}


def get_task(name: str) -> GlueTask:
    """The :class:`GlueTask` of ``name`` (``datasets`` name, GLUE folder name or benchmark key, any case).

    Raises:
        ValueError: unknown task.
    """
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE task {name!r}; expected one of {list(GLUE_TASKS)}")
    return GLUE_TASKS[key]


@dataclass(frozen=True)
class GlueExample:
    """One example: ``text_a``, optional ``text_b``, ``label`` (class id, or float target)."""

    text_a: str
    text_b: str | None
    label: float | int


def read_glue_tsv(path: str | Path, task: GlueTask | str) -> list[GlueExample]:
    """Read a GLUE train or dev TSV of ``task``.

    Args:
        path: the file (e.g. ``glue/RTE/dev.tsv``).
        task: the task (or its name).

    Returns:
        Examples in file order; class labels as ids in ``task.labels`` order,
        regression targets as floats (unscaled).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a row too short or with an unknown label (names the file and line).
    """
    task = get_task(task) if isinstance(task, str) else task
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GLUE {task.name} file not found: {path}")
    ia, ib, il = task.tsv_columns
    need = max(c + 1 if c >= 0 else -c for c in (ia, ib, il) if c is not None)  # columns a row must have
    label_ids = None if task.labels is None else {s: i for i, s in enumerate(task.labels)}
    out = []
    with open(path, encoding="utf-8", newline="") as f:
        for lineno, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            if lineno == 1 and task.tsv_header:
                continue
            if len(row) < need:
                raise ValueError(f"{path}:{lineno}: {len(row)} columns, {task.name} needs at least {need}")
            raw = row[il].strip()
            if label_ids is None:
                try:
                    label: float | int = float(raw)
                except ValueError:
                    raise ValueError(f"{path}:{lineno}: {task.name} target {raw!r} is not a number") from None
            else:
                if raw not in label_ids:
                    raise ValueError(f"{path}:{lineno}: unknown {task.name} label {raw!r}; expected {task.labels}")
                label = label_ids[raw]
            out.append(GlueExample(row[ia], None if ib is None else row[ib], label))
    return out


def tsv_folder(tsv_dir: str | Path, task: GlueTask | str) -> Path:
    """``<tsv_dir>/<task folder>`` (e.g. ``glue/RTE``)."""
    task = get_task(task) if isinstance(task, str) else task
    return Path(tsv_dir) / task.folder


def load_split(
    task: GlueTask | str,
    split: str,
    source: str = "auto",
    tsv_dir: str | Path | None = None,
    dataset: str = GLUE_DATASET,
    cache_dir: str | Path | None = None,
) -> tuple[list[GlueExample], str]:
    """The examples of one split (``"train"`` or ``"dev"``).

    Args:
        task: the task.
        split: ``"train"`` or ``"dev"``.
        source: ``"tsv"``, ``"datasets"`` or ``"auto"`` (the TSV folder when
            its file exists, else ``datasets``).
        tsv_dir: folder holding ``<TASK>/`` TSV folders (default ``<data_dir>/glue``).
        dataset: ``datasets`` hub id of GLUE.
        cache_dir: ``datasets`` cache.

    Returns:
        ``(examples, where)``: where names the file or hub split read.

    Raises:
        ValueError: unknown split or source.
        FileNotFoundError: ``source="tsv"`` and no file.
        RuntimeError: ``datasets`` could not load the task (e.g. offline).
    """
    task = get_task(task) if isinstance(task, str) else task
    if split not in ("train", "dev"):
        raise ValueError(f"split must be 'train' or 'dev', got {split!r}")
    if source not in SOURCES:
        raise ValueError(f"unknown GLUE source {source!r}; expected one of {SOURCES}")
    folder = tsv_folder(tsv_dir if tsv_dir is not None else default_data_dir() / "glue", task)
    path = folder / ("train.tsv" if split == "train" else task.dev_file)
    if source == "tsv" or (source == "auto" and path.is_file()):
        return read_glue_tsv(path, task), str(path)
    hf_split = "train" if split == "train" else task.hf_dev_split
    try:
        from datasets import load_dataset

        ds = load_dataset(dataset, task.name, split=hf_split, cache_dir=str(cache_dir) if cache_dir else None)
    except Exception as exc:
        raise RuntimeError(
            f"could not load GLUE {task.name} ({dataset!r}, split {hf_split!r}) with datasets: "
            f"{type(exc).__name__}: {exc}. It needs network access or a local datasets cache; offline, put GLUE's "
            f"TSV files in {folder}/ (train.tsv, {task.dev_file}) and use glue.source=tsv or auto "
            "(HF_DATASETS_OFFLINE=1 makes datasets fail at once instead of retrying)."
        ) from exc
    ca, cb = task.hf_columns
    examples = [
        GlueExample(r[ca], None if cb is None else r[cb], float(r["label"]) if task.is_regression else int(r["label"]))
        for r in ds
    ]
    return examples, f"{dataset}/{task.name}:{hf_split}"


class EncodedGlue(Dataset):
    """Tokenized examples held as compact tensors.

    Items: ``input_ids``, ``attention_mask``, ``token_type_ids`` [S] (long)
    and ``labels`` (long class id, or float target).
    """

    def __init__(self, input_ids: Tensor, lengths: Tensor, token_type_ids: Tensor, labels: Tensor):
        self.input_ids, self.lengths, self.token_type_ids, self.labels = input_ids, lengths, token_type_ids, labels

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        ids = self.input_ids[i].long()
        mask = (torch.arange(ids.shape[0]) < self.lengths[i]).long()
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": self.token_type_ids[i].long(),
                "labels": self.labels[i]}


def encode_examples(
    examples: Sequence[GlueExample],
    tokenizer,
    max_seq_len: int = 128,
    pad_to_max_length: bool = True,
    label_scale: float = 1.0,
    regression: bool = False,
) -> EncodedGlue:
    """Tokenize examples as ``[CLS] a [SEP] (b [SEP])``, longest segment truncated first.

    Args:
        examples: the examples.
        tokenizer: a BERT fast tokenizer.
        max_seq_len: sequence length with special tokens (ELECTRA: 128).
        pad_to_max_length: pad every row to ``max_seq_len`` (else to the longest in the set).
        label_scale: regression targets are divided by it.
        regression: float targets instead of class ids.

    Returns:
        :class:`EncodedGlue` (ids stored as int32, token types as int8).

    Raises:
        ValueError: no examples, or ``max_seq_len`` < 4.
    """
    if not examples:
        raise ValueError("no examples to encode")
    if max_seq_len < 4:
        raise ValueError(f"max_seq_len must be >= 4, got {max_seq_len}")
    a = [e.text_a for e in examples]
    pairs = examples[0].text_b is not None
    b = [e.text_b or "" for e in examples] if pairs else None
    enc = tokenizer(
        a, b,
        truncation="longest_first",
        max_length=max_seq_len,
        padding="max_length" if pad_to_max_length else "longest",
        return_tensors="pt",
        return_attention_mask=True,
        return_token_type_ids=True,
    )
    labels = torch.tensor(
        [float(e.label) / label_scale for e in examples] if regression else [int(e.label) for e in examples],
        dtype=torch.float32 if regression else torch.long,
    )
    return EncodedGlue(enc["input_ids"].to(torch.int32), enc["attention_mask"].sum(1),
                       enc["token_type_ids"].to(torch.int8), labels)


class GlueDataModule(pl.LightningDataModule):
    """One GLUE task's train and dev sets, encoded for an ELECTRA-style classifier.

    Args:
        task: task name (see :data:`GLUE_TASKS`).
        source: ``"auto"``, ``"tsv"`` or ``"datasets"`` (see :func:`load_split`).
        tsv_dir: GLUE TSV root (default ``<data_dir>/glue``).
        data_dir: data folder (default ``tfnas.paths.default_data_dir()``).
        dataset: ``datasets`` hub id of GLUE.
        tokenizer_dir: BERT-uncased tokenizer (default ``<data_dir>/tokenizers/bert-base-uncased``).
        max_seq_len: 128.
        pad_to_max_length: fixed-length rows (True, as ELECTRA).
        double_unordered: add swapped pairs for the tasks that ask for it (MRPC, STS-B).
        batch_size: training batch (32).
        eval_batch_size: dev batch.
        limit_train_examples: keep only the first N training examples
            (before swapping; None: all) — for quick runs.
        limit_eval_examples: keep only the first N dev examples (None: all).
        seed: shuffling seed.
        num_workers: DataLoader workers.
        cache_dir: ``datasets`` cache.

    Raises:
        ValueError: unknown task or source, or bad sizes.
    """

    def __init__(
        self,
        task: str,
        source: str = "auto",
        tsv_dir: str | Path | None = None,
        data_dir: str | Path | None = None,
        dataset: str = GLUE_DATASET,
        tokenizer_dir: str | Path | None = None,
        max_seq_len: int = 128,
        pad_to_max_length: bool = True,
        double_unordered: bool = True,
        batch_size: int = 32,
        eval_batch_size: int = 128,
        limit_train_examples: int | None = None,
        limit_eval_examples: int | None = None,
        seed: int = 0,
        num_workers: int = 0,
        cache_dir: str | Path | None = None,
    ):
        super().__init__()
        self.task = get_task(task)
        if source not in SOURCES:
            raise ValueError(f"unknown GLUE source {source!r}; expected one of {SOURCES}")
        for name, v in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if int(v) < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        self.source = source
        self.tsv_dir = Path(tsv_dir) if tsv_dir else self.data_dir / "glue"
        self.dataset = dataset
        self.tokenizer_dir = (
            Path(tokenizer_dir) if tokenizer_dir else self.data_dir / "tokenizers" / "bert-base-uncased"
        )
        self.max_seq_len, self.pad_to_max_length = int(max_seq_len), bool(pad_to_max_length)
        self.double_unordered = bool(double_unordered) and self.task.double_unordered
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.limit_train_examples = None if limit_train_examples is None else int(limit_train_examples)
        self.limit_eval_examples = None if limit_eval_examples is None else int(limit_eval_examples)
        self.seed, self.num_workers = int(seed), int(num_workers)
        self.cache_dir = cache_dir
        self.train_set: EncodedGlue | None = None
        self.dev_set: EncodedGlue | None = None
        self.sources: dict[str, str] = {}

    @property
    def tokenizer(self):
        """The ``BertTokenizerFast`` in use."""
        return load_tokenizer(str(self.tokenizer_dir.resolve()))

    def setup(self, stage: str | None = None) -> None:
        """Read and encode both splits (idempotent)."""
        if self.train_set is not None:
            return
        t = self.task
        train, self.sources["train"] = load_split(t, "train", self.source, self.tsv_dir, self.dataset, self.cache_dir)
        dev, self.sources["dev"] = load_split(t, "dev", self.source, self.tsv_dir, self.dataset, self.cache_dir)
        if self.limit_train_examples is not None:
            train = train[: self.limit_train_examples]
        if self.limit_eval_examples is not None:
            dev = dev[: self.limit_eval_examples]
        if self.double_unordered:
            train = train + [GlueExample(e.text_b, e.text_a, e.label) for e in train]
        enc = dict(tokenizer=self.tokenizer, max_seq_len=self.max_seq_len, pad_to_max_length=self.pad_to_max_length,
                   label_scale=t.label_scale, regression=t.is_regression)
        self.train_set = encode_examples(train, **enc)
        self.dev_set = encode_examples(dev, **enc)
        log.info(f"GLUE {t.name}: {len(self.train_set)} train ({self.sources['train']}), "
                 f"{len(self.dev_set)} dev ({self.sources['dev']})")

    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch (the last partial batch counts)."""
        self.setup()
        return math.ceil(len(self.train_set) / self.batch_size)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches (seeded)."""
        self.setup()
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, num_workers=self.num_workers,
                          generator=torch.Generator().manual_seed(self.seed))

    def val_dataloader(self) -> DataLoader:
        """The dev set in order."""
        self.setup()
        return DataLoader(self.dev_set, batch_size=self.eval_batch_size, shuffle=False, num_workers=self.num_workers)

    def describe(self) -> dict[str, Any]:
        """Settings that change the fine-tuning data (for config hashes)."""
        return {
            "task": self.task.name,
            "source": self.source,
            "max_seq_len": self.max_seq_len,
            "pad_to_max_length": self.pad_to_max_length,
            "double_unordered": self.double_unordered,
            "batch_size": self.batch_size,
            "limit_train_examples": self.limit_train_examples,
            "limit_eval_examples": self.limit_eval_examples,
        }
