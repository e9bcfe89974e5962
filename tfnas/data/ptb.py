"""Penn Treebank (Mikolov's language-modelling version) for the rnn model family (NAS-Bench-NLP).

The vocabulary and token ids follow docs/SPACES.md §1 "Data", which is how the
AWD-LSTM code behind NAS-Bench-NLP builds them: read ``train``, ``valid``,
``test`` in that order, split every line on whitespace, append ``<eos>``,
and number words by first appearance. This gives 10,000 tokens and the ids
the benchmark trained with.

Sources: the three text files (``<data_dir>/ptb/ptb.{train,valid,test}.txt``,
from Mikolov's ``simple-examples.tgz``) or, for users without them, the
``ptb_text_only`` dataset of the Hugging Face hub (field ``sentence``).

The scoring minibatch of Serianni & Kalita (2023) is the first ``bptt`` = 70
rows of the test split batchified with the evaluation batch size 50.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import Tensor

from tfnas.paths import default_data_dir

SPLITS = ("train", "valid", "test")
EOS = "<eos>"
#: The Hugging Face hub name of the same corpus (one sentence per row, field ``sentence``).
HF_DATASET = "ptb_text_only"
_HF_SPLITS = {"train": "train", "valid": "validation", "test": "test"}


@dataclass
class Corpus:
    """A tokenised corpus.

    Attributes:
        vocab: id -> word (``vocab[i]`` is the word with id i).
        word2idx: word -> id.
        train, valid, test: 1-D LongTensors of token ids, ``<eos>`` after
            every line.
        source: where it came from (a folder path or ``hf:<name>``).
    """

    vocab: list[str]
    word2idx: dict[str, int]
    train: Tensor
    valid: Tensor
    test: Tensor
    source: str = ""

    @property
    def ntoken(self) -> int:
        """Vocabulary size."""
        return len(self.vocab)

    def split(self, name: str) -> Tensor:
        """The ids of split ``name`` (``train``, ``valid`` or ``test``).

        Raises:
            ValueError: an unknown split name.
        """
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return getattr(self, name)


def tokenize(splits: dict[str, Iterable[str]]) -> Corpus:
    """Build the vocabulary and id tensors from the lines of each split.

    Args:
        splits: ``{"train": lines, "valid": lines, "test": lines}``; the
            vocabulary grows in the order train, valid, test.

    Returns:
        The :class:`Corpus` (``source`` empty).
    """
    word2idx: dict[str, int] = {}
    vocab: list[str] = []
    ids: dict[str, Tensor] = {}
    for name in SPLITS:
        seq: list[int] = []
        for line in splits[name]:
            for w in line.split() + [EOS]:
                i = word2idx.get(w)
                if i is None:
                    i = word2idx[w] = len(vocab)
                    vocab.append(w)
                seq.append(i)
        ids[name] = torch.tensor(seq, dtype=torch.long)
    return Corpus(vocab=vocab, word2idx=word2idx, **ids)


def _local_folder(data_dir: Path) -> Path | None:
    """The folder holding ptb.{train,valid,test}.txt: ``data_dir/ptb`` or ``data_dir`` itself."""
    for folder in (data_dir / "ptb", data_dir):
        if all((folder / f"ptb.{s}.txt").is_file() for s in SPLITS):
            return folder
    return None


@lru_cache(maxsize=4)
def _load_local(folder: str) -> Corpus:
    lines = {}
    for s in SPLITS:
        with open(Path(folder) / f"ptb.{s}.txt", encoding="utf-8") as f:
            lines[s] = f.readlines()
    corpus = tokenize(lines)
    corpus.source = folder
    return corpus


@lru_cache(maxsize=2)
def _load_datasets(name: str) -> Corpus:
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets is a dependency
        raise RuntimeError(f"loading {name!r} needs the Hugging Face 'datasets' package") from e
    errors = []
    # datasets >= 4 no longer runs loading scripts such as ptb_text_only's; the hub's
    # automatic Parquet conversion of the same data loads without one.
    for kwargs in ({}, {"revision": "refs/convert/parquet"}):
        try:
            ds = datasets.load_dataset(name, **kwargs)
            lines = {s: ds[_HF_SPLITS[s]]["sentence"] for s in SPLITS}
            break
        except Exception as e:  # network, hub and format errors all mean: this route failed
            errors.append(f"load_dataset({name!r}{', ' + str(kwargs) if kwargs else ''}): {type(e).__name__}: {e}")
    else:
        raise RuntimeError("could not load Penn Treebank through Hugging Face datasets:\n  " + "\n  ".join(errors))
    corpus = tokenize(lines)
    corpus.source = f"hf:{name}"
    return corpus


def load_corpus(data_dir: str | Path | None = None, source: str = "auto", hf_name: str = HF_DATASET) -> Corpus:
    """Load and tokenise Penn Treebank (cached per folder or dataset name).

    Args:
        data_dir: the data folder holding ``ptb/ptb.{train,valid,test}.txt``,
            or the folder holding the three files itself; default
            ``tfnas.paths.default_data_dir()`` ($TFNAS_DATA_DIR or
            ``<repo>/../shared/data``).
        source: ``"local"`` (the files), ``"datasets"`` (Hugging Face
            ``hf_name``, field ``sentence``), or ``"auto"``: local, else datasets.
        hf_name: the hub dataset for ``"datasets"``.

    Returns:
        The :class:`Corpus` (10,000-token vocabulary for Mikolov's PTB). The
        same object is returned for the same folder: do not modify its tensors.

    Raises:
        FileNotFoundError: ``"local"`` without the files; ``"auto"`` when
            neither route works (the message names the folder tried, how to
            point at the data, and the dataset name).
        RuntimeError: ``"datasets"`` could not load the dataset.
        ValueError: an unknown ``source``.
    """
    if source not in ("auto", "local", "datasets"):
        raise ValueError(f"unknown source {source!r}; expected 'auto', 'local' or 'datasets'")
    base = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    hint = (
        f"Penn Treebank files ptb.train.txt, ptb.valid.txt, ptb.test.txt not found in {base / 'ptb'} or {base}; "
        "point paths.data_dir (or the TFNAS_DATA_DIR environment variable) at the folder that holds ptb/"
    )
    if source in ("auto", "local"):
        folder = _local_folder(base)
        if folder is not None:
            return _load_local(str(folder.resolve()))
        if source == "local":
            raise FileNotFoundError(hint)
    try:
        return _load_datasets(hf_name)
    except RuntimeError as e:
        if source == "datasets":
            raise
        raise FileNotFoundError(
            f"{hint}, or let data.source=datasets load the Hugging Face dataset {hf_name!r} "
            f"(it failed here: {e})"
        ) from e


def batchify(ids: Tensor, bsz: int) -> Tensor:
    """Cut a token stream into ``bsz`` contiguous columns, as AWD-LSTM does.

    Args:
        ids: ``[N]`` token ids.
        bsz: number of columns (batch size).

    Returns:
        ``[N // bsz, bsz]``; column j is the j-th contiguous chunk of the
        stream, the ``N % bsz`` trailing tokens are dropped.

    Raises:
        ValueError: ``ids`` not 1-D, ``bsz`` < 1, or fewer than ``bsz`` tokens.
    """
    if ids.dim() != 1:
        raise ValueError(f"batchify expects a 1-D tensor of ids, got shape {tuple(ids.shape)}")
    if bsz < 1:
        raise ValueError(f"batch size must be >= 1, got {bsz}")
    nb = ids.numel() // bsz
    if nb == 0:
        raise ValueError(f"cannot batchify {ids.numel()} tokens into {bsz} columns")
    return ids[: nb * bsz].view(bsz, nb).t().contiguous()


def get_batch(source: Tensor, i: int, seq_len: int) -> tuple[Tensor, Tensor]:
    """Rows ``i .. i+s-1`` of a batchified split and their next-token targets.

    Args:
        source: ``[L, B]`` from :func:`batchify`.
        i: first row.
        seq_len: wanted length; ``s = min(seq_len, L - 1 - i)``.

    Returns:
        ``x`` ``[s, B]`` and ``y`` ``[s, B]`` with ``y[t] = source[i + t + 1]``.

    Raises:
        IndexError: ``i`` outside ``[0, L - 2]`` (no target row left).
        ValueError: ``seq_len`` < 1.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    L = source.size(0)
    if not 0 <= i <= L - 2:
        raise IndexError(f"row {i} has no next-token target: the batchified split has {L} rows (i = 0..{L - 2})")
    s = min(seq_len, L - 1 - i)
    return source[i : i + s], source[i + 1 : i + 1 + s]


def num_windows(rows: int, bptt: int) -> int:
    """Number of full ``bptt``-row windows (each needing one extra target row) in ``rows`` rows."""
    return max(0, (rows - 1) // bptt)


def scoring_batch(
    corpus: Corpus, batch_index: int = 0, bptt: int = 70, batch_size: int = 50, split: str = "test"
) -> tuple[Tensor, Tensor]:
    """The paper's scoring minibatch: a ``bptt``-row window of a batchified split.

    Serianni & Kalita (2023) score RNN cells on the first 70 rows of the
    PTB test split batchified with 50 columns; ``batch_index`` k selects
    the window starting at row ``k * bptt`` instead.

    Args:
        corpus: the tokenised corpus.
        batch_index: which window (0 = the paper's).
        bptt: rows per window (sequence length).
        batch_size: columns of the batchified split.
        split: ``train``, ``valid`` or ``test``.

    Returns:
        ``x`` ``[bptt, batch_size]`` token ids and ``y`` ``[bptt, batch_size]``
        next-token targets (``y[t] = x[t + 1]`` within the window).

    Raises:
        IndexError: ``batch_index`` outside the available full windows
            (the message gives their number).
        ValueError: bad ``split``, ``bptt`` or ``batch_size``.
    """
    if bptt < 1:
        raise ValueError(f"bptt must be >= 1, got {bptt}")
    data = batchify(corpus.split(split), batch_size)
    n = num_windows(data.size(0), bptt)
    if not 0 <= batch_index < n:
        raise IndexError(
            f"batch_index={batch_index} is out of range: the {split} split batchified with {batch_size} columns "
            f"has {data.size(0)} rows, i.e. {n} full windows of bptt={bptt} (batch_index=0..{n - 1})"
        )
    return get_batch(data, batch_index * bptt, bptt)


class PTBScoringData:
    """Scoring minibatches of Penn Treebank, instantiable from a Hydra config.

    The corpus is loaded on first use (and cached per folder).

    Args:
        data_dir: see :func:`load_corpus` (None: the default data folder).
        source: ``auto``, ``local`` or ``datasets`` (see :func:`load_corpus`).
        bptt: rows per scoring minibatch (paper: 70).
        batch_size: columns (paper: the evaluation batch size 50).
        split: split the minibatches come from (paper: ``test``).

    Raises:
        ValueError: an unknown split or source, or non-positive sizes.
    """

    #: The model family whose scoring batches this builds (checked against the space before any work).
    family = "rnn"

    def __init__(
        self,
        data_dir: str | Path | None = None,
        source: str = "auto",
        bptt: int = 70,
        batch_size: int = 50,
        split: str = "test",
    ):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        if source not in ("auto", "local", "datasets"):
            raise ValueError(f"unknown source {source!r}; expected 'auto', 'local' or 'datasets'")
        if bptt < 1 or batch_size < 1:
            raise ValueError(f"bptt and batch_size must be >= 1, got bptt={bptt}, batch_size={batch_size}")
        self.data_dir = data_dir
        self.source = source
        self.bptt = int(bptt)
        self.batch_size = int(batch_size)
        self.split = split
        self._corpus: Corpus | None = None

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

    def num_batches(self) -> int:
        """Number of valid ``batch_index`` values."""
        rows = self.corpus.split(self.split).numel() // self.batch_size
        return num_windows(rows, self.bptt)

    def scoring_batch(self, batch_index: int = 0) -> tuple[Tensor, Tensor]:
        """``(x, y)``, each ``[bptt, batch_size]``; see :func:`scoring_batch`."""
        return scoring_batch(self.corpus, batch_index, self.bptt, self.batch_size, self.split)

    def describe(self) -> dict[str, Any]:
        """The settings that determine the minibatches, for the config hash.

        ``data_dir`` and ``source`` are left out: they say where the same
        corpus is read from, not what the minibatches hold.
        """
        return {"dataset": "ptb", "split": self.split, "bptt": self.bptt, "batch_size": self.batch_size}
