"""Penn Treebank loading, vocabulary, batchify and the scoring minibatch, on the real files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tfnas.data import ptb
from tfnas.data.ptb import PTBScoringData, batchify, get_batch, load_corpus, scoring_batch


@pytest.fixture(scope="module")
def corpus(data_dir: Path):
    return load_corpus(data_dir, source="local")


def _raw_tokens(path: Path) -> list[str]:
    """Independent tokenisation: whitespace split, '<eos>' per line."""
    out: list[str] = []
    for line in path.read_text(encoding="utf-8").split("\n")[:-1]:  # the files end with a newline
        out.extend(line.split())
        out.append("<eos>")
    return out


@pytest.fixture(scope="module")
def raw(data_dir: Path) -> dict[str, list[str]]:
    return {s: _raw_tokens(data_dir / "ptb" / f"ptb.{s}.txt") for s in ("train", "valid", "test")}


def test_vocabulary_has_10000_tokens(corpus):
    assert len(corpus.vocab) == 10_000
    assert corpus.ntoken == 10_000
    assert len(set(corpus.vocab)) == 10_000
    assert all(corpus.word2idx[w] == i for i, w in enumerate(corpus.vocab))


def test_ids_follow_first_appearance(corpus, raw):
    # First appearance over train, then valid, then test, from the raw text.
    first = list(dict.fromkeys(raw["train"] + raw["valid"] + raw["test"]))
    assert corpus.vocab == first
    first_line = raw["train"][: raw["train"].index("<eos>")]
    assert corpus.vocab[: len(first_line)] == first_line  # 'aer', 'banknote', ... of the first line
    assert corpus.word2idx["<eos>"] == len(first_line)
    assert corpus.vocab[0] == "aer"


def test_split_ids_match_raw_text(corpus, raw):
    for split in ("train", "valid", "test"):
        ids = corpus.split(split)
        assert ids.dtype == torch.long and ids.dim() == 1
        assert ids.numel() == len(raw[split])
        # Decode a stretch at the start and one at the end and compare with the raw words.
        for sl in (slice(0, 500), slice(-500, None)):
            assert [corpus.vocab[i] for i in ids[sl].tolist()] == raw[split][sl]
    # The token counts of Mikolov's PTB as used by AWD-LSTM.
    assert (corpus.train.numel(), corpus.valid.numel(), corpus.test.numel()) == (929_589, 73_760, 82_430)


def test_batchify_by_hand():
    ids = torch.arange(11)
    out = batchify(ids, 3)  # 11 // 3 = 3 rows, token 9 and 10 dropped
    assert out.tolist() == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    with pytest.raises(ValueError, match="1-D"):
        batchify(out, 2)
    with pytest.raises(ValueError, match="cannot batchify"):
        batchify(torch.arange(2), 3)


def test_test_split_batchified_with_50(corpus):
    data = batchify(corpus.test, 50)
    assert data.shape == (1648, 50)  # 82,430 // 50
    # Column j is the j-th contiguous chunk of the stream.
    assert torch.equal(data[:, 0], corpus.test[:1648])
    assert torch.equal(data[:, 7], corpus.test[7 * 1648 : 8 * 1648])


def test_get_batch_shifts_targets():
    source = batchify(torch.arange(40), 4)  # [10, 4]
    x, y = get_batch(source, 2, 3)
    assert torch.equal(x, source[2:5]) and torch.equal(y, source[3:6])
    x, y = get_batch(source, 7, 5)  # only 2 rows left that have a target
    assert x.shape == (2, 4) and torch.equal(y, source[8:10])
    with pytest.raises(IndexError, match="10 rows"):
        get_batch(source, 9, 5)


def test_scoring_batch_is_first_70_rows_of_test(corpus):
    x, y = scoring_batch(corpus)
    data = batchify(corpus.test, 50)
    assert x.shape == (70, 50) and y.shape == (70, 50)
    assert torch.equal(x, data[:70]) and torch.equal(y, data[1:71])
    assert torch.equal(y[:-1], x[1:])  # y is x shifted by one row
    assert torch.equal(x[:, 1], corpus.test[1648 : 1648 + 70])  # column 1 starts at the second chunk
    x3, y3 = scoring_batch(corpus, batch_index=3)
    assert torch.equal(x3, data[210:280]) and torch.equal(y3, data[211:281])


def test_scoring_batch_out_of_range(corpus):
    n = (1648 - 1) // 70
    scoring_batch(corpus, batch_index=n - 1)
    with pytest.raises(IndexError, match=rf"{n} full windows"):
        scoring_batch(corpus, batch_index=n)
    with pytest.raises(ValueError, match="unknown split"):
        scoring_batch(corpus, split="validation")


def test_data_dir_may_point_at_the_ptb_folder(corpus, data_dir):
    direct = load_corpus(data_dir / "ptb", source="local")
    assert direct is corpus  # same resolved folder -> same cached corpus
    assert load_corpus(data_dir) is corpus  # "auto" finds the local files first


def test_missing_folder_local(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_corpus(tmp_path / "nowhere", source="local")
    msg = str(e.value)
    assert str(tmp_path / "nowhere") in msg and "TFNAS_DATA_DIR" in msg and "paths.data_dir" in msg


def test_missing_folder_auto_names_both_options(tmp_path, monkeypatch):
    # No network here: make the datasets route fail at once, as it does offline (after retries).
    def offline(name):
        raise RuntimeError(f"could not load Penn Treebank through Hugging Face datasets: {name!r} unreachable")

    monkeypatch.setattr(ptb, "_load_datasets", offline)
    with pytest.raises(FileNotFoundError) as e:
        load_corpus(tmp_path, source="auto")
    msg = str(e.value)
    assert str(tmp_path) in msg and "paths.data_dir" in msg and "TFNAS_DATA_DIR" in msg
    assert "ptb_text_only" in msg and "datasets" in msg
    with pytest.raises(RuntimeError, match="ptb_text_only"):
        load_corpus(tmp_path, source="datasets")


def test_datasets_route_tokenises_like_the_files(corpus, raw):
    # The hub dataset has one stripped sentence per row; tokenize() must give the same corpus.
    lines = {s: (Path(corpus.source) / f"ptb.{s}.txt").read_text().split("\n")[:-1] for s in raw}
    stripped = {s: [ln.strip() for ln in v] for s, v in lines.items()}
    again = ptb.tokenize(stripped)
    assert again.vocab == corpus.vocab and torch.equal(again.test, corpus.test)


def test_unknown_source(data_dir):
    with pytest.raises(ValueError, match="unknown source"):
        load_corpus(data_dir, source="web")


def test_scoring_data_object(data_dir, corpus):
    d = PTBScoringData(str(data_dir))
    assert d.ntoken == 10_000
    assert d.num_batches() == (1648 - 1) // 70
    x, y = d.scoring_batch(0)
    x0, y0 = scoring_batch(corpus)
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert d.describe() == {"dataset": "ptb", "split": "test", "bptt": 70, "batch_size": 50}
    small = PTBScoringData(str(data_dir), bptt=35, batch_size=10, split="valid")
    xs, ys = small.scoring_batch(2)
    assert xs.shape == (35, 10)
    assert torch.equal(xs, batchify(corpus.valid, 10)[70:105])
    with pytest.raises(ValueError, match="unknown split"):
        PTBScoringData(str(data_dir), split="dev")
